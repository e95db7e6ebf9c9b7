"""Uniform (affine and symmetric) quantization: qparams, quantize, dequantize, fake-quantize.

Taught in 02_affine. Vocabulary used everywhere in the course:
``x`` float input, ``q`` integer codes, ``scale``, ``zero_point``, ``bits``, ``qmin``/``qmax``,
``x_hat`` dequantized value, ``err = x_hat - x``.

The default arithmetic follows PyTorch's CPU kernels exactly, so the results are bit-equal
to ``torch.quantize_per_tensor`` / ``torch.fake_quantize_per_tensor_affine``:

* qparams in float32: ``scale = (max - min) / (qmax - qmin)``, ``zero_point = qmin - round(min / scale)``,
  with the range first widened to include 0 (so that 0 is exactly representable);
* quantize: ``q = clamp(round(x * (1 / scale)) + zero_point, qmin, qmax)`` with round-half-to-even;
* dequantize: ``x_hat = (q - zero_point) * scale``.

Granularity is chosen by ``axis`` and ``group_size``: neither → per-tensor (one scale),
``axis`` only → per-channel along ``axis`` (one scale per index of that dimension),
``axis`` and ``group_size`` → per-group: dimension ``axis`` is cut into contiguous groups of
``group_size`` elements, each with its own scale.
"""

from __future__ import annotations

import math

import torch

from helpers._validate import (
    check_axis,
    check_bits,
    check_choice,
    check_finite_number,
    check_float32_tensor,
    check_float_tensor,
    check_int,
    check_min_max,
    check_positive,
    check_tensor,
)
from helpers.exercises import close, grade

__all__ = [
    "qrange",
    "affine_qparams",
    "calc_qparams",
    "quantize",
    "dequantize",
    "fake_quantize",
    "quantize_tensor",
    "fake_quantize_tensor",
    "fake_quantize_range",
    "fake_quantize_weight",
    "clipping_error_split",
    "mse",
    "sqnr_db",
    "GRANULARITIES",
    "PER_CHANNEL_ZP_DTYPES",
    "CONVENTIONS",
    "SCHEMES",
    "DISTRIBUTIONS",
    "sample_distribution",
    "clip_range",
    "quant_view",
    "playground_view",
    "small_multiples_view",
    "check_symmetric_qparams",
    "check_prediction",
    "check_clip",
]

GRANULARITIES = ("tensor", "channel", "group")
CONVENTIONS = ("round_then_shift", "shift_then_round")
SCHEMES = ("affine", "symmetric")
DISTRIBUTIONS = ("normal", "uniform", "relu", "heavy-tailed")
_F32_EPS = torch.finfo(torch.float32).eps
_F32_MAX = torch.finfo(torch.float32).max
_F32_TINY = torch.finfo(torch.float32).tiny  # smallest normal float32: below it 1 / scale overflows
# torch.fake_quantize_per_channel_affine takes only a float32 scale and these zero-point dtypes.
PER_CHANNEL_ZP_DTYPES = (torch.int32, torch.float32, torch.float16)


def qrange(bits: int = 8, signed: bool = True, restricted: bool = False) -> tuple[int, int]:
    """Integer range ``(qmin, qmax)`` of a ``bits``-bit code.

    signed full: ``[-2^(b-1), 2^(b-1)-1]``; signed restricted: ``[-(2^(b-1)-1), 2^(b-1)-1]``
    (symmetric around 0, e.g. [-127, 127]); unsigned: ``[0, 2^b - 1]``.
    Taught in 02_affine.
    """
    check_bits(bits)
    if not isinstance(signed, bool):
        raise TypeError(f"signed must be True or False, got {signed!r}")
    if not isinstance(restricted, bool):
        raise TypeError(f"restricted must be True or False, got {restricted!r}")
    if not signed:
        if restricted:
            raise ValueError("restricted=True needs signed=True (the restricted range is [-(2^(b-1)-1), 2^(b-1)-1])")
        return 0, 2**bits - 1
    if restricted:
        if bits < 2:
            raise ValueError(f"restricted=True needs bits in 2..16, got {bits}")
        return -(2 ** (bits - 1)) + 1, 2 ** (bits - 1) - 1
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def affine_qparams(
    x_min: float | torch.Tensor,
    x_max: float | torch.Tensor,
    bits: int = 8,
    *,
    signed: bool = True,
    symmetric: bool = False,
    restricted: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and zero-point that map ``[x_min, x_max]`` onto the ``bits``-bit integer range.

    Affine: ``scale = (max - min) / (qmax - qmin)``, ``zero_point = qmin - round(min / scale)``.
    Symmetric: ``scale = max(|min|, |max|) / ((qmax - qmin) / 2)``, ``zero_point`` = 0 (signed)
    or the middle code (unsigned). The range is widened to include 0 first and the arithmetic is
    float32, as in ``torch.ao.quantization.MinMaxObserver``. ``x_min``/``x_max`` may be tensors
    (one entry per channel or group). Returns float32 ``scale`` and int32 ``zero_point``.
    Taught in 02_affine.
    """
    for value, name in ((x_min, "x_min"), (x_max, "x_max")):
        if not isinstance(value, torch.Tensor):
            check_finite_number(value, name)
        elif value.is_complex() or value.dtype == torch.bool:
            raise TypeError(f"{name} must be a real number or a real tensor, got dtype {value.dtype}")
    check_min_max(x_min, x_max)
    qmin, qmax = qrange(bits, signed, restricted)
    if not isinstance(symmetric, bool):
        raise TypeError(f"symmetric must be True or False, got {symmetric!r}")
    lo = torch.as_tensor(x_min, dtype=torch.float32)
    hi = torch.as_tensor(x_max, dtype=torch.float32)
    if not (bool(torch.isfinite(lo).all()) and bool(torch.isfinite(hi).all())):
        raise ValueError(f"x_min and x_max must lie within float32's range (|value| <= {_F32_MAX:.4g})")
    lo, hi = torch.broadcast_tensors(lo, hi)
    lo = torch.clamp(lo, max=0.0)
    hi = torch.clamp(hi, min=0.0)
    eps = torch.tensor(_F32_EPS, dtype=torch.float32)
    if symmetric:
        amax = torch.maximum(-lo, hi)
        scale = torch.maximum(amax / (float(qmax - qmin) / 2), eps)
        middle = 0 if signed else (qmin + qmax + 1) // 2
        zero_point = torch.full_like(scale, middle, dtype=torch.int32)
    else:
        scale = torch.maximum((hi - lo) / float(qmax - qmin), eps)
        zero_point = (qmin - torch.round(lo / scale)).to(torch.int32)
        zero_point = torch.clamp(zero_point, qmin, qmax)
    if not bool(torch.isfinite(scale).all()):
        raise ValueError(
            f"x_max - x_min must be representable in float32 (at most {_F32_MAX:.4g}): the scale overflowed to inf"
        )
    return scale, zero_point


def _group_view(x: torch.Tensor, axis: int, group_size: int) -> torch.Tensor:
    """View ``x`` with dimension ``axis`` split into ``(n_groups, group_size)``."""
    n = x.shape[axis]
    if n % group_size:
        raise ValueError(f"group_size must divide the size of dimension {axis} ({n}); got group_size={group_size}")
    return x.reshape(*x.shape[:axis], n // group_size, group_size, *x.shape[axis + 1 :])


def _granularity(x: torch.Tensor, axis: int | None, group_size: int | None) -> tuple[int | None, int | None]:
    """Validate ``axis``/``group_size`` against ``x`` and return them normalised."""
    if axis is None:
        if group_size is not None:
            raise ValueError("group_size needs an axis: pass axis=<dimension to cut into groups>")
        return None, None
    axis = check_axis(axis, x.ndim)
    if group_size is not None:
        group_size = check_int(group_size, "group_size", lo=1)
        if x.shape[axis] % group_size:
            raise ValueError(
                f"group_size must divide the size of dimension {axis} ({x.shape[axis]}); got group_size={group_size}"
            )
    return axis, group_size


def _broadcast_param(
    p: torch.Tensor, x: torch.Tensor, axis: int | None, group_size: int | None, name: str
) -> torch.Tensor:
    """Reshape a per-tensor/per-channel/per-group parameter so it broadcasts against ``x``."""
    if axis is None:
        if p.numel() != 1:
            raise ValueError(f"{name} must have one element for per-tensor quantization, got shape {tuple(p.shape)}")
        return p.reshape(())
    if group_size is None:
        if p.numel() != x.shape[axis]:
            raise ValueError(
                f"{name} must have {x.shape[axis]} elements (size of axis {axis}) for per-channel quantization, "
                f"got {p.numel()}"
            )
        shape = [1] * x.ndim
        shape[axis] = -1
        return p.reshape(shape)
    expected = list(x.shape)
    expected[axis] = x.shape[axis] // group_size
    if list(p.shape) != expected:
        raise ValueError(f"{name} must have shape {tuple(expected)} for per-group quantization, got {tuple(p.shape)}")
    return p.repeat_interleave(group_size, dim=axis)


def _as_param(value: float | int | torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return value.to(dtype) if isinstance(value, torch.Tensor) else torch.tensor(value, dtype=dtype)


def _zero_point_tensor(zero_point: float | int | torch.Tensor) -> torch.Tensor:
    """``zero_point`` as a tensor after checking it holds whole numbers (no range check)."""
    if isinstance(zero_point, torch.Tensor):
        zp = zero_point
    elif isinstance(zero_point, (int, float)) and not isinstance(zero_point, bool):
        zp = torch.tensor(zero_point)
    else:
        raise TypeError(f"zero_point must be an integer number or tensor, got {type(zero_point).__name__}")
    if zp.numel() == 0:
        raise ValueError("zero_point must be non-empty")
    if zp.is_floating_point():
        if not bool(torch.isfinite(zp).all()) or not bool((zp == torch.round(zp)).all()):
            raise ValueError("zero_point must hold whole numbers")
    elif zp.dtype == torch.bool or zp.is_complex():
        raise TypeError(f"zero_point must be an integer tensor or number, got dtype {zp.dtype}")
    return zp


def _check_zero_point(zero_point: float | int | torch.Tensor, qmin: int, qmax: int) -> torch.Tensor:
    zp = _zero_point_tensor(zero_point)
    if bool((zp < qmin).any()) or bool((zp > qmax).any()):
        raise ValueError(
            f"zero_point must lie in qmin..qmax = {qmin}..{qmax}, got {zp.min().item()}..{zp.max().item()}"
        )
    return zp


def _check_qmin_qmax(qmin: int, qmax: int) -> None:
    check_int(qmin, "qmin", lo=-(2**16), hi=2**16)
    check_int(qmax, "qmax", lo=-(2**16), hi=2**16)
    if qmin >= qmax:
        raise ValueError(f"qmin must be < qmax, got qmin={qmin}, qmax={qmax}")
    if qmax - qmin > 2**16 - 1:
        raise ValueError(f"qmax - qmin must be at most 65535 (16 bits), got {qmax - qmin}")


def _code_dtype(qmin: int, qmax: int) -> torch.dtype:
    """Smallest integer dtype that holds ``qmin..qmax``."""
    for dtype in (torch.int8, torch.uint8, torch.int16, torch.int32):
        info = torch.iinfo(dtype)
        if info.min <= qmin and qmax <= info.max:
            return dtype
    return torch.int64


def _check_finite_fast(x: torch.Tensor, name: str) -> None:
    """One read-only pass: NaN or inf makes the min or max non-finite; float64 values must also fit float32."""
    lo, hi = torch.aminmax(x)
    if not (bool(torch.isfinite(lo)) and bool(torch.isfinite(hi))):
        raise ValueError(f"{name} must contain only finite values (no NaN or inf)")
    if x.dtype == torch.float64 and max(-float(lo), float(hi)) > _F32_MAX:
        raise ValueError(
            f"{name} must hold values float32 can represent (|x| <= {_F32_MAX:.4g}): the kernels compute in float32"
        )


def _check_scale(scale: float | torch.Tensor) -> None:
    """``scale`` must be finite and > 0, and a normal float32 (so that ``1 / scale`` is finite too)."""
    check_positive(scale, "scale")
    s = scale.detach().to(torch.float64) if isinstance(scale, torch.Tensor) else torch.tensor(float(scale))
    if bool((s > _F32_MAX).any()) or bool((s < _F32_TINY).any()):
        raise ValueError(
            f"scale must be a normal float32 in {_F32_TINY:.4g}..{_F32_MAX:.4g} (1 / scale must be finite in float32), "
            f"got {s.min().item():.4g}..{s.max().item():.4g}"
        )


def calc_qparams(
    x: torch.Tensor,
    bits: int = 8,
    *,
    signed: bool = True,
    symmetric: bool = False,
    restricted: bool = False,
    axis: int | None = None,
    group_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Min-max qparams of ``x`` per tensor, per channel (``axis``) or per group (``axis``, ``group_size``).

    Per-channel reduces over every dimension except ``axis``; per-group reduces over each
    contiguous group of ``group_size`` along ``axis`` (qparams shape: ``x.shape`` with that
    dimension divided by ``group_size``). Taught in 02_affine.
    """
    check_float_tensor(x, "x", allow_nonfinite=True)
    axis, group_size = _granularity(x, axis, group_size)
    xf = x.detach().float()
    if axis is None:
        lo, hi = torch.aminmax(xf)
    elif group_size is None:
        moved = xf.movedim(axis, 0).reshape(x.shape[axis], -1)
        lo, hi = torch.aminmax(moved, dim=1)
    else:
        lo, hi = torch.aminmax(_group_view(xf, axis, group_size), dim=axis + 1)
    if not (bool(torch.isfinite(lo).all()) and bool(torch.isfinite(hi).all())):
        raise ValueError("x must contain only finite values (no NaN or inf)")
    return affine_qparams(lo, hi, bits, signed=signed, symmetric=symmetric, restricted=restricted)


def quantize(
    x: torch.Tensor,
    scale: float | torch.Tensor,
    zero_point: int | torch.Tensor,
    qmin: int,
    qmax: int,
    *,
    axis: int | None = None,
    group_size: int | None = None,
    convention: str = "round_then_shift",
) -> torch.Tensor:
    """Integer codes ``q = clamp(round(x / scale) + zero_point, qmin, qmax)``.

    ``x / scale`` is computed as ``x * (1 / scale)`` in float32, like PyTorch's kernels, and
    rounding is half-to-even. ``convention="shift_then_round"`` computes
    ``round(x / scale + zero_point)`` instead — the form some papers write; the two differ only
    on ties. Returns the smallest integer dtype that holds ``qmin..qmax``. Like torch's quantize ops, it
    takes float32 ``x`` only (cast float16/bfloat16/float64 with ``x.float()`` first, as torch requires).
    Taught in 02_affine.
    """
    check_float32_tensor(x, "x", kernel="torch.quantize_per_tensor and torch.quantize_per_channel")
    _check_finite_fast(x, "x")
    _check_qmin_qmax(qmin, qmax)
    check_choice(convention, "convention", CONVENTIONS)
    axis, group_size = _granularity(x, axis, group_size)
    _check_scale(scale)
    zp = _check_zero_point(zero_point, qmin, qmax)
    s = _broadcast_param(_as_param(scale, torch.float32), x, axis, group_size, "scale")
    z = _broadcast_param(zp.to(torch.float32), x, axis, group_size, "zero_point")
    inv_scale = 1.0 / s
    if convention == "round_then_shift":
        q = torch.round(x.float() * inv_scale).add_(z)
    else:
        q = torch.round(x.float() * inv_scale + z)
    return q.clamp_(qmin, qmax).to(_code_dtype(qmin, qmax))


def dequantize(
    q: torch.Tensor,
    scale: float | torch.Tensor,
    zero_point: int | torch.Tensor,
    *,
    axis: int | None = None,
    group_size: int | None = None,
) -> torch.Tensor:
    """Float32 values ``x_hat = (q - zero_point) * scale``. Taught in 02_affine."""
    check_tensor(q, "q")
    if q.is_floating_point() or q.is_complex() or q.dtype == torch.bool:
        raise TypeError(f"q must be an integer tensor (int8, uint8, int16, int32 or int64), got dtype {q.dtype}")
    axis, group_size = _granularity(q, axis, group_size)
    _check_scale(scale)
    zp = _zero_point_tensor(zero_point)
    s = _broadcast_param(_as_param(scale, torch.float32), q, axis, group_size, "scale")
    z = _broadcast_param(zp.to(torch.float32), q, axis, group_size, "zero_point")
    return (q.float() - z) * s


def fake_quantize(
    x: torch.Tensor,
    scale: float | torch.Tensor,
    zero_point: int | torch.Tensor,
    qmin: int,
    qmax: int,
    *,
    axis: int | None = None,
    group_size: int | None = None,
) -> torch.Tensor:
    """Quantize then dequantize in one go: ``x_hat = (clamp(round(x/scale) + zp, qmin, qmax) - zp) * scale``.

    Equal, bit for bit (signed zeros included), to ``torch.fake_quantize_per_tensor_affine`` (per-tensor)
    and ``torch.fake_quantize_per_channel_affine`` (per-channel), on every input dtype they take:

    * float32 and float16/bfloat16 ``x`` are computed in float32 and returned in ``x``'s dtype;
    * float64 ``x`` gives float64: per tensor the values are the float32 ones (torch computes in
      float32), per channel (and per group) torch computes in float64 with ``1 / scale`` taken in
      float32, and so does this;
    * per channel, a floating-point ``zero_point`` tensor (float32 or float16, as torch allows; it may
      be fractional, as LSQ-style learned zero points are) switches to torch's float rule
      ``(clamp(round(x/scale + zp), qmin, qmax) - zp) * scale``: whole but odd zero points then round
      ties differently from the integer rule (see 02_affine's conventions);
    * per channel, ``scale`` must be a float32 tensor and an integer ``zero_point`` tensor int32, as torch
      requires (other dtypes are refused by name).

    The integer rule uses ``clamp(r + zp, qmin, qmax) - zp == clamp(r, qmin - zp, qmax - zp)`` so it needs
    only a few element-wise passes. Taught in 02_affine.
    """
    check_float_tensor(x, "x", allow_nonfinite=True)
    _check_finite_fast(x, "x")
    _check_qmin_qmax(qmin, qmax)
    axis, group_size = _granularity(x, axis, group_size)
    _check_scale(scale)
    float_zp = False
    if axis is not None:
        _check_per_channel_dtypes(scale, zero_point)
        float_zp = isinstance(zero_point, torch.Tensor) and zero_point.is_floating_point()
    if float_zp:
        zp = zero_point.detach().float()
        if not bool(torch.isfinite(zp).all()):
            raise ValueError("zero_point must contain only finite values (no NaN or inf)")
    else:
        zp = _check_zero_point(zero_point, qmin, qmax)
    s = _broadcast_param(_as_param(scale, torch.float32), x, axis, group_size, "scale")
    z = _broadcast_param(zp.to(torch.float32), x, axis, group_size, "zero_point")
    if float_zp:
        return _float_zero_point_fake_quant(x, s, z, qmin, qmax)[0]
    if x.dtype == torch.float64 and axis is not None:  # torch's per-channel kernel works in float64
        zd, sd = z.double(), s.double()
        r = torch.round(x * (1.0 / s).double())
        return torch.clamp(r, qmin - zd, qmax - zd).add_(0.0).mul_(sd)
    r = torch.round(x.float() * (1.0 / s))
    if z.ndim == 0:
        r.clamp_(qmin - float(z), qmax - float(z))
    else:
        r = torch.clamp(r, qmin - z, qmax - z)
    out = r.add_(0.0).mul_(s)  # + 0.0 turns round's -0.0 into +0.0, as torch's (q - zp) * scale gives
    return out if x.dtype == torch.float32 else out.to(x.dtype)


def _float_zero_point_fake_quant(
    x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, qmin: int, qmax: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """torch's per-channel fake-quant with a floating zero point: ``(x_hat, mask)``, no validation.

    ``scale`` and ``zero_point`` are float32 and broadcast against ``x``. Codes are
    ``q = round(x * (1 / scale) + zero_point)`` (in float64 for float64 ``x``, else in float32); then
    ``x_hat = (clamp(q, qmin, qmax) - zero_point) * scale`` in float64, rounded to ``x``'s dtype (float32
    first), as torch's CPU kernel computes it; ``mask`` is ``qmin <= q <= qmax`` (where the STE passes the
    gradient). Shared by ``fake_quantize`` and ``helpers.qat``'s STE.
    """
    if x.dtype == torch.float64:
        code = torch.round(x * (1.0 / scale).double() + zero_point.double())
    else:
        code = torch.round(x.float() * (1.0 / scale) + zero_point)
    mask = (code >= qmin) & (code <= qmax)
    out = code.clamp_(qmin, qmax).double().sub_(zero_point.double()).add_(0.0).mul_(scale.double())
    return (out if x.dtype == torch.float64 else out.float().to(x.dtype)), mask


def _check_per_channel_dtypes(scale: float | torch.Tensor, zero_point: int | torch.Tensor) -> None:
    """The tensor dtypes ``torch.fake_quantize_per_channel_affine`` takes: float32 scale; int32/float32/float16 zp."""
    if isinstance(scale, torch.Tensor) and scale.dtype != torch.float32:
        raise TypeError(
            f"scale must be a float32 tensor for per-channel fake-quantization "
            f"(torch.fake_quantize_per_channel_affine's rule), got dtype {scale.dtype}: pass scale.float()"
        )
    if isinstance(zero_point, torch.Tensor) and zero_point.dtype not in PER_CHANNEL_ZP_DTYPES:
        raise TypeError(
            f"zero_point must be an int32, float32 or float16 tensor for per-channel fake-quantization "
            f"(torch.fake_quantize_per_channel_affine's rule), got dtype {zero_point.dtype}: "
            f"pass zero_point.to(torch.int32)"
        )


def _scheme_flags(scheme: str) -> bool:
    check_choice(scheme, "scheme", SCHEMES)
    return scheme == "symmetric"


def _granularity_args(
    x: torch.Tensor, granularity: str, axis: int, group_size: int | None
) -> tuple[int | None, int | None]:
    check_choice(granularity, "granularity", GRANULARITIES)
    if granularity == "tensor":
        return None, None
    if granularity == "channel":
        return axis, None
    if group_size is None:
        raise ValueError("granularity='group' needs group_size (a positive integer dividing the axis length)")
    return axis, group_size


def _minmax_setup(
    x: torch.Tensor,
    bits: int,
    scheme: str,
    signed: bool,
    restricted: bool,
    granularity: str,
    axis: int,
    group_size: int | None,
) -> tuple[torch.Tensor, torch.Tensor, int, int, int | None, int | None]:
    """Shared front half of ``quantize_tensor``/``fake_quantize_tensor``: validated min-max qparams and range."""
    symmetric = _scheme_flags(scheme)
    check_float_tensor(x, "x")
    ax, gs = _granularity_args(x, granularity, axis, group_size)
    scale, zero_point = calc_qparams(
        x, bits, signed=signed, symmetric=symmetric, restricted=restricted, axis=ax, group_size=gs
    )
    qmin, qmax = qrange(bits, signed, restricted)
    return scale, zero_point, qmin, qmax, ax, gs


def quantize_tensor(
    x: torch.Tensor,
    bits: int = 8,
    *,
    scheme: str = "affine",
    signed: bool = True,
    restricted: bool = False,
    granularity: str = "tensor",
    axis: int = 0,
    group_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Min-max quantize ``x``: returns ``(q, scale, zero_point)``.

    ``scheme`` is ``"affine"`` (zero-point) or ``"symmetric"`` (scale only); ``granularity`` is
    ``"tensor"``, ``"channel"`` (along ``axis``) or ``"group"`` (``group_size`` elements along
    ``axis``). Taught in 02_affine.
    """
    scale, zero_point, qmin, qmax, ax, gs = _minmax_setup(
        x, bits, scheme, signed, restricted, granularity, axis, group_size
    )
    return quantize(x, scale, zero_point, qmin, qmax, axis=ax, group_size=gs), scale, zero_point


def fake_quantize_tensor(
    x: torch.Tensor,
    bits: int = 8,
    *,
    scheme: str = "affine",
    signed: bool = True,
    restricted: bool = False,
    granularity: str = "tensor",
    axis: int = 0,
    group_size: int | None = None,
) -> torch.Tensor:
    """Min-max fake-quantize ``x`` (quantize then dequantize); same arguments as ``quantize_tensor``.

    Taught in 02_affine.
    """
    scale, zero_point, qmin, qmax, ax, gs = _minmax_setup(
        x, bits, scheme, signed, restricted, granularity, axis, group_size
    )
    return fake_quantize(x, scale, zero_point, qmin, qmax, axis=ax, group_size=gs)


def fake_quantize_range(
    x: torch.Tensor,
    x_min: float,
    x_max: float,
    bits: int = 8,
    *,
    scheme: str = "affine",
    signed: bool = True,
    restricted: bool = False,
) -> torch.Tensor:
    """Fake-quantize ``x`` with the grid fitted to a chosen range ``[x_min, x_max]`` (values outside clip).

    ``scale, zero_point = affine_qparams(x_min, x_max, bits, ...)``, then ``fake_quantize``; with
    ``scheme="symmetric"`` the grid covers ``±max(|x_min|, |x_max|)``. Shrinking the range below
    ``[x.min(), x.max()]`` trades clipping error for a finer step. Taught in 02_affine.
    """
    symmetric = _scheme_flags(scheme)
    check_float_tensor(x, "x")
    lo = check_finite_number(x_min, "x_min")
    hi = check_finite_number(x_max, "x_max")
    scale, zero_point = affine_qparams(lo, hi, bits, signed=signed, symmetric=symmetric, restricted=restricted)
    qmin, qmax = qrange(bits, signed, restricted)
    return fake_quantize(x, scale, zero_point, qmin, qmax)


def fake_quantize_weight(
    w: torch.Tensor,
    bits: int = 8,
    *,
    scheme: str = "symmetric",
    granularity: str = "channel",
    group_size: int | None = None,
) -> torch.Tensor:
    """Fake-quantize a layer weight with one scale per tensor, per output channel, or per group of inputs.

    ``w`` is viewed as ``(out_channels, -1)`` rows (Linear ``(out, in)``, Conv ``(out, in, kh, kw)``).
    ``"channel"``: one scale per row (``axis=0``). ``"group"``: each row is cut into contiguous
    groups of ``group_size`` inputs; a row whose length ``group_size`` does not divide is padded
    with zeros first (harmless: every range already contains 0, so no scale changes) and the
    padding dropped afterwards. Returns float32 of ``w``'s shape. Taught in 02_affine.
    """
    check_float_tensor(w, "w")
    if w.ndim < 2:
        raise ValueError(
            f"w must be a weight with at least 2 dimensions (out_channels, ...), got shape {tuple(w.shape)}"
        )
    _scheme_flags(scheme)
    check_choice(granularity, "granularity", GRANULARITIES)
    rows = w.detach().float().reshape(w.shape[0], -1)
    n = rows.shape[1]
    if granularity == "group":
        if group_size is None:
            raise ValueError("granularity='group' needs group_size (a positive integer)")
        group_size = check_int(group_size, "group_size", lo=1)
        pad = (-n) % group_size
        if pad:
            rows = torch.nn.functional.pad(rows, (0, pad))
        out = fake_quantize_tensor(rows, bits, scheme=scheme, granularity="group", axis=1, group_size=group_size)
        return out[:, :n].reshape(w.shape)
    if group_size is not None:
        raise ValueError(f"group_size is only used with granularity='group', got granularity={granularity!r}")
    return fake_quantize_tensor(rows, bits, scheme=scheme, granularity=granularity, axis=0).reshape(w.shape)


def clipping_error_split(x: torch.Tensor, x_hat: torch.Tensor, x_min: float, x_max: float) -> tuple[float, float]:
    """MSE of ``x_hat`` split into ``(rounding, clipping)``: errors of values inside / outside ``[x_min, x_max]``.

    Both parts are divided by ``x.numel()``, so they add up to ``mse(x, x_hat)``.
    Taught in 02_affine.
    """
    _check_pair(x, x_hat)
    lo = check_finite_number(x_min, "x_min")
    hi = check_finite_number(x_max, "x_max")
    check_min_max(lo, hi)
    xd = x.double()
    err2 = (x_hat.double() - xd) ** 2
    inside = (xd >= lo) & (xd <= hi)
    n = x.numel()
    return float(err2[inside].sum()) / n, float(err2[~inside].sum()) / n


def _check_pair(x: torch.Tensor, x_hat: torch.Tensor) -> None:
    check_float_tensor(x, "x")
    check_float_tensor(x_hat, "x_hat")
    if x.shape != x_hat.shape:
        raise ValueError(f"x and x_hat must have the same shape, got {tuple(x.shape)} and {tuple(x_hat.shape)}")


def mse(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """Mean squared error ``mean((x_hat - x)^2)``, computed in float64. Taught in 02_affine."""
    _check_pair(x, x_hat)
    err = x_hat.double() - x.double()
    return float(torch.mean(err * err))


def sqnr_db(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """Signal-to-quantization-noise ratio ``10 log10(sum x^2 / sum (x_hat - x)^2)`` in dB.

    Returns ``inf`` when the reconstruction is exact. Taught in 02_affine.
    """
    _check_pair(x, x_hat)
    xd = x.double()
    noise = float(torch.sum((x_hat.double() - xd) ** 2))
    signal = float(torch.sum(xd * xd))
    if noise == 0.0:
        return float("inf")
    if signal == 0.0:
        return float("-inf")
    return 10.0 * torch.log10(torch.tensor(signal / noise, dtype=torch.float64)).item()


# --------------------------------------------------------------------------------------------
# what the lesson's pictures show (helpers.plotting.affine draws these dicts)
# --------------------------------------------------------------------------------------------


def sample_distribution(name: str, n: int = 8192, seed: int = 0) -> torch.Tensor:
    """``n`` float32 samples of a named test distribution, seeded (same call, same numbers).

    ``normal``: N(0, 1); ``uniform``: U(-1, 1); ``relu``: max(N(0, 1), 0) — half the values
    exactly 0, like activations after a ReLU; ``heavy-tailed``: Laplace(0, 1/sqrt(2)) (unit
    variance) with 0.2 % of the values replaced by outliers of size 8–12. Taught in 02_affine.
    """
    check_choice(name, "name", DISTRIBUTIONS)
    n = check_int(n, "n", lo=1, hi=50_000_000)
    seed = check_int(seed, "seed", lo=0, hi=2**63 - 1)
    g = torch.Generator().manual_seed(seed)
    if name == "normal":
        return torch.randn(n, generator=g)
    if name == "uniform":
        return torch.rand(n, generator=g) * 2 - 1
    if name == "relu":
        return torch.randn(n, generator=g).clamp_(min=0.0)
    u = torch.rand(n, generator=g) - 0.5
    a = (2 * u.abs()).clamp_(max=1 - 2**-24)  # rand can return 0, which would give log(0)
    x = -torch.sign(u) * torch.log1p(-a) / 2**0.5
    n_out = max(1, n // 500)
    idx = torch.randperm(n, generator=g)[:n_out]
    signs = torch.where(torch.rand(n_out, generator=g) < 0.5, -1.0, 1.0)
    x[idx] = signs * (8 + 4 * torch.rand(n_out, generator=g))
    return x


def clip_range(x: torch.Tensor, clip: float, scheme: str = "affine") -> tuple[float, float]:
    """The range ``[x_min, x_max]`` a grid is fitted to when the min-max range is shrunk by ``clip`` in (0, 1].

    affine: ``[clip * min(x, 0), clip * max(x, 0)]``; symmetric: ``±clip * max|x|``.
    Taught in 02_affine.
    """
    check_float_tensor(x, "x")
    clip = check_finite_number(clip, "clip")
    if not 0 < clip <= 1:
        raise ValueError(f"clip must be in (0, 1], got {clip}")
    check_choice(scheme, "scheme", SCHEMES)
    lo, hi = (float(v) for v in torch.aminmax(x.float()))
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    if scheme == "symmetric":
        amax = max(-lo, hi)
        return -clip * amax, clip * amax
    return clip * lo, clip * hi


def quant_view(x: torch.Tensor, bits: int, clip: float = 1.0, scheme: str = "affine") -> dict:
    """Grid, ``x_hat``, error and metrics of ``x`` quantized at one setting.

    Returns a dict with ``x_min, x_max, scale, zero_point, qmin, qmax, levels`` (the float value of
    every code), ``x_hat``, ``mse``, ``sqnr_db`` and ``clipped`` (fraction of values outside the grid).
    Taught in 02_affine.
    """
    lo, hi = clip_range(x, clip, scheme)
    scale, zero_point = affine_qparams(lo, hi, bits, symmetric=scheme == "symmetric")
    qmin, qmax = qrange(bits)
    xf = x.float()
    x_hat = fake_quantize(xf, scale, zero_point, qmin, qmax)
    levels = (torch.arange(qmin, qmax + 1, dtype=torch.float32) - zero_point.float()) * scale
    clipped = float(((xf < levels[0]) | (xf > levels[-1])).float().mean())
    return {
        "x_min": lo,
        "x_max": hi,
        "scale": float(scale),
        "zero_point": int(zero_point),
        "qmin": qmin,
        "qmax": qmax,
        "levels": levels,
        "x_hat": x_hat,
        "mse": mse(xf, x_hat),
        "sqnr_db": sqnr_db(xf, x_hat),
        "clipped": clipped,
    }


def playground_view(bits: int = 4, clip: float = 1.0, scheme: str = "affine", distribution: str = "normal") -> dict:
    """What the lesson's playground shows: 8192 samples of ``distribution``, their grid, and the error curve.

    Returns ``quant_view``'s dict plus ``bits, clip, scheme, distribution``, ``x`` (the samples),
    ``dense`` (4001 points spanning the data) with ``dense_err = x_hat - x`` on them (the sawtooth,
    and the ramps where values clip), and ``readout`` (scale, zero_point, MSE, SQNR, clipped
    fraction as text). Drawn by ``helpers.plotting.affine.playground_figure``. Taught in 02_affine.
    """
    check_choice(distribution, "distribution", DISTRIBUTIONS)
    x = sample_distribution(distribution, 8192, seed=0)
    v = quant_view(x, bits, clip, scheme)
    lo, hi = float(x.min()), float(x.max())
    pad = 0.02 * (hi - lo)
    dense = torch.linspace(lo - pad, hi + pad, 4001)
    dense_hat = fake_quantize(dense, v["scale"], v["zero_point"], v["qmin"], v["qmax"])
    readout = (
        f"bits={bits}  scheme={scheme}  clip={clip:.2f}  distribution={distribution}\n"
        f"range [{v['x_min']:.4g}, {v['x_max']:.4g}]  scale={v['scale']:.4g}  zero_point={v['zero_point']}\n"
        f"MSE={v['mse']:.4g}  SQNR={v['sqnr_db']:.2f} dB  clipped={100 * v['clipped']:.2f}%"
    )
    return {
        **v,
        "bits": bits,
        "clip": clip,
        "scheme": scheme,
        "distribution": distribution,
        "x": x,
        "dense": dense,
        "dense_err": dense_hat - dense,
        "readout": readout,
    }


def small_multiples_view(
    bits: int = 3,
    schemes: tuple[str, ...] | list[str] = SCHEMES,
    distributions: tuple[str, ...] | list[str] = DISTRIBUTIONS,
) -> dict:
    """Min-max grids at ``bits`` for every scheme × distribution (8192 samples each, seed 0).

    Returns ``{"bits", "schemes", "distributions", "samples": {distribution: x},
    "views": {(scheme, distribution): quant_view(...)}}``. Drawn by
    ``helpers.plotting.affine.small_multiples_figure``. Taught in 02_affine.
    """
    for s in schemes:
        check_choice(s, "schemes", SCHEMES)
    for d in distributions:
        check_choice(d, "distributions", DISTRIBUTIONS)
    if not schemes or not distributions:
        raise ValueError("schemes and distributions must be non-empty")
    bits = check_bits(bits)
    samples = {d: sample_distribution(d, 8192, seed=0) for d in distributions}
    views = {(s, d): quant_view(samples[d], bits, 1.0, s) for s in schemes for d in distributions}
    return {
        "bits": bits,
        "schemes": tuple(schemes),
        "distributions": tuple(distributions),
        "samples": samples,
        "views": views,
    }


# --------------------------------------------------------------------------------------------
# the lesson's exercises: checkers (answers computed with torch's own observers and kernels)
# --------------------------------------------------------------------------------------------


def _torch_symmetric_qparams(x: torch.Tensor, bits: int, restricted: bool) -> tuple[float, int]:
    """``MinMaxObserver(per_tensor_symmetric)``'s qparams for ``x`` on the signed ``bits``-bit range."""
    from torch.ao.quantization import MinMaxObserver

    lo, hi = qrange(bits, restricted=restricted)
    obs = MinMaxObserver(dtype=torch.qint8, qscheme=torch.per_tensor_symmetric, quant_min=lo, quant_max=hi)
    obs(x)
    scale, zero_point = obs.calculate_qparams()
    return float(scale), int(zero_point)


_SYMMETRIC_HINTS = {
    "8 bits, full range": "the full signed range is [-2^(b-1), 2^(b-1)-1] (qrange(bits)): scale = max|x| / ((qmax - qmin) / 2), "
    "i.e. max|x| / 127.5 at 8 bits, not / 128 or / 127",
    "8 bits, restricted": "restricted=True drops the lowest code: [-(2^(b-1)-1), 2^(b-1)-1], so scale = max|x| / 127 at 8 bits",
    "largest magnitude is negative": "use the largest magnitude, max(|min x|, |max x|), not max x",
    "all zeros": "clamp the scale to at least torch.finfo(torch.float32).eps, as the observer does (0 would divide by zero)",
    "zero point": "symmetric signed quantization has zero_point 0",
}


def check_symmetric_qparams(fn, *, quiet: bool = False) -> bool:
    """Grade ``fn(x, bits, restricted) -> (scale, zero_point)`` against ``torch.ao.quantization.MinMaxObserver``.

    The observer (``per_tensor_symmetric``, ``quant_min``/``quant_max`` from ``qrange``) gives the
    right answer; scale and zero-point must be equal as numbers (float32 arithmetic). Labelled
    cases first, one per classic mistake: 8-bit full range (qmax ``2^(b-1)`` or the restricted
    divisor), 8-bit restricted (flag ignored), data whose largest magnitude is negative (``max x``
    instead of ``max |x|``), an all-zero tensor (scale 0 instead of float32 eps), then 2..8 bits,
    full and restricted, on skewed random data. Taught in 02_affine.
    """
    g = torch.Generator().manual_seed(5)
    skewed = torch.randn(100, generator=g) * 3 + 0.5
    neg = torch.tensor([-3.0, -1.25, 0.5, 2.0])
    cases = [
        ((skewed, 8, False), "8 bits, full range"),
        ((skewed, 8, True), "8 bits, restricted"),
        ((neg, 8, False), "largest magnitude is negative"),
        ((torch.zeros(16), 8, False), "all zeros"),
        ((torch.ones(8) * 0.75, 4, True), "zero point"),
    ]
    for bits in range(2, 9):
        for restricted in (False, True):
            x = torch.randn(100, generator=g) * 3 - 0.5
            cases.append(((x, bits, restricted), f"{bits} bits, {'restricted' if restricted else 'full range'}"))

    def as_numbers(x, bits, restricted):
        out = fn(x, bits, restricted)
        if not (isinstance(out, tuple) and len(out) == 2):
            raise TypeError(f"return a tuple (scale, zero_point), got {type(out).__name__}")
        return float(out[0]), int(out[1])

    return grade(
        "my_symmetric_qparams",
        None if fn is None else as_numbers,
        [(args, _torch_symmetric_qparams(*args), label) for args, label in cases],
        hint="amax = max(|min x|, |max x|); scale = amax / ((qmax - qmin) / 2) in float32, at least float32 eps; "
        "zero_point = 0; (qmin, qmax) = qrange(bits, restricted=restricted)",
        hints=_SYMMETRIC_HINTS,
        quiet=quiet,
    )


def _torch_minmax_sqnr(x: torch.Tensor, bits: int) -> float:
    """SQNR (dB) of ``x`` fake-quantized by torch with ``MinMaxObserver`` affine qparams on the signed ``bits``-bit range."""
    from torch.ao.quantization import MinMaxObserver

    lo, hi = qrange(bits)
    obs = MinMaxObserver(dtype=torch.qint8, quant_min=lo, quant_max=hi)
    obs(x)
    scale, zero_point = obs.calculate_qparams()
    x_hat = torch.fake_quantize_per_tensor_affine(x, float(scale), int(zero_point), lo, hi)
    xd = x.double()
    return 10.0 * torch.log10((xd * xd).sum() / ((x_hat.double() - xd) ** 2).sum()).item()


def check_prediction(predicted, measured, sample, fit, *, quiet: bool = False) -> bool:
    """Grade a predicted and a measured SQNR (dB) of 6-bit min-max quantization of a standard-normal sample.

    ``fit = (slope, intercept)`` is the lesson's least-squares line of Gaussian SQNR against bits,
    so the prediction must be ``slope * 6 + intercept`` (within 0.01 dB; not ``6.02 * 6``, which
    ignores the Gaussian's offset). ``sample`` must be 50,000 float32 values with mean within
    0.05 of 0 and standard deviation within 0.05 of 1, and ``measured`` must equal (within
    0.01 dB) the SQNR torch gives on it: ``MinMaxObserver`` affine qparams on [-32, 31] and
    ``torch.fake_quantize_per_tensor_affine`` (10·log10 of a power ratio). Taught in 02_affine.
    """
    if not (isinstance(fit, (tuple, list)) and len(fit) == 2):
        raise TypeError("fit must be the pair (slope, intercept) of the lesson's Gaussian line")
    slope, intercept = (check_finite_number(v, "fit") for v in fit)

    def answer(which):
        if which == "prediction":
            return predicted
        check_float_tensor(sample, "sample")
        mean, std = float(sample.double().mean()), float(sample.double().std())
        if sample.numel() != 50_000 or abs(mean) > 0.05 or abs(std - 1) > 0.05:
            raise ValueError(
                f"sample must be 50,000 draws of N(0, 1) (torch.randn), got {sample.numel()} values "
                f"with mean {mean:.3f} and std {std:.3f}"
            )
        return measured

    missing = predicted is None or measured is None or sample is None
    cases = [(("prediction",), slope * 6 + intercept, "prediction")]
    if not missing and isinstance(sample, torch.Tensor) and sample.is_floating_point() and sample.numel():
        cases.append((("measured",), _torch_minmax_sqnr(sample.detach().float(), 6), "measured"))
    else:
        cases.append((("measured",), math.nan, "measured"))
    ok = grade(
        "SQNR prediction",
        None if missing else answer,
        cases,
        hint="predict with the fitted line at 6 bits (slope * 6 + intercept); measure sqnr_db(x, fake_quantize_tensor(x, 6)) "
        "on x = torch.randn(50_000, generator=...)",
        hints={
            "prediction": "use the Gaussian fit (slope * 6 + intercept): the 6.02 dB/bit rule alone ignores its offset",
            "measured": "measure 6-bit min-max (fake_quantize_tensor(x, 6)) on the same sample: sqnr_db(x, x_hat)",
        },
        compare=close(rtol=0, atol=0.01),
        quiet=quiet,
    )
    if ok and not quiet:
        print(f"predicted {predicted:.2f} dB, measured {measured:.2f} dB: {abs(predicted - measured):.2f} dB apart")
    return ok


def check_clip(clip, w, *, quiet: bool = False) -> bool:
    """Grade a clip fraction for ``w`` at 3 bits: the symmetric grid on ``±clip · max|w|`` must beat min-max's MSE.

    Both MSEs are computed with torch: qparams from ``MinMaxObserver(per_tensor_symmetric)`` on
    [-4, 3] (observing ``±clip · max|w|``, or ``w`` itself for min-max) and
    ``torch.fake_quantize_per_tensor_affine``. ``clip`` must be a number in (0, 1] (a fraction,
    not a percentage); 1.0 is min-max itself and does not beat it. Taught in 02_affine.
    """
    from torch.ao.quantization import MinMaxObserver

    check_float_tensor(w, "w")
    wf = w.detach().float()
    amax = float(wf.abs().max())

    def torch_mse(observed: torch.Tensor) -> float:
        obs = MinMaxObserver(dtype=torch.qint8, qscheme=torch.per_tensor_symmetric, quant_min=-4, quant_max=3)
        obs(observed)
        scale, zero_point = obs.calculate_qparams()
        w_hat = torch.fake_quantize_per_tensor_affine(wf, float(scale), int(zero_point), -4, 3)
        return float(((w_hat.double() - wf.double()) ** 2).mean())

    base = torch_mse(wf)

    def clipped_mse():
        if isinstance(clip, bool) or not isinstance(clip, (int, float)):
            raise TypeError(f"clip must be a number in (0, 1], got {type(clip).__name__}")
        if not 0 < clip <= 1:
            raise ValueError(f"clip must be a fraction of max|w| in (0, 1], got {clip}")
        return torch_mse(torch.tensor([-clip * amax, clip * amax]))

    def below(got, want):
        return None if got < want else f"MSE {got:.4g} is not below min-max's {want:.4g}"

    ok = grade(
        "clip",
        None if clip is None else clipped_mse,
        [((), base)],
        hint="try fractions between 0.3 and 0.9 of max|w| with fake_quantize_range(w, -c*m, c*m, 3, scheme='symmetric') "
        "and keep one whose MSE is below min-max's",
        compare=below,
        quiet=quiet,
    )
    if ok and not quiet:
        print(f"clip {clip}: MSE {clipped_mse():.4g} vs min-max {base:.4g} ({base / clipped_mse():.2f}x lower)")
    return ok
