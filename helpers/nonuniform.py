"""Non-uniform quantization: codebooks, power-of-two levels, k-means (Lloyd), NF4 and FP4.

Taught in 03_nonuniform. A *codebook* (``levels``) is a sorted 1-D float tensor;
quantizing ``x`` stores, per value, the index ``q`` of its nearest level, and dequantizing
looks the level up again: ``x_hat = levels[q]``. A uniform grid is the special case
``levels[i] = scale * (i - zero_point)``; every other codebook needs the lookup.

Nearest level is found with ``torch.bucketize`` on the midpoints between neighbouring levels
(computed in float32 as ``(a + b) / 2``); a value exactly on a midpoint goes to the *lower*
level. This is the arithmetic of bitsandbytes' CPU ``quantize_4bit``, so the blockwise NF4
codes here equal bitsandbytes' bit for bit (see ``blockwise_absmax_codebook``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
import torch

from helpers._validate import (
    check_bits,
    check_choice,
    check_float_tensor,
    check_int,
    check_positive,
    check_tensor,
)
from helpers.affine import calc_qparams, fake_quantize, qrange

__all__ = [
    "check_levels",
    "codebook_quantize",
    "codebook_dequantize",
    "codebook_fake_quantize",
    "blockwise_absmax_codebook",
    "blockwise_codebook_dequantize",
    "uniform_levels",
    "pow2_levels",
    "log_levels",
    "nf_levels",
    "nf4_levels",
    "nf4_offset",
    "fp4_e2m1_levels",
    "bnb_fp4_code",
    "KMeansResult",
    "kmeans_fit",
    "kmeans_levels",
    "rule_codebook",
    "storage_bits_per_weight",
    "pack_codes",
    "unpack_codes",
    "METHODS",
    "METHOD_LABELS",
    "method_levels",
    "nonuniform_fake_quantize",
    "mse_table",
    "mse_table_markdown",
    "codebook_view",
    "check_codebook_quantize",
    "check_nf_levels",
]

# --------------------------------------------------------------------------------------------
# codebook quantize / dequantize
# --------------------------------------------------------------------------------------------


def check_levels(levels: torch.Tensor, name: str = "levels") -> torch.Tensor:
    """Return ``levels`` if it is a non-empty, finite, strictly ascending 1-D float tensor.

    Unsorted levels would make ``bucketize`` pick wrong indices, and a duplicate level wastes a
    code and makes the index ambiguous, so both raise ``ValueError``. Taught in 03_nonuniform.
    """
    check_float_tensor(levels, name)
    if levels.ndim != 1:
        raise ValueError(f"{name} must be a 1-D tensor, got shape {tuple(levels.shape)}")
    _check_float32_range(levels, name)
    if levels.numel() > 1:
        diffs = levels[1:] - levels[:-1]
        if bool((diffs < 0).any()):
            raise ValueError(f"{name} must be sorted in ascending order (use torch.sort first)")
        if bool((diffs == 0).any()):
            raise ValueError(f"{name} must not contain duplicate values (each code needs its own level)")
        lv32 = levels.detach().float()
        if bool((lv32[1:] == lv32[:-1]).any()):
            raise ValueError(f"{name} must stay distinct in float32 (two levels round to the same float32 value)")
    return levels


_F32_MAX = float(torch.finfo(torch.float32).max)


def _check_float32_range(x: torch.Tensor, name: str) -> None:
    """Raise unless every value of ``x`` survives the float32 cast the codebook arithmetic makes.

    A float64 value beyond float32's range would silently become inf (then NaN after an absmax
    division). Call after ``check_float_tensor``.
    """
    if x.dtype == torch.float64 and x.numel() and float(x.detach().abs().max()) > _F32_MAX:
        raise ValueError(
            f"{name} must fit in float32 (|{name}| <= {_F32_MAX:.4g}); the codebook arithmetic is float32, "
            f"got |{name}| up to {float(x.detach().abs().max()):.4g}"
        )


def _index_dtype(n_levels: int) -> torch.dtype:
    return torch.uint8 if n_levels <= 256 else torch.int64


def _nearest(x: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """int32 index of the nearest level (ties to the lower level); no validation."""
    mid = (levels[:-1] + levels[1:]) / 2
    return torch.bucketize(x, mid, out_int32=True)


def codebook_quantize(x: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """Index of the nearest level for every element: ``q = argmin_i |x - levels[i]|``.

    Computed as ``bucketize(x, (levels[:-1] + levels[1:]) / 2)``, so a value exactly halfway
    between two levels goes to the lower one. ``levels`` must be strictly ascending. Returns
    ``uint8`` codes when there are at most 256 levels, else ``int64``; same shape as ``x``.
    Taught in 03_nonuniform.
    """
    check_float_tensor(x, "x")
    _check_float32_range(x, "x")
    check_levels(levels)
    lv = levels.detach().float()
    return _nearest(x.detach().float(), lv).to(_index_dtype(lv.numel()))


def _check_indices(q: torch.Tensor, n_levels: int, name: str = "q") -> None:
    check_tensor(q, name)
    if q.is_floating_point() or q.is_complex() or q.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor of codebook indices, got dtype {q.dtype}")
    lo, hi = int(q.min()), int(q.max())
    if lo < 0 or hi >= n_levels:
        raise ValueError(f"{name} must hold indices in 0..{n_levels - 1} (one per level), got {lo}..{hi}")


def codebook_dequantize(q: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """Look the codes up again: ``x_hat = levels[q]`` (float32, same shape as ``q``).

    Taught in 03_nonuniform.
    """
    check_levels(levels)
    _check_indices(q, levels.numel())
    return levels.detach().float()[q.long()]


def codebook_fake_quantize(x: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """Nearest level of every element, in one go: ``x_hat = levels[codebook_quantize(x, levels)]``.

    Taught in 03_nonuniform.
    """
    check_float_tensor(x, "x")
    _check_float32_range(x, "x")
    check_levels(levels)
    lv = levels.detach().float()
    return lv[_nearest(x.detach().float(), lv)]


# --------------------------------------------------------------------------------------------
# blockwise absmax scaling (the bitsandbytes 4-bit layout)
# --------------------------------------------------------------------------------------------


def blockwise_absmax_codebook(
    x: torch.Tensor, levels: torch.Tensor, block_size: int = 64
) -> tuple[torch.Tensor, torch.Tensor]:
    """Blockwise absmax codebook quantization: ``q = nearest(levels, x / absmax(block))``.

    ``x`` is flattened and cut into blocks of ``block_size`` (the last block may be shorter);
    each block is divided by its absolute maximum ``absmax`` and every value is mapped to the
    nearest level. Returns ``(q, absmax)``: codes (``uint8`` for <= 256 levels) of ``x.numel()``
    elements and one float32 absmax per block.

    The arithmetic mirrors bitsandbytes' CPU ``quantize_4bit`` exactly: full blocks are scaled
    by ``x * (1 / absmax)`` (a reciprocal, then a multiply), a short last block by ``x / absmax``,
    ``absmax`` is clamped to >= 1e-38 (an all-zero block), the scaled values are clamped to
    [-1, 1], and ties go to the lower level. With ``nf4_levels()`` and ``block_size=64`` the codes
    equal the unpacked nibbles of ``bitsandbytes.functional.quantize_4bit(x, quant_type="nf4")``.
    Taught in 03_nonuniform.
    """
    check_float_tensor(x, "x")
    _check_float32_range(x, "x")
    check_levels(levels)
    block_size = check_int(block_size, "block_size", lo=1)
    lv = levels.detach().float()
    flat = x.detach().reshape(-1).float()
    n = flat.numel()
    rem = n % block_size
    full = n - rem
    absmax = flat[:full].reshape(-1, block_size).abs().amax(dim=1)
    scaled = torch.clamp(flat[:full].reshape(-1, block_size) * (1.0 / absmax.clamp(min=1e-38)).unsqueeze(1), -1, 1)
    scaled = scaled.reshape(-1)
    if rem:
        am = flat[full:].abs().max().clamp(min=1e-38)
        absmax = torch.cat([absmax, am.reshape(1)])
        scaled = torch.cat([scaled, torch.clamp(flat[full:] / am, -1, 1)])
    q = _nearest(scaled, lv).to(_index_dtype(lv.numel()))
    return q, absmax


def blockwise_codebook_dequantize(
    q: torch.Tensor,
    absmax: torch.Tensor,
    levels: torch.Tensor,
    block_size: int,
    shape: tuple[int, ...] | torch.Size,
) -> torch.Tensor:
    """Inverse of ``blockwise_absmax_codebook``: ``x_hat = levels[q] * absmax(block)``, reshaped to ``shape``.

    Float32, computed like bitsandbytes' ``dequantize_4bit`` (lookup, then one multiply).
    Taught in 03_nonuniform.
    """
    check_levels(levels)
    check_tensor(q, "q")
    block_size = check_int(block_size, "block_size", lo=1)
    check_float_tensor(absmax, "absmax")
    _check_float32_range(absmax, "absmax")
    if isinstance(shape, (str, bytes)) or not hasattr(shape, "__iter__"):
        raise TypeError(f"shape must be a tuple of ints (or torch.Size), got {type(shape).__name__}")
    shape = tuple(check_int(s, "shape[i]", lo=0) for s in shape)
    n = math.prod(shape)
    if q.numel() != n:
        raise ValueError(f"shape must describe q.numel() = {q.numel()} elements, got {shape} ({n} elements)")
    n_blocks = -(-n // block_size)
    if absmax.numel() != n_blocks:
        raise ValueError(
            f"absmax must have one entry per block ({n_blocks} for block_size={block_size}), got {absmax.numel()}"
        )
    if bool((absmax < 0).any()):
        raise ValueError("absmax must be >= 0 everywhere")
    _check_indices(q, levels.numel())
    vals = levels.detach().float()[q.reshape(-1).long()]
    am = absmax.detach().float().reshape(-1)
    rem = n % block_size
    full = n - rem
    out = torch.empty(n, dtype=torch.float32)
    out[:full] = (vals[:full].view(-1, block_size) * am[: full // block_size].view(-1, 1)).reshape(-1)
    if rem:
        out[full:] = vals[full:] * am[-1]
    return out.reshape(shape)


# --------------------------------------------------------------------------------------------
# level sets: uniform, power-of-two / log, NF, FP4
# --------------------------------------------------------------------------------------------


def uniform_levels(bits: int) -> torch.Tensor:
    """The symmetric (absmax) integer grid normalised to [-1, 1]: ``k / (2^(b-1) - 1)``, ``k = -(2^(b-1)-1)..2^(b-1)-1``.

    ``2^b - 1`` levels, evenly spaced, exact 0 (the restricted signed range of 02_affine).
    Taught in 03_nonuniform.
    """
    bits = check_bits(bits, lo=2, hi=8)
    qmin, qmax = qrange(bits, signed=True, restricted=True)
    return torch.arange(qmin, qmax + 1, dtype=torch.float32) / qmax


def log_levels(bits: int, base: float = 2.0) -> torch.Tensor:
    """Signed logarithmic levels ``{0} ∪ {±base^-j : j = 0..2^(b-1)-2}``, ascending, max magnitude 1.

    One bit is the sign, the other ``b - 1`` bits pick one of ``2^(b-1)`` magnitudes: zero or a
    power of ``base``. ``2^b - 1`` distinct levels (+0 and -0 coincide). Taught in 03_nonuniform.
    """
    bits = check_bits(bits, lo=2, hi=8)
    if isinstance(base, bool) or not isinstance(base, (int, float)):
        raise TypeError(f"base must be a finite number > 1, got {type(base).__name__}")
    base = float(base)
    if not math.isfinite(base) or base <= 1.0:
        raise ValueError(f"base must be a finite number > 1, got {base}")
    exps = torch.arange(2 ** (bits - 1) - 1, dtype=torch.float64)
    mags = base**-exps  # 1, 1/base, 1/base^2, ...
    pos = torch.flip(mags, [0])
    return torch.cat([-mags, torch.zeros(1, dtype=torch.float64), pos]).float()


def pow2_levels(bits: int) -> torch.Tensor:
    """Power-of-two levels ``{0, ±1, ±1/2, ±1/4, ...}`` (``log_levels`` with base 2): a multiply becomes a shift.

    Taught in 03_nonuniform.
    """
    return log_levels(bits, 2.0)


def nf4_offset(bits: int = 4) -> float:
    """The QLoRA quantile offset ``(1 - 1/(2(n-1)) + 1 - 1/(2n)) / 2`` with ``n = 2^bits`` (0.9677083 at 4 bits).

    The outermost quantile cannot be ``Φ^-1(1) = inf``; QLoRA takes the average of the two
    "half a bin from the end" probabilities for ``n - 1`` and ``n`` bins. Taught in 03_nonuniform.
    """
    bits = check_bits(bits, lo=2, hi=8)
    n = 2**bits
    return 0.5 * ((1 - 1 / (2 * (n - 1))) + (1 - 1 / (2 * n)))


def nf_levels(bits: int = 4, offset: float | None = None) -> torch.Tensor:
    """NormalFloat levels: normal quantiles with an exact zero, normalised to [-1, 1] (QLoRA).

    ``2^(b-1)`` positive levels ``Φ^-1(p)`` for ``p`` evenly spaced in ``[offset, 0.5]`` (the 0.5
    end dropped), ``2^(b-1) - 1`` negative levels the same way, then 0, all divided by the
    largest. Asymmetric on purpose: with an even number of codes and an exact zero, one side
    gets one level more. Float64 math, float32 result. Taught in 03_nonuniform.
    """
    bits = check_bits(bits, lo=2, hi=8)
    if offset is None:
        offset = nf4_offset(bits)
    if isinstance(offset, bool) or not isinstance(offset, (int, float)):
        raise TypeError(f"offset must be a number in (0.5, 1), got {type(offset).__name__}")
    offset = float(offset)
    if not 0.5 < offset < 1.0:
        raise ValueError(f"offset must lie in (0.5, 1), got {offset}")
    half = 2 ** (bits - 1)
    pos = torch.special.ndtri(torch.linspace(offset, 0.5, half + 1, dtype=torch.float64)[:-1])
    neg = -torch.special.ndtri(torch.linspace(offset, 0.5, half, dtype=torch.float64)[:-1])
    values = torch.cat([pos, torch.zeros(1, dtype=torch.float64), neg]).sort().values
    return (values / values.max()).float()


def nf4_levels() -> torch.Tensor:
    """The 16 NF4 levels, ascending (the order of bitsandbytes' ``get_4bit_type("nf4")``).

    Equal to bitsandbytes' table to about 1e-7. Taught in 03_nonuniform.
    """
    return nf_levels(4)


def fp4_e2m1_levels() -> torch.Tensor:
    """The 15 distinct FP4 e2m1 values (OCP MX), normalised to max magnitude 1, ascending.

    e2m1: 1 sign, 2 exponent (bias 1), 1 mantissa bit: magnitudes 0, 0.5 (subnormal), 1, 1.5,
    2, 3, 4, 6; divided by 6. +0 and -0 give one level. Taught in 03_nonuniform.
    """
    exp = torch.arange(4, dtype=torch.float64)
    man = torch.arange(2, dtype=torch.float64)
    e, m = torch.meshgrid(exp, man, indexing="ij")
    mags = torch.where(e == 0, m * 0.5, 2.0 ** (e - 1) * (1 + m / 2)).reshape(-1)  # subnormal when e == 0
    values = torch.unique(torch.cat([mags, -mags]))
    return (values / values.abs().max()).float()


def bnb_fp4_code() -> torch.Tensor:
    """bitsandbytes' 16-entry FP4 table in its own index order (nibble -> value), built from its bit layout.

    Index bit 3 is the sign; the low 3 bits select the magnitude ``0, 0.0625, 8, 12, 4, 6, 2, 3``
    (bitsandbytes' ``create_fp8_map(signed=True, exponent_bits=2, precision_bits=1)``, exponent
    read "backwards"), divided by 12. The nonzero magnitudes are the e2m1 set except the
    smallest: 0.0625/12 ≈ 0.0052 where e2m1 has 0.5/6 ≈ 0.083. Both 0 and -0 appear (indices 0
    and 8). Taught in 03_nonuniform.
    """
    low3 = torch.arange(8)
    e = low3 >> 1
    m = (low3 & 1).double()
    mags = torch.where(e == 0, m * 0.0625, 2.0 ** (4 - e) * (1 + m / 2))
    code = torch.cat([mags, -mags])
    return (code / code.abs().max()).float()


# --------------------------------------------------------------------------------------------
# k-means (Lloyd) in one dimension
# --------------------------------------------------------------------------------------------

KMEANS_INITS = ("linear", "quantile", "random")


class KMeansResult(NamedTuple):
    """A fitted 1-D codebook: ``levels`` (ascending float32), iterations run, MSE per iteration, converged flag."""

    levels: torch.Tensor
    n_iter: int
    mse_history: list[float]
    converged: bool


def kmeans_fit(
    x: torch.Tensor,
    n_levels: int,
    *,
    init: str | torch.Tensor = "quantile",
    max_iter: int = 300,
    tol: float = 1e-6,
    seed: int = 0,
) -> KMeansResult:
    """Lloyd's k-means on the values of ``x`` (1-D): minimise ``mean((x - levels[nearest])^2)``.

    Sorted 1-D Lloyd: ``x`` is sorted once and prefix sums of ``x`` and ``x^2`` are kept (float64);
    each iteration then finds the cluster boundaries with ``searchsorted`` of the midpoints
    (same tie rule as ``codebook_quantize``), and the new levels (cluster means) and the MSE from
    the prefix sums — O(k log n) per iteration instead of O(n). An empty cluster keeps its level.
    Stops when the relative MSE improvement is below ``tol`` (or after ``max_iter``); returns the
    best levels seen, so the MSE never exceeds that of the initial levels.

    Fewer distinct values than levels (a constant tensor, two values, a post-ReLU tensor of a few
    values): when ``x`` has ``d <= n_levels`` distinct values, every distinct value is its own level
    and the result has ``d`` levels, MSE 0, ``n_iter = 0`` — the global optimum. A codebook holds
    each level once (see ``check_levels``), so the ``n_levels - d`` surplus codes are simply unused.
    scikit-learn's ``KMeans`` returns the same set of distinct centres there, with duplicate centres
    for the empty clusters and a ``ConvergenceWarning``.

    ``init``: ``"quantile"`` (equal-count quantiles of the distinct values; the default, it
    converges in the fewest iterations), ``"linear"`` (evenly spaced from min to max, Deep
    Compression's choice), ``"random"`` (distinct values
    drawn with ``seed``), or a strictly ascending tensor of ``n_levels`` starting levels.
    Taught in 03_nonuniform.
    """
    check_float_tensor(x, "x")
    _check_float32_range(x, "x")
    n_levels = check_int(n_levels, "n_levels", lo=1, hi=65536)
    max_iter = check_int(max_iter, "max_iter", lo=0)
    check_positive(tol, "tol")
    seed = check_int(seed, "seed")
    # numpy's sort is several times faster than torch.sort on CPU for one large 1-D array
    xs = torch.from_numpy(np.sort(x.detach().reshape(-1).float().cpu().numpy())).double()
    distinct = torch.unique_consecutive(xs)
    if isinstance(init, torch.Tensor):
        check_levels(init, "init")
        if init.numel() != n_levels:
            raise ValueError(f"init must have n_levels = {n_levels} entries, got {init.numel()}")
        levels = init.detach().double().clone()
    else:
        check_choice(init, "init", KMEANS_INITS)
    if distinct.numel() <= n_levels:
        # as many levels as distinct values or more: every distinct value is its own level (MSE 0, the
        # global optimum); a codebook cannot hold the same level twice, so there are no more levels than values
        return KMeansResult(distinct.float(), 0, [0.0], True)
    if not isinstance(init, torch.Tensor):
        if init == "linear":
            levels = torch.linspace(float(xs[0]), float(xs[-1]), n_levels, dtype=torch.float64)
        elif init == "quantile":
            pos = torch.linspace(0, distinct.numel() - 1, n_levels, dtype=torch.float64).round().long()
            levels = distinct[pos]
        else:
            gen = torch.Generator().manual_seed(seed)
            pick = torch.randperm(distinct.numel(), generator=gen)[:n_levels]
            levels = distinct[pick].sort().values
        if n_levels == 1:
            levels = xs.mean().reshape(1)
    n = xs.numel()
    zero = torch.zeros(1, dtype=torch.float64)
    cs1 = torch.cat([zero, torch.cumsum(xs, 0)])
    cs2 = torch.cat([zero, torch.cumsum(xs * xs, 0)])

    def stats(lv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
        mid = ((lv[:-1].float() + lv[1:].float()) / 2).double()  # float32 midpoints, like codebook_quantize
        cuts = torch.cat([zero.long(), torch.searchsorted(xs, mid, right=True), torch.tensor([n])])
        cnt = (cuts[1:] - cuts[:-1]).double()
        s1 = cs1[cuts[1:]] - cs1[cuts[:-1]]
        s2 = cs2[cuts[1:]] - cs2[cuts[:-1]]
        sse = (s2 - 2 * lv * s1 + cnt * lv * lv).sum().clamp(min=0)
        return cnt, s1, s2, float(sse) / n

    best = levels.clone()
    cnt, s1, _, mse = stats(levels)
    best_mse = mse
    history = [mse]
    converged = False
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007 - the count is returned
        new = torch.where(cnt > 0, s1 / cnt.clamp(min=1), levels)
        cnt, s1, _, mse = stats(new)
        history.append(mse)
        improvement = history[-2] - mse
        levels = new
        if mse < best_mse:
            best, best_mse = new.clone(), mse
        if improvement <= tol * max(history[-2], 1e-300):
            converged = True
            break
    out = best.float()
    if out.numel() > 1 and bool((out[1:] <= out[:-1]).any()):
        # float32 rounding merged two levels (only for near-identical data); keep them distinct
        out = torch.unique(out)
        extra = n_levels - out.numel()
        out = torch.cat(
            [out, out[-1] + torch.arange(1, extra + 1) * torch.finfo(torch.float32).eps * max(1.0, abs(float(out[-1])))]
        )
    return KMeansResult(out, it, history, converged)


def kmeans_levels(
    x: torch.Tensor,
    bits: int,
    *,
    init: str | torch.Tensor = "quantile",
    max_iter: int = 300,
    tol: float = 1e-6,
    seed: int = 0,
) -> torch.Tensor:
    """The ``2^bits`` k-means levels of ``x`` (ascending float32); see ``kmeans_fit``.

    Fewer when ``x`` has at most ``2^bits`` distinct values: then the levels are those values.

    Taught in 03_nonuniform.
    """
    bits = check_bits(bits, lo=1, hi=16)
    return kmeans_fit(x, 2**bits, init=init, max_iter=max_iter, tol=tol, seed=seed).levels


# --------------------------------------------------------------------------------------------
# the seminar's rule-based code book, storage, packing
# --------------------------------------------------------------------------------------------


def rule_codebook(x: torch.Tensor) -> torch.Tensor:
    """The simplest code book, a hand-written rule: ``x < 0 -> 0``, ``0 <= x < 1 -> 1``, ``x >= 1 -> 2``.

    ``bucketize(x, [0, 1], right=True)``; returns int64 codes. Taught in 03_nonuniform.
    """
    check_float_tensor(x, "x")
    return torch.bucketize(x.detach(), torch.tensor([0.0, 1.0], dtype=x.dtype), right=True)


def storage_bits_per_weight(
    n_weights: int,
    bits: int,
    *,
    n_codebook: int = 0,
    codebook_bits: int = 32,
    block_size: int | None = None,
    scale_bits: int = 32,
) -> float:
    """Bits per weight including side information: ``(n·b + n_codebook·codebook_bits + n_blocks·scale_bits) / n``.

    ``n_blocks = ceil(n / block_size)`` when ``block_size`` is given (one absmax or scale per
    block), else 0. Example: NF4 with block 64 and fp32 absmax: ``4 + 32/64 = 4.5`` bits
    (the 16-entry table is a constant of the format, not stored: ``n_codebook=0``); a k-means
    codebook of 16 fp32 levels per tensor adds ``16·32/n``. Taught in 03_nonuniform.
    """
    n_weights = check_int(n_weights, "n_weights", lo=1)
    bits = check_bits(bits, lo=1, hi=32)
    n_codebook = check_int(n_codebook, "n_codebook", lo=0)
    codebook_bits = check_int(codebook_bits, "codebook_bits", lo=1, hi=64)
    scale_bits = check_int(scale_bits, "scale_bits", lo=0, hi=64)
    n_blocks = 0
    if block_size is not None:
        block_size = check_int(block_size, "block_size", lo=1)
        n_blocks = -(-n_weights // block_size)
    return (n_weights * bits + n_codebook * codebook_bits + n_blocks * scale_bits) / n_weights


def pack_codes(q: torch.Tensor, bits: int) -> torch.Tensor:
    """Pack ``bits``-bit codes (1, 2, 4 or 8) into bytes, first code in the highest bits (bitsandbytes' nibble order).

    ``q`` is flattened and zero-padded to a whole number of bytes. Returns uint8 of length
    ``ceil(n·bits/8)``. Taught in 03_nonuniform.
    """
    check_choice(bits, "bits", (1, 2, 4, 8))
    _check_indices(q, 2**bits)
    per = 8 // bits
    flat = q.reshape(-1).to(torch.uint8)
    pad = (-flat.numel()) % per
    if pad:
        flat = torch.cat([flat, torch.zeros(pad, dtype=torch.uint8)])
    groups = flat.reshape(-1, per).to(torch.int32)
    shifts = torch.arange(per - 1, -1, -1, dtype=torch.int32) * bits
    return (groups << shifts).sum(dim=1).to(torch.uint8)


def unpack_codes(packed: torch.Tensor, bits: int, n: int) -> torch.Tensor:
    """Inverse of ``pack_codes``: the first ``n`` codes (uint8). Taught in 03_nonuniform."""
    check_choice(bits, "bits", (1, 2, 4, 8))
    check_tensor(packed, "packed")
    if packed.dtype != torch.uint8:
        raise TypeError(f"packed must be a uint8 tensor, got dtype {packed.dtype}")
    per = 8 // bits
    n = check_int(n, "n", lo=1, hi=packed.numel() * per)
    shifts = torch.arange(per - 1, -1, -1, dtype=torch.int32) * bits
    codes = (packed.reshape(-1, 1).to(torch.int32) >> shifts) & (2**bits - 1)
    return codes.reshape(-1)[:n].to(torch.uint8)


# --------------------------------------------------------------------------------------------
# one entry point for the lesson's comparisons
# --------------------------------------------------------------------------------------------

#: Methods compared in the lesson: symmetric absmax int grid, min-max affine grid, power-of-two,
#: k-means fitted to the (block-normalised) data, NormalFloat, FP4 e2m1.
METHODS = ("uniform", "affine", "pow2", "kmeans", "nf", "fp4")

#: How figures, tables and the widget name each method.
METHOD_LABELS = {
    "uniform": "uniform (absmax)",
    "affine": "uniform (affine)",
    "pow2": "power-of-two",
    "kmeans": "k-means",
    "nf": "NormalFloat",
    "fp4": "FP4 e2m1",
}


def method_levels(method: str, bits: int, x_normalised: torch.Tensor | None = None, *, seed: int = 0) -> torch.Tensor:
    """The normalised codebook of ``method`` at ``bits`` (k-means needs the normalised data to fit).

    ``"uniform"`` -> ``uniform_levels``, ``"pow2"`` -> ``pow2_levels``, ``"nf"`` -> ``nf_levels``,
    ``"fp4"`` -> ``fp4_e2m1_levels`` (4 bits only), ``"kmeans"`` -> ``kmeans_levels(x_normalised)``.
    (``"affine"`` has no fixed codebook: its grid moves with each block's min and max.)
    Taught in 03_nonuniform.
    """
    check_choice(method, "method", tuple(m for m in METHODS if m != "affine"))
    bits = check_bits(bits, lo=2, hi=8)
    if method == "uniform":
        return uniform_levels(bits)
    if method == "pow2":
        return pow2_levels(bits)
    if method == "nf":
        return nf_levels(bits)
    if method == "fp4":
        if bits != 4:
            raise ValueError(f"bits must be 4 for method 'fp4' (FP4 e2m1 is a 4-bit format), got {bits}")
        return fp4_e2m1_levels()
    if x_normalised is None:
        raise ValueError("x_normalised is needed for method 'kmeans' (the values to fit the codebook to)")
    return kmeans_levels(x_normalised, bits, seed=seed)


class NonUniformResult(NamedTuple):
    """Output of ``nonuniform_fake_quantize``: ``x_hat`` (shape of x), normalised ``levels`` (None for affine), per-block ``absmax``."""

    x_hat: torch.Tensor
    levels: torch.Tensor | None
    absmax: torch.Tensor


def _block_absmax_normalise(flat: torch.Tensor, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``flat / absmax(block)`` and the per-block absmax (same arithmetic as ``blockwise_absmax_codebook``)."""
    n = flat.numel()
    rem = n % block_size
    full = n - rem
    absmax = flat[:full].reshape(-1, block_size).abs().amax(dim=1)
    scaled = (flat[:full].reshape(-1, block_size) * (1.0 / absmax.clamp(min=1e-38)).unsqueeze(1)).reshape(-1)
    if rem:
        am = flat[full:].abs().max().clamp(min=1e-38)
        absmax = torch.cat([absmax, am.reshape(1)])
        scaled = torch.cat([scaled, flat[full:] / am])
    return torch.clamp(scaled, -1, 1), absmax


def nonuniform_fake_quantize(
    x: torch.Tensor, method: str, bits: int, block_size: int | None = None, *, seed: int = 0
) -> NonUniformResult:
    """Quantize-dequantize ``x`` with one of ``METHODS`` at ``bits``, per tensor or with blockwise absmax scaling.

    Codebook methods: ``x`` is flattened, each block (``block_size`` values; the whole tensor when
    None) is divided by its absmax, mapped to the nearest level and multiplied back. k-means fits
    one codebook of ``2^bits`` levels to all the normalised values (its storage cost is counted
    separately, see ``storage_bits_per_weight``). ``"affine"``: min-max asymmetric uniform
    quantization per block with ``helpers.affine`` (``2^bits`` levels, zero exact).
    Taught in 03_nonuniform.
    """
    check_float_tensor(x, "x")
    _check_float32_range(x, "x")
    check_choice(method, "method", METHODS)
    bits = check_bits(bits, lo=2, hi=8)
    flat = x.detach().reshape(-1).float()
    bs = flat.numel() if block_size is None else check_int(block_size, "block_size", lo=1)
    if method == "affine":
        n = flat.numel()
        pad = (-n) % bs
        padded = torch.cat([flat, flat[-1:].expand(pad)]) if pad else flat
        blocks = padded.reshape(-1, bs)
        scale, zp = calc_qparams(blocks, bits, signed=True, axis=0)  # one min-max range per block (row)
        qmin, qmax = qrange(bits, signed=True)
        x_hat = fake_quantize(blocks, scale, zp, qmin, qmax, axis=0)
        return NonUniformResult(x_hat.reshape(-1)[:n].reshape(x.shape), None, blocks.abs().amax(dim=1))
    scaled, absmax = _block_absmax_normalise(flat, bs)
    levels = method_levels(method, bits, scaled, seed=seed)
    q, absmax = blockwise_absmax_codebook(flat, levels, bs)
    x_hat = blockwise_codebook_dequantize(q, absmax, levels, bs, tuple(x.shape))
    return NonUniformResult(x_hat, levels, absmax)


def mse_table(
    data: Mapping[str, torch.Tensor],
    block_sizes: Sequence[int] = (32, 64, 256),
    bits: Sequence[int] = (2, 3, 4),
    methods: Sequence[str] = METHODS,
) -> dict[tuple[str, int, int, str], float]:
    """Relative MSE ``mean((x_hat - x)^2) / var(x)`` of every method × block size × bit width on each named tensor.

    ``data`` maps a name to a float tensor; the result maps ``(name, block_size, bits, method)`` to
    the relative MSE of ``nonuniform_fake_quantize(x, method, bits, block_size)`` (FP4 only at 4
    bits). The lesson prints a few rows of it; ``mse_table_markdown(table)`` formats all of them.
    Taught in 03_nonuniform.
    """
    if not isinstance(data, Mapping) or not data:
        raise TypeError("data must be a non-empty dict of name -> float tensor")
    for name, x in data.items():
        check_float_tensor(x, f"data[{name!r}]")
        _check_float32_range(x, f"data[{name!r}]")
    if isinstance(block_sizes, (str, bytes)) or not block_sizes:
        raise ValueError("block_sizes must be a non-empty sequence of ints >= 1")
    block_sizes = [check_int(b, "block_sizes[i]", lo=1) for b in block_sizes]
    if isinstance(bits, (str, bytes, int)) or not bits:
        raise ValueError("bits must be a non-empty sequence of bit widths in 2..8")
    bits = [check_bits(b, lo=2, hi=8, name="bits[i]") for b in bits]
    if isinstance(methods, str) or not methods:
        raise ValueError(f"methods must be a non-empty sequence of {', '.join(METHODS)}")
    methods = [check_choice(m, "methods[i]", METHODS) for m in methods]
    table = {}
    for name, x in data.items():
        for bs in block_sizes:
            for b in bits:
                for m in methods:
                    if m == "fp4" and b != 4:
                        continue
                    res = nonuniform_fake_quantize(x, m, b, bs)
                    table[name, bs, b, m] = float(((res.x_hat - x) ** 2).mean() / x.var())
    return table


def mse_table_markdown(
    table: Mapping[tuple[str, int, int, str], float], rows: Sequence[tuple[str, int, int]] | None = None
) -> str:
    """A Markdown table of ``mse_table``'s result: one row per ``(name, block_size, bits)``, one column per method.

    ``rows`` picks and orders the rows (all of them by default). The lowest MSE of a row is bold;
    the last column names the best *fixed* format (every method but k-means, which fits its levels
    to the data). Taught in 03_nonuniform.
    """
    if not isinstance(table, Mapping) or not table:
        raise TypeError("table must be the non-empty dict mse_table returns")
    methods = [m for m in METHODS if any(k[3] == m for k in table)]
    all_rows = list(dict.fromkeys(k[:3] for k in table))
    if rows is None:
        rows = all_rows
    missing = [r for r in rows if tuple(r) not in all_rows]
    if missing:
        raise ValueError(f"rows must be (name, block_size, bits) keys of the table; not in it: {missing[:3]}")
    text = "| data | block | bits | " + " | ".join(METHOD_LABELS[m] for m in methods) + " | best fixed format |\n"
    text += "|---|---|---|" + "---|" * (len(methods) + 1) + "\n"
    for name, bs, b in rows:
        vals = {m: table.get((name, bs, b, m)) for m in methods}
        best = min((v, m) for m, v in vals.items() if v is not None)[1]
        fixed = [(v, m) for m, v in vals.items() if v is not None and m != "kmeans"]
        fixed_label = METHOD_LABELS[min(fixed)[1]] if fixed else "–"
        cells = [("**%.4f**" if m == best else "%.4f") % v if v is not None else "–" for m, v in vals.items()]
        text += f"| {name} | {bs} | {b} | " + " | ".join(cells) + f" | {fixed_label} |\n"
    return text


def codebook_view(
    x: torch.Tensor, method: str = "nf", bits: int = 4, block_size: int | None = 64, name: str = "weights"
) -> dict:
    """What the lesson's codebook widget shows for ``x`` quantized with ``method`` at ``bits`` and ``block_size``.

    Returns a dict: ``method, bits, block_size, name``; ``normalised`` (``x / absmax(block)``, or
    ``x / absmax`` for affine, whose grid moves per block), ``levels`` (the normalised codebook, None
    for affine), ``err = x_hat - x`` (flat), ``mse``, ``sqnr_db``, ``bits_per_weight`` (codes, one
    fp32 absmax per block, and a fitted k-means codebook of fp32 levels), ``title`` and ``readout``
    (text). FP4 e2m1 at ``bits != 4`` gives only ``message`` and ``readout``, saying so.
    Drawn by ``helpers.plotting.nonuniform.codebook_figure``. Taught in 03_nonuniform.
    """
    check_float_tensor(x, "x")
    check_choice(method, "method", METHODS)
    bits = check_bits(bits, lo=2, hi=8)
    if block_size is not None:
        block_size = check_int(block_size, "block_size", lo=1)
    _check_float32_range(x, "x")
    if method == "fp4" and bits != 4:
        return {"message": f"FP4 e2m1 is a 4-bit format; pick bits = 4 (got {bits})", "readout": "FP4 needs bits = 4"}
    res = nonuniform_fake_quantize(x, method, bits, block_size)
    flat = x.detach().reshape(-1).float()
    err = res.x_hat.reshape(-1) - flat
    err64 = res.x_hat.reshape(-1).double() - flat.double()
    mse = float((err64**2).mean())
    signal = float((flat.double() ** 2).mean())
    if mse == 0:
        sqnr, sqnr_text = math.inf, "SQNR ∞ (exact)"
    else:
        sqnr = 10 * math.log10(signal / mse) if signal > 0 else -math.inf
        sqnr_text = f"SQNR {sqnr:.2f} dB"
    n = flat.numel()
    bs = block_size if block_size is not None else n
    n_codebook = res.levels.numel() if method == "kmeans" else 0
    bpw = storage_bits_per_weight(n, bits, n_codebook=n_codebook, block_size=bs)
    if method == "affine":
        normalised = flat / flat.abs().max().clamp(min=1e-38)
        title = f"{name}: x / absmax (affine grid moves per block)"
    else:
        normalised, _ = _block_absmax_normalise(flat, bs)
        title = f"{name}: x / absmax(block) with {METHOD_LABELS[method]} levels"
    block = "per tensor" if block_size is None else f"block {block_size}"
    note = ""
    if method == "kmeans" and res.levels.numel() < 2**bits:
        d = res.levels.numel()
        note = f"; only {d} distinct normalised value{'s' if d > 1 else ''}, so {d} k-means level{'s' if d > 1 else ''}"
    readout = (
        f"{METHOD_LABELS[method]}, {bits} bits, {block}: MSE {mse:.4g}, {sqnr_text}, "
        f"storage {bpw:.3f} bits/weight{note}"
    )
    return {
        "method": method,
        "bits": bits,
        "block_size": block_size,
        "name": name,
        "normalised": normalised,
        "levels": res.levels,
        "err": err,
        "mse": mse,
        "sqnr_db": float(sqnr),
        "bits_per_weight": bpw,
        "title": title,
        "readout": readout,
    }


# --------------------------------------------------------------------------------------------
# exercise checkers
# --------------------------------------------------------------------------------------------


def _codes_compare(got, want) -> str | None:
    """Indices must be integers, of x's shape, equal to the nearest-level indices."""
    if not isinstance(got, torch.Tensor):
        return f"expected a tensor of indices, got {type(got).__name__}"
    if got.is_floating_point():
        return "returned floating-point values: return the index of the nearest level (argmin), not the level itself"
    if got.dtype == torch.bool or got.is_complex():
        return f"expected integer indices, got dtype {got.dtype}"
    if got.shape != want.shape:
        return f"shape {tuple(got.shape)} (expected {tuple(want.shape)}, the shape of x: reshape the indices back)"
    bad = got.long() != want
    if bad.any():
        i = int(bad.flatten().nonzero()[0])
        return (
            f"{int(bad.sum())} of {want.numel()} indices differ; first at flat index {i}: "
            f"{int(got.flatten()[i])} (expected {int(want.flatten()[i])})"
        )
    return None


def _away_from_midpoints(x: torch.Tensor, levels: torch.Tensor, gap: float = 1e-4) -> torch.Tensor:
    """Drop values within ``gap`` of a midpoint (there float rounding, not the method, decides the index)."""
    mid = (levels[:-1] + levels[1:]) / 2
    keep = (x.reshape(-1, 1) - mid.reshape(1, -1)).abs().min(dim=1).values > gap
    return x[keep]


def check_codebook_quantize(fn, *, quiet: bool = False) -> bool:
    """Grade ``fn(x, levels) -> indices`` (exercise 1 of 03_nonuniform): the nearest level's index, ties to the lower.

    Right answers come from ``codebook_quantize`` (equal to bitsandbytes' ``quantize_4bit`` codes).
    Cases: NF4 levels on Gaussian values, uneven power-of-two levels (a uniform-grid rounding
    fails), exact ties between dyadic levels (the lower level wins), values beyond both ends, and a
    2-D ``x`` (the indices keep its shape). Returns True when every case agrees.
    Taught in 03_nonuniform.
    """
    from helpers.exercises import grade

    gen = torch.Generator().manual_seed(3)
    nf4 = nf4_levels()
    x_nf = _away_from_midpoints(torch.randn(400, generator=gen) * 0.5, nf4)
    p2 = pow2_levels(3)
    x_p2 = _away_from_midpoints(torch.rand(300, generator=gen) * 2.4 - 1.2, p2)
    ties_lv = torch.tensor([-1.0, 0.0, 1.0])
    ties = torch.tensor([-0.5, 0.5, 0.25, -0.75, 0.0])
    outside = torch.tensor([-5.0, 5.0, 1e3, -1e3])
    x2d = _away_from_midpoints(torch.randn(60, generator=gen) * 0.4, nf4)[:48].reshape(6, 8)
    cases = [
        ((x_nf, nf4), codebook_quantize(x_nf, nf4).long(), "NF4"),
        ((x_p2, p2), codebook_quantize(x_p2, p2).long(), "uneven levels"),
        ((ties, ties_lv), codebook_quantize(ties, ties_lv).long(), "ties"),
        ((outside, nf4), codebook_quantize(outside, nf4).long(), "outside the levels"),
        ((x2d, nf4), codebook_quantize(x2d, nf4).long(), "2-D x"),
    ]
    hints = {
        "NF4": "the nearest level minimises |x - level|: broadcast x[..., None] - levels, take .abs(), then argmin over the levels' axis",
        "uneven levels": "the levels are not evenly spaced: rounding onto a uniform grid cannot find them; compare with every level",
        "ties": "a value exactly halfway between two levels goes to the lower one (argmin returns the first minimum)",
        "outside the levels": "values beyond the ends go to the first or last level (do not drop or clamp them to a wrong index)",
        "2-D x": "return one index per element of x, in x's shape",
    }
    return grade(
        "my_codebook_quantize",
        fn,
        cases,
        hint=hints["NF4"],
        hints=hints,
        compare=_codes_compare,
        quiet=quiet,
    )


def _nf_compare(got, want) -> str | None:
    """Levels must equal NormalFloat's to 1e-6; the message names the classic mistake it sees."""
    if not isinstance(got, torch.Tensor):
        return f"expected a tensor of levels, got {type(got).__name__}"
    if not got.is_floating_point():
        return f"expected floating-point levels, got dtype {got.dtype}"
    g = got.detach().reshape(-1).double()
    w = want.double()
    if g.numel() != w.numel():
        return (
            f"{g.numel()} levels (expected {w.numel()} = 2^bits: {int((w > 0).sum())} positive, "
            f"{int((w < 0).sum())} negative and one exact zero)"
        )
    if not bool(torch.isfinite(g).all()):
        return "non-finite levels: the outermost probability must be the offset δ < 1, not 1 (Φ^-1(1) = inf)"
    if bool((g[1:] < g[:-1]).any()):
        return "levels not in ascending order: sort them"
    if int((g == 0).sum()) != 1:
        return "no exact zero: NormalFloat adds 0 as its own level (zero weights and padding must stay exactly 0)"
    if float(g.max()) != 1.0 or float(g.min()) != -1.0:
        return (
            f"range [{float(g.min()):.4f}, {float(g.max()):.4f}]: normalise by dividing by the largest level, "
            "so the ends are exactly -1 and +1 (the blockwise absmax maps data to [-1, 1])"
        )
    err = float((g - w).abs().max())
    if err > 1e-6:
        i = int((g - w).abs().argmax())
        return (
            f"level {i} is {float(g[i]):.6f} (expected {float(w[i]):.6f}; max |diff| {err:.2g}): "
            "quantiles of N(0, 1) (torch.special.ndtri), p evenly spaced from the offset δ to 0.5, "
            "2^(bits-1) points on the positive side and one fewer on the negative side"
        )
    return None


def check_nf_levels(fn, *, quiet: bool = False) -> bool:
    """Grade ``fn(bits) -> levels`` (exercise 2 of 03_nonuniform): the ``2^bits`` NormalFloat levels, ascending.

    Right answers come from ``nf_levels`` (at 4 bits equal to bitsandbytes' NF4 table to 1e-7,
    checked in the lesson); cases at 3 bits (NF3), 2, 4 and 5 bits, so a recipe with NF4's
    constants hard-coded fails. The message names the classic mistake it sees: the wrong number of
    levels, no exact zero, not normalised to [-1, 1], quantiles of another distribution or with the
    wrong offset. Taught in 03_nonuniform.
    """
    from helpers.exercises import grade

    cases = [((b,), nf_levels(b).double(), f"{b} bits") for b in (3, 2, 4, 5)]
    return grade(
        "my_nf_levels",
        fn,
        cases,
        hint="follow the NF4 recipe with n = 2^bits codes: offset δ, ndtri quantiles, add 0, sort, divide by the largest",
        compare=_nf_compare,
        quiet=quiet,
    )
