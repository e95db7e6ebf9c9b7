"""The one exact int8 × int8 → int32 matrix product that every integer lesson shares.

Taught in 04_dynamic (dynamic int8 Linear), 05_static (integer-only inference) and 07_bnb (LLM.int8()).

``torch._int_mm`` is the fast int8 GEMM, but whether it is *exact* depends on the CPU's kernel:
without AVX-512 VNNI, oneDNN's AVX2 int8 kernel multiplies u8 × s8 pairs with ``vpmaddubsw``, which
adds two products into a **saturating int16** (255·127·2 = 64 770 > 32 767). PyTorch normally
avoids that kernel on such CPUs, but not always (e.g. ``ONEDNN_MAX_CPU_ISA=AVX2`` on a VNNI CPU),
and then large products come back clipped. So the course keeps one rule:

* ``torch._int_mm`` is used when :func:`int_mm_is_exact` says so — a probe, run once per process,
  that feeds it the worst case (all 127s, which saturates an int16 pair sum) and compares with
  exact arithmetic — and, on CUDA, when the shape meets the kernel's rule (m > 16, k and n
  multiples of 8);
* otherwise the product is taken in float64, which is exact for any ``k`` below 2^39
  (every partial sum is an integer below 2^53).

Libraries call ``torch._int_mm`` too (torchao's int8 dynamic configs, bitsandbytes' CPU LLM.int8).
So where the probe finds it inexact on the CPU, importing this module also registers the exact
float64 product as the CPU kernel of ``aten::_int_mm`` (:data:`INT_MM_GUARDED` is then True): every
int8 GEMM in the course, ours or a library's, then returns the true integer sums. On a CPU whose
kernel is exact nothing is registered and the library kernels run untouched.
"""

from __future__ import annotations

import functools

import torch

from helpers._validate import check_tensor

__all__ = ["INT_MM_GUARDED", "int8_matmul", "int_mm_is_exact", "saturating_int8_matmul"]


@functools.cache
def int_mm_is_exact(device: str = "cpu") -> bool:
    """Whether ``torch._int_mm`` on ``device`` returns exact int32 sums, probed once on the worst case.

    The probe multiplies 127 × 127 over k = 64: each int16 pair sum of a ``vpmaddubsw``-style kernel
    would overflow, so a saturating kernel returns a wrong (clipped) result and the probe says False.
    """
    if not hasattr(torch, "_int_mm"):
        return False
    a = torch.full((32, 64), 127, dtype=torch.int8, device=device)
    b = torch.full((64, 32), 127, dtype=torch.int8, device=device)
    a[::2] = -128  # both signs: a kernel that shifts s8 to u8 sees 0 and 255
    try:
        got = torch._int_mm(a, b)
    except RuntimeError:
        return False
    return bool(torch.equal(got.cpu().double(), a.cpu().double() @ b.cpu().double()))


def _row_major(t: torch.Tensor) -> torch.Tensor:
    """``t`` itself if plainly row- or column-major, else a row-major copy.

    A size-1 dimension can leave odd strides that ``_int_mm`` misreads (a regression test covers it).
    """
    rows, cols = t.shape
    if t.stride() == (cols, 1) or (rows > 1 and cols > 1 and t.stride() == (1, rows)):
        return t
    return torch.empty(t.shape, dtype=t.dtype, device=t.device).copy_(t)


def _check_operands(a: torch.Tensor, b: torch.Tensor) -> None:
    check_tensor(a, "a")
    check_tensor(b, "b")
    if a.dtype != torch.int8 or b.dtype != torch.int8:
        raise TypeError(f"a and b must be int8 tensors, got {a.dtype} and {b.dtype}")
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(
            f"a and b must be 2-d with a.shape[1] == b.shape[0], got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    if a.device != b.device:
        raise ValueError(f"a and b must be on the same device, got {a.device} and {b.device}")


def _int_mm_applies(a: torch.Tensor, b: torch.Tensor) -> bool:
    if not int_mm_is_exact(a.device.type):
        return False
    if a.device.type == "cpu":
        return True
    m, k = a.shape
    return a.device.type == "cuda" and m > 16 and k % 8 == 0 and b.shape[1] % 8 == 0


def int8_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Exact int32 product ``a @ b`` of int8 matrices ``a (m, k)`` and ``b (k, n)``: ``acc[i, j] = sum_k a[i, k] b[k, j]``.

    ``torch._int_mm`` where it is exact on this machine (see :func:`int_mm_is_exact`), else float64,
    which is exact for every k below 2^39. Taught in 04_dynamic, 05_static and 07_bnb.
    """
    _check_operands(a, b)
    if _int_mm_applies(a, b):
        return torch._int_mm(_row_major(a), _row_major(b))
    return (a.double() @ b.double()).to(torch.int32)


def saturating_int8_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """What an AVX2 ``vpmaddubsw`` kernel computes for ``a`` (u8 as s8 + 128 shift undone) × ``b``: pairs saturate in int16.

    ``a`` holds unsigned activation codes 0..255 stored as int16/int32/uint8 and ``b`` signed int8
    weights; adjacent products along k are added in pairs and clamped to [-32768, 32767] before the
    int32 accumulation — the overflow that ``reduce_range`` (7-bit activations, 0..127) avoids.
    Taught in 05_static.
    """
    check_tensor(a, "a")
    check_tensor(b, "b")
    if a.is_floating_point() or b.dtype != torch.int8:
        raise TypeError(f"a must hold integer codes 0..255 and b must be int8, got {a.dtype} and {b.dtype}")
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"a and b must be (m, k) and (k, n), got {tuple(a.shape)} and {tuple(b.shape)}")
    if int(a.min()) < 0 or int(a.max()) > 255:
        raise ValueError("a must hold unsigned codes in 0..255")
    m, k = a.shape
    a32 = a.to(torch.int32)
    b32 = b.to(torch.int32)
    if k % 2:  # pad k to even with a zero column/row: the last pair is then a single product
        a32 = torch.cat([a32, a32.new_zeros(m, 1)], dim=1)
        b32 = torch.cat([b32, b32.new_zeros(1, b32.shape[1])], dim=0)
    products = a32[:, :, None] * b32[None, :, :]  # (m, k, n), exact in int32
    pairs = products[:, 0::2] + products[:, 1::2]  # what one vpmaddubsw lane adds
    return pairs.clamp(-(2**15), 2**15 - 1).sum(dim=1, dtype=torch.int32)


def _exact_int_mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a.double() @ b.double()).to(torch.int32)


def _guard_int_mm() -> bool:
    """Register :func:`_exact_int_mm` as ``aten::_int_mm``'s CPU kernel if the native one is inexact here."""
    if int_mm_is_exact("cpu"):
        return False
    import warnings

    global _GUARD_LIBRARY
    _GUARD_LIBRARY = torch.library.Library("aten", "IMPL")  # kept alive: the registration lives with it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _GUARD_LIBRARY.impl("_int_mm", _exact_int_mm, "CPU")
    int_mm_is_exact.cache_clear()
    return True


_GUARD_LIBRARY = None
INT_MM_GUARDED: bool = _guard_int_mm()
"""True when this process's ``torch._int_mm`` was found inexact on the CPU and replaced by the exact product."""
