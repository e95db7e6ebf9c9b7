"""Static quantization by hand: conv+BN folding and integer-only Linear/Conv with fixed-point requantization.

Taught in 05_static. What a statically quantized layer really computes (Jacob et al. 2018,
"Quantization and Training of Neural Networks for Efficient Integer-Arithmetic-Only Inference"):

* BN folding: ``w' = w * gamma / sqrt(var + eps)``, ``b' = (b - mean) * gamma / sqrt(var + eps) + beta``;
* ``acc = sum_k (q_x - zp_x) * q_w + round(b / (s_x * s_w))`` in int32 (weights symmetric, ``zp_w = 0``);
* ``q_y = clamp(zp_y + round(M * acc), qmin, qmax)`` with ``M = s_x * s_w / s_y`` stored as a 31-bit
  integer ``m0`` and a right shift: ``M ~= m0 * 2^-(31 + shift)``, so the whole layer is integer-only.

PyTorch's x86/fbgemm kernels requantize with a float32 multiplier instead of ``m0 >> shift``
and add the bias in float; ``requant="float"`` mirrors that order of operations, while
``requant="fixed_point"`` is the integer-only method of the paper. The two differ by at most one
code, only where ``M * acc`` lies within rounding noise of a half-integer.
"""

from __future__ import annotations

import copy
import functools
import statistics
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from helpers._validate import (
    check_bits,
    check_choice,
    check_finite_number,
    check_float_tensor,
    check_int,
    check_positive,
    check_tensor,
)
from helpers.affine import affine_qparams, fake_quantize, mse, qrange
from helpers.kernels import int8_matmul
from helpers.measure import Timing, latency_ratio, measure_latency, serialized_size
from helpers.models import evaluate
from helpers.observers import METHODS, observer_range

__all__ = [
    "MODELS",
    "build_fp32",
    "settle_batchnorm",
    "eager_static_int8",
    "size_and_latency",
    "fold_bn",
    "fuse_conv_bn",
    "quantize_multiplier",
    "requantize",
    "int8_linear",
    "int8_conv2d",
    "layer_qparams",
    "integer_forward",
    "REQUANT_MODES",
    "ACCUMULATE_MODES",
    "int16_pair_accumulate",
    "DIGITS_FUSE",
    "DIGITS_OBSERVED",
    "fused_digits_cnn",
    "calibrate_prepared",
    "quantize_digits_cnn",
    "make_observer_view",
    "check_requantize",
]

REQUANT_MODES = ("fixed_point", "float")
#: ``"int32"``: exact int32 sums (VNNI's ``vpdpbusd``, qnnpack, ``torch._int_mm`` where exact);
#: ``"int16_pairs"``: AVX2 without VNNI, ``vpmaddubsw`` adds u8 x s8 products in pairs into a saturating int16.
ACCUMULATE_MODES = ("int32", "int16_pairs")


def int16_pair_accumulate(q_x: torch.Tensor, q_w: torch.Tensor) -> tuple[torch.Tensor, int]:
    """``sum_k q_x[m, k] q_w[n, k]`` as an AVX2 u8 x s8 kernel without VNNI adds it: ``(acc int32 (M, N), saturated)``.

    ``vpmaddubsw`` multiplies unsigned 8-bit activation codes by signed 8-bit weights and adds each
    adjacent pair of products (k = 0+1, 2+3, ...) into an int16 **with saturation** (to
    -32768..32767); ``vpmaddwd`` and ``vpaddd`` then add the pair sums into int32 without loss. A pair
    overflows when both products are large: 255 * 127 * 2 = 64770 > 32767, while 7-bit codes
    (``reduce_range``) keep every pair within 127 * 128 * 2 = 32512. ``saturated`` counts the pair
    sums that were clipped. ``q_x`` is uint8 (M, K), ``q_w`` int8 (N, K); an odd K pairs the last
    product with 0. The arithmetic is :func:`helpers.kernels.saturating_int8_matmul`, taken ``chunk``
    rows at a time. Taught in 05_static (Pitfall 4).
    """
    _check_int_tensor(q_x, "q_x", (torch.uint8,))
    _check_int_tensor(q_w, "q_w", (torch.int8,))
    if q_x.ndim != 2 or q_w.ndim != 2 or q_x.shape[1] != q_w.shape[1]:
        raise ValueError(f"q_x and q_w must be (M, K) and (N, K), got {tuple(q_x.shape)} and {tuple(q_w.shape)}")
    m, k = q_x.shape
    a = torch.cat([q_x.to(torch.int32), q_x.new_zeros(m, k % 2, dtype=torch.int32)], dim=1)  # odd K: pair with 0
    w = torch.cat([q_w.to(torch.int32), q_w.new_zeros(q_w.shape[0], k % 2, dtype=torch.int32)], dim=1)
    acc = (a.double() @ w.double().t()).to(torch.int32)  # the exact sums (float64 is exact here) ...
    # ... then each clipped pair's loss. |q_w| <= 128, so a pair can leave int16 only if its codes sum past 255
    a_pairs = a.reshape(m, -1, 2)
    rows, pair_idx = torch.nonzero(a_pairs.sum(-1) > 255, as_tuple=True)
    saturated = 0
    for start in range(0, rows.numel(), 2**16):
        r, j = rows[start : start + 2**16], pair_idx[start : start + 2**16]
        pair = a[r, 2 * j, None] * w[:, 2 * j].t() + a[r, 2 * j + 1, None] * w[:, 2 * j + 1].t()  # one vpmaddubsw lane
        loss = pair.clamp(-(2**15), 2**15 - 1) - pair  # the int16 saturation
        saturated += int((loss != 0).sum())
        acc.index_add_(0, r, loss)  # vpmaddwd + vpaddd add the clipped pairs exactly in int32
    return acc, saturated


def fold_bn(
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    bn_mean: torch.Tensor,
    bn_var: torch.Tensor,
    bn_eps: float,
    bn_weight: torch.Tensor | None = None,
    bn_bias: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold an eval-mode BatchNorm into the conv/linear before it: returns ``(w', b')``.

    ``w' = w * gamma / sqrt(var + eps)`` (one factor per output channel) and
    ``b' = (b - mean) * gamma / sqrt(var + eps) + beta``; ``bias=None`` means ``b = 0``,
    ``bn_weight=None``/``bn_bias=None`` mean ``gamma = 1``/``beta = 0``. The operation order is
    PyTorch's (``rsqrt`` first), so the result is bit-equal to ``torch.ao.quantization.fuse_modules``.
    Taught in 05_static.
    """
    check_float_tensor(weight, "weight")
    out = weight.shape[0]
    for name, t in (("bn_mean", bn_mean), ("bn_var", bn_var)):
        check_float_tensor(t, name)
        if t.shape != (out,):
            raise ValueError(f"{name} must have shape ({out},) (one entry per output channel), got {tuple(t.shape)}")
    if bool((bn_var < 0).any()):
        raise ValueError("bn_var must be >= 0 everywhere (it is a variance)")
    eps = check_finite_number(bn_eps, "bn_eps")
    if eps <= 0:
        raise ValueError(f"bn_eps must be > 0, got {eps}")
    gamma = torch.ones_like(bn_mean) if bn_weight is None else check_float_tensor(bn_weight, "bn_weight")
    beta = torch.zeros_like(bn_mean) if bn_bias is None else check_float_tensor(bn_bias, "bn_bias")
    b = torch.zeros_like(bn_mean) if bias is None else check_float_tensor(bias, "bias")
    for name, t in (("bn_weight", gamma), ("bn_bias", beta), ("bias", b)):
        if t.shape != (out,):
            raise ValueError(f"{name} must have shape ({out},), got {tuple(t.shape)}")
    var_rsqrt = torch.rsqrt(bn_var + eps)
    shape = [-1] + [1] * (weight.ndim - 1)
    w_fold = (weight * (gamma * var_rsqrt).reshape(shape)).to(weight.dtype)
    b_fold = ((b - bn_mean) * var_rsqrt * gamma + beta).to(weight.dtype)
    return w_fold, b_fold


def fuse_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A new ``Conv2d`` equal to ``bn(conv(x))`` in eval mode (BN folded into weight and bias).

    Taught in 05_static.
    """
    if not isinstance(conv, nn.Conv2d):
        raise TypeError(f"conv must be an nn.Conv2d, got {type(conv).__name__}")
    if not isinstance(bn, nn.BatchNorm2d):
        raise TypeError(f"bn must be an nn.BatchNorm2d, got {type(bn).__name__}")
    if bn.num_features != conv.out_channels:
        raise ValueError(f"bn must have {conv.out_channels} features (conv.out_channels), got {bn.num_features}")
    if bn.training or conv.training:
        raise ValueError("conv and bn must be in eval mode: folding uses BN's running statistics (call .eval())")
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("bn must track running statistics (track_running_stats=True) to be folded")
    with torch.no_grad():
        w, b = fold_bn(
            conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps,
            bn.weight if bn.affine else None, bn.bias if bn.affine else None,
        )  # fmt: skip
        fused = nn.Conv2d(
            conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
            conv.dilation, conv.groups, bias=True, padding_mode=conv.padding_mode,
        )  # fmt: skip
        fused.weight.copy_(w)
        fused.bias.copy_(b)
    return fused.eval()


def quantize_multiplier(multiplier: float | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed-point form of a real multiplier ``2^-32 <= M < 2^30``: ``M ~= m0 * 2^-(31 + shift)``.

    ``m0`` is a 31-bit integer in ``[2^30, 2^31)`` (``M`` normalised to [0.5, 1) and scaled by
    2^31, as in Jacob et al. 2018, gemmlowp and TFLite) and ``shift`` the extra right shift:
    ``shift >= 0`` for ``M < 1`` (the usual case, ``s_x * s_w < s_y``), negative for ``M >= 1``,
    which gemmlowp/TFLite apply as a left shift (``shift = -1`` for ``M`` in [1, 2)). ``M`` below 1
    but within 2^-32 of it (its 31-bit mantissa rounds up to 1.0) gets the largest ``m0 = 2^31 - 1``
    with ``shift = 0`` (``M ~= 1 - 2^-31``), so a multiplier below 1 stays a pure right shift.
    Returns int64 tensors of the same shape as ``multiplier``. Taught in 05_static.
    """
    if multiplier is None or isinstance(multiplier, (bool, str)):
        raise TypeError(f"multiplier must be a real number or a float tensor in [2^-32, 2^30), got {multiplier!r}")
    m = torch.as_tensor(multiplier, dtype=torch.float64)
    check_positive(m, "multiplier")
    if bool((m >= 2.0**30).any()):
        raise ValueError(f"multiplier must be < 2^30 (s_x * s_w / s_y), got max {m.max().item():.6g}")
    mant, exp = torch.frexp(m)  # m = mant * 2^exp, mant in [0.5, 1)
    m0 = torch.round(mant * 2.0**31).to(torch.int64)
    carry = m0 == 2**31  # mantissa rounded up to 1.0
    m0 = torch.where(carry, m0 // 2, m0)
    exp = exp.to(torch.int64) + carry.to(torch.int64)
    below_one = (exp > 0) & (m < 1)  # M < 1 rounded up to exactly 1.0: keep it a right shift
    m0 = torch.where(below_one, torch.full_like(m0, 2**31 - 1), m0)
    exp = torch.where(below_one, torch.zeros_like(exp), exp)
    shift = -exp
    if bool((shift > 31).any()):
        raise ValueError("multiplier must be >= 2^-32 (a smaller one would shift every value to zero)")
    if bool((shift < -30).any()):
        raise ValueError("multiplier must be < 2^30 (it rounds up to 2^30)")
    return m0, shift


def _check_int_tensor(t: torch.Tensor, name: str, dtypes: tuple[torch.dtype, ...]) -> torch.Tensor:
    """``t`` must be a tensor of one of ``dtypes``; where int32 is allowed, int64 must hold int32 values.

    (``requantize`` computes ``acc * m0`` in int64: an accumulator beyond int32 would overflow silently.)
    """
    check_tensor(t, name)
    if t.dtype not in dtypes:
        allowed = ", ".join(str(d).replace("torch.", "") for d in dtypes)
        raise TypeError(f"{name} must have dtype {allowed}, got {t.dtype}")
    if torch.int32 in dtypes and t.dtype == torch.int64 and t.numel():
        lo, hi = t.min().item(), t.max().item()
        if lo < -(2**31) or hi >= 2**31:
            raise ValueError(f"{name} must hold int32 values in -2^31..2^31-1, got {lo}..{hi}")
    return t


def _out_range(out_dtype: str) -> tuple[int, int, torch.dtype]:
    check_choice(out_dtype, "out_dtype", ("uint8", "int8"))
    return (0, 255, torch.uint8) if out_dtype == "uint8" else (-128, 127, torch.int8)


def requantize(
    acc: torch.Tensor,
    m0: torch.Tensor,
    shift: torch.Tensor,
    zero_point: int,
    *,
    out_dtype: str = "uint8",
    relu: bool = False,
) -> torch.Tensor:
    """Integer-only rescaling of int32 accumulators: ``q = clamp(zp + ((acc * m0 + r) >> (31 + shift)))``.

    ``r = 2^(30 + shift)`` makes the shift round to nearest (ties upward). ``m0``/``shift`` come from
    ``quantize_multiplier`` (scalars or one per output channel, the last dimension of ``acc``); a
    negative ``shift`` (``M >= 1``) shifts right by less than 31, i.e. gemmlowp's left shift;
    ``relu=True`` clamps at ``zero_point`` (the real 0), which is how a fused ReLU costs nothing.
    Returns uint8 or int8 codes. Taught in 05_static.
    """
    _check_int_tensor(acc, "acc", (torch.int32, torch.int64))
    _check_int_tensor(m0, "m0", (torch.int64, torch.int32))
    _check_int_tensor(shift, "shift", (torch.int64, torch.int32))
    qmin, qmax, dtype = _out_range(out_dtype)
    zero_point = check_int(zero_point, "zero_point", lo=qmin, hi=qmax)
    if bool((m0 < 2**30).any()) or bool((m0 >= 2**31).any()):
        raise ValueError("m0 must lie in [2^30, 2^31) (use quantize_multiplier)")
    if bool((shift < -30).any()) or bool((shift > 31).any()):
        raise ValueError("shift must lie in -30..31 (use quantize_multiplier)")
    total = 31 + shift.to(torch.int64)
    rounding = torch.bitwise_left_shift(torch.ones_like(total), total - 1)
    y = torch.bitwise_right_shift(acc.to(torch.int64) * m0.to(torch.int64) + rounding, total)
    lo = zero_point if relu else qmin
    return (y + zero_point).clamp_(lo, qmax).to(dtype)


def _requantize_float(
    acc: torch.Tensor, bias: torch.Tensor | None, act_times_w_scale: torch.Tensor, out_scale: float, zero_point: int,
    qmin: int, qmax: int, dtype: torch.dtype, relu: bool,
) -> torch.Tensor:  # fmt: skip
    """fbgemm's order: ``round((float(acc) + b / (s_x s_w)) * float32(s_x s_w / s_y)) + zp`` in float32."""
    raw = acc.to(torch.float32)
    if bias is not None:
        raw = raw + bias.to(torch.float32) / act_times_w_scale
    multiplier = (act_times_w_scale / torch.tensor(out_scale, dtype=torch.float32)).to(torch.float32)
    y = torch.round(raw * multiplier) + zero_point
    return y.clamp_(zero_point if relu else qmin, qmax).to(dtype)


def _as_scales(w_scale: float | torch.Tensor, out_features: int) -> torch.Tensor:
    if w_scale is None or isinstance(w_scale, (bool, str)):
        raise TypeError(
            f"w_scale must be a positive number or a float tensor of {out_features} scales, got {w_scale!r}"
        )
    s = torch.as_tensor(w_scale, dtype=torch.float32).reshape(-1)
    check_positive(s, "w_scale")
    if s.numel() not in (1, out_features):
        raise ValueError(f"w_scale must have 1 or {out_features} entries (per-tensor or per-channel), got {s.numel()}")
    return s.expand(out_features).clone()


def _int8_gemm_requant(
    cols: torch.Tensor, x_zp: int, x_dtype: torch.dtype, x_scale: float, q_w: torch.Tensor, w_scale: torch.Tensor,
    bias: torch.Tensor | None, out_scale: float, out_zp: int, out_dtype: str, relu: bool, requant: str,
    accumulate: str = "int32",
) -> torch.Tensor:  # fmt: skip
    """Shared core: ``cols`` (M, K) of input codes, ``q_w`` (N, K) int8 -> (M, N) output codes."""
    qmin, qmax, dtype = _out_range(out_dtype)
    if accumulate == "int16_pairs":  # raw u8 codes x s8 weights, pairs saturating in int16 (AVX2 without VNNI)
        acc, _ = int16_pair_accumulate(cols.to(torch.uint8), q_w)
        zp = x_zp
    elif x_dtype == torch.uint8:  # shift u8 codes to s8 so both operands fit torch._int_mm; zp shifts with them
        a = (cols.to(torch.int16) - 128).to(torch.int8)
        zp = x_zp - 128
    else:
        a = cols.to(torch.int8)
        zp = x_zp
    if accumulate == "int32":
        acc = int8_matmul(a, q_w.t())  # int32: sum_k q_x q_w
    acc = acc - zp * q_w.to(torch.int32).sum(dim=1)  # subtract zp_x * sum_k q_w  ->  sum_k (q_x - zp_x) q_w
    act_times_w_scale = (torch.tensor(x_scale, dtype=torch.float32) * w_scale).to(torch.float32)
    if requant == "float":
        return _requantize_float(acc, bias, act_times_w_scale, out_scale, out_zp, qmin, qmax, dtype, relu)
    if bias is not None:
        acc = acc + torch.round(bias.double() / act_times_w_scale.double()).to(torch.int32)
    m0, shift = quantize_multiplier(act_times_w_scale.double() / out_scale)
    return requantize(acc, m0, shift, out_zp, out_dtype=out_dtype, relu=relu)


def _check_layer_args(
    q_x: torch.Tensor, x_scale: float, x_zp: int, q_w: torch.Tensor, bias: torch.Tensor | None,
    out_scale: float, out_zp: int, out_dtype: str, requant: str, w_ndim: int, accumulate: str = "int32",
) -> tuple[float, int, float, int]:  # fmt: skip
    _check_int_tensor(q_x, "q_x", (torch.uint8, torch.int8))
    check_choice(accumulate, "accumulate", ACCUMULATE_MODES)
    if accumulate == "int16_pairs" and q_x.dtype != torch.uint8:
        raise TypeError(f"accumulate='int16_pairs' emulates u8 x s8 vpmaddubsw: q_x must be uint8, got {q_x.dtype}")
    _check_int_tensor(q_w, "q_w", (torch.int8,))
    if q_w.ndim != w_ndim:
        raise ValueError(f"q_w must be {w_ndim}-d, got shape {tuple(q_w.shape)}")
    check_positive(x_scale, "x_scale")
    check_positive(out_scale, "out_scale")
    info = torch.iinfo(q_x.dtype)
    x_zp = check_int(x_zp, "x_zp", lo=info.min, hi=info.max)
    qmin, qmax, _ = _out_range(out_dtype)
    out_zp = check_int(out_zp, "out_zp", lo=qmin, hi=qmax)
    check_choice(requant, "requant", REQUANT_MODES)
    if bias is not None:
        check_float_tensor(bias, "bias")
        if bias.shape != (q_w.shape[0],):
            raise ValueError(f"bias must have shape ({q_w.shape[0]},), got {tuple(bias.shape)}")
    return float(x_scale), x_zp, float(out_scale), out_zp


def int8_linear(
    q_x: torch.Tensor,
    x_scale: float,
    x_zp: int,
    q_w: torch.Tensor,
    w_scale: float | torch.Tensor,
    bias: torch.Tensor | None,
    out_scale: float,
    out_zp: int,
    *,
    out_dtype: str = "uint8",
    relu: bool = False,
    requant: str = "fixed_point",
    accumulate: str = "int32",
) -> torch.Tensor:
    """Integer-only Linear: uint8/int8 codes ``q_x`` (N, in), int8 ``q_w`` (out, in) -> output codes (N, out).

    ``acc = (q_x - x_zp) @ q_w.T + round(bias / (x_scale * w_scale))`` in int32 (``torch._int_mm``
    where the shape allows), then ``requantize`` with ``M = x_scale * w_scale / out_scale``.
    ``w_scale`` is one number (per-tensor) or one per output row (per-channel); weights are
    symmetric (zero-point 0). ``accumulate="int16_pairs"`` sums the products as an AVX2 kernel without
    VNNI does (``int16_pair_accumulate``: u8 x s8 pairs saturate in int16; uint8 ``q_x`` only).
    Taught in 05_static.
    """
    x_scale, x_zp, out_scale, out_zp = _check_layer_args(
        q_x, x_scale, x_zp, q_w, bias, out_scale, out_zp, out_dtype, requant, 2, accumulate
    )
    if q_x.ndim != 2 or q_x.shape[1] != q_w.shape[1]:
        raise ValueError(f"q_x must have shape (N, {q_w.shape[1]}), got {tuple(q_x.shape)}")
    s_w = _as_scales(w_scale, q_w.shape[0])
    return _int8_gemm_requant(
        q_x, x_zp, q_x.dtype, x_scale, q_w, s_w, bias, out_scale, out_zp, out_dtype, relu, requant, accumulate
    )


def int8_conv2d(
    q_x: torch.Tensor,
    x_scale: float,
    x_zp: int,
    q_w: torch.Tensor,
    w_scale: float | torch.Tensor,
    bias: torch.Tensor | None,
    out_scale: float,
    out_zp: int,
    *,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    out_dtype: str = "uint8",
    relu: bool = False,
    requant: str = "fixed_point",
    accumulate: str = "int32",
) -> torch.Tensor:
    """Integer-only Conv2d as an int8 GEMM over unfolded patches (im2col): codes (N, C, H, W) -> (N, O, H', W').

    Padding inserts ``x_zp`` (the code of real 0), then every patch is a row of an int8 matrix and
    the layer is ``int8_linear`` on it. Groups and dilation are 1. With ``accumulate="int16_pairs"``
    the patch is ordered channels-last (kernel row, column, channel: the NHWC layout of fbgemm's
    convolutions) before its products are paired. Taught in 05_static.
    """
    x_scale, x_zp, out_scale, out_zp = _check_layer_args(
        q_x, x_scale, x_zp, q_w, bias, out_scale, out_zp, out_dtype, requant, 4, accumulate
    )
    if q_x.ndim != 4 or q_x.shape[1] != q_w.shape[1]:
        raise ValueError(f"q_x must have shape (N, {q_w.shape[1]}, H, W), got {tuple(q_x.shape)}")
    for name, v in (("stride", stride), ("padding", padding)):
        if not isinstance(v, int) and not (isinstance(v, (tuple, list)) and len(v) == 2):
            raise TypeError(f"{name} must be an int or a pair of ints, got {v!r}")
    sh, sw = (stride, stride) if isinstance(stride, int) else tuple(stride)
    ph, pw = (padding, padding) if isinstance(padding, int) else tuple(padding)
    check_int(sh, "stride", lo=1)
    check_int(sw, "stride", lo=1)
    check_int(ph, "padding", lo=0)
    check_int(pw, "padding", lo=0)
    n, _, h, w = q_x.shape
    o, c, kh, kw = q_w.shape
    # codes are small integers: float32 holds them exactly, so pad/unfold in float is still integer arithmetic
    xp = F.pad(q_x.to(torch.float32), (pw, pw, ph, ph), value=float(x_zp))
    cols = F.unfold(xp, (kh, kw), stride=(sh, sw))  # (N, C*kh*kw, L)
    ho = (h + 2 * ph - kh) // sh + 1
    wo = (w + 2 * pw - kw) // sw + 1
    cols = cols.transpose(1, 2).reshape(n * ho * wo, c * kh * kw).to(torch.int16)
    w_rows = q_w.reshape(o, -1)
    if accumulate == "int16_pairs":  # channels-last K order (kh, kw, c): which products share an int16 pair
        cols = cols.reshape(-1, c, kh * kw).transpose(1, 2).reshape(-1, c * kh * kw)
        w_rows = q_w.permute(0, 2, 3, 1).reshape(o, -1)
    s_w = _as_scales(w_scale, o)
    y = _int8_gemm_requant(
        cols, x_zp, q_x.dtype, x_scale, w_rows, s_w, bias, out_scale, out_zp, out_dtype, relu, requant, accumulate
    )
    return y.reshape(n, ho, wo, o).permute(0, 3, 1, 2).contiguous()


def layer_qparams(module: nn.Module) -> dict:
    """Integer weights and qparams of a converted eager quantized Conv2d/Linear (optionally ReLU-fused).

    Returns ``q_w`` (int8), ``w_scale`` (float32, one per output channel or one), ``bias``,
    ``out_scale``, ``out_zp``, ``relu`` and, for convs, ``stride``/``padding``. Taught in 05_static.
    """
    import torch.ao.nn.intrinsic.quantized as nniq
    import torch.ao.nn.quantized as nnq

    kinds = (nnq.Conv2d, nnq.Linear)
    if not isinstance(module, kinds):
        raise TypeError(f"module must be a converted quantized Conv2d or Linear, got {type(module).__name__}")
    w = module.weight()
    if w.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
        w_scale = w.q_per_channel_scales().to(torch.float32)
        if bool((w.q_per_channel_zero_points() != 0).any()):
            raise ValueError("module weights must be symmetric (zero_point 0)")
    else:
        w_scale = torch.tensor([w.q_scale()], dtype=torch.float32)
        if w.q_zero_point() != 0:
            raise ValueError("module weights must be symmetric (zero_point 0)")
    out = {
        "q_w": w.int_repr(),
        "w_scale": w_scale,
        "bias": None if module.bias() is None else module.bias().detach().to(torch.float32),
        "out_scale": float(module.scale),
        "out_zp": int(module.zero_point),
        "relu": isinstance(module, (nniq.ConvReLU2d, nniq.LinearReLU)),
    }
    if isinstance(module, nnq.Conv2d):
        if module.groups != 1 or tuple(module.dilation) != (1, 1):
            raise ValueError("only groups=1, dilation=1 convolutions are supported")
        out["stride"] = tuple(module.stride)
        out["padding"] = tuple(module.padding)
    return out


def integer_forward(
    modules: Iterable[nn.Module],
    q_x: torch.Tensor,
    x_scale: float,
    x_zp: int,
    *,
    requant: str = "fixed_point",
    accumulate: str = "int32",
) -> tuple[torch.Tensor, float, int]:
    """Run a chain of converted eager modules on integer codes only; returns ``(q_y, y_scale, y_zp)``.

    Supports quantized Conv2d/Linear (ReLU-fused or not), MaxPool2d (a max of codes is the code of
    the max), Flatten, ReLU (clamp at the zero-point) and Identity. ``accumulate`` is passed to every
    conv/linear (``"int16_pairs"``: AVX2's saturating u8 x s8 pair sums). Taught in 05_static.
    """
    import torch.ao.nn.quantized as nnq

    check_choice(requant, "requant", REQUANT_MODES)
    check_choice(accumulate, "accumulate", ACCUMULATE_MODES)
    _check_int_tensor(q_x, "q_x", (torch.uint8, torch.int8))
    check_positive(x_scale, "x_scale")
    info = torch.iinfo(q_x.dtype)
    x_zp = check_int(x_zp, "x_zp", lo=info.min, hi=info.max)
    if isinstance(modules, nn.Module) or not isinstance(modules, Iterable):
        raise TypeError(f"modules must be a list of converted modules, got {type(modules).__name__}")
    q, scale, zp = q_x, float(x_scale), int(x_zp)
    for mod in modules:
        if isinstance(mod, (nnq.Conv2d, nnq.Linear)):
            p = layer_qparams(mod)
            args = (q, scale, zp, p["q_w"], p["w_scale"], p["bias"], p["out_scale"], p["out_zp"])
            kw = {"out_dtype": "uint8", "relu": p["relu"], "requant": requant, "accumulate": accumulate}
            if isinstance(mod, nnq.Conv2d):
                q = int8_conv2d(*args, stride=p["stride"], padding=p["padding"], **kw)
            else:
                q = int8_linear(*args, **kw)
            scale, zp = p["out_scale"], p["out_zp"]
        elif isinstance(mod, nn.MaxPool2d):
            q = F.max_pool2d(q.to(torch.float32), mod.kernel_size, mod.stride, mod.padding).to(q.dtype)
        elif isinstance(mod, nn.Flatten):
            q = q.flatten(mod.start_dim, mod.end_dim)
        elif isinstance(mod, nn.ReLU):
            q = torch.clamp(q, min=zp)
        elif isinstance(mod, nn.Identity):
            continue
        else:
            raise TypeError(f"modules holds an unsupported module {type(mod).__name__} for integer_forward")
    return q, scale, zp


#: Eager-mode fusion groups of ``helpers.models.DigitsCNN`` (conv-bn-relu x3, linear-relu).
DIGITS_FUSE = [
    ["features.0", "features.1", "features.2"],
    ["features.3", "features.4", "features.5"],
    ["features.7", "features.8", "features.9"],
    ["classifier.1", "classifier.2"],
]
#: The modules whose outputs get an activation observer once the wrapped, fused DigitsCNN is prepared.
DIGITS_OBSERVED = [
    "quant",
    "module.features.0",
    "module.features.3",
    "module.features.7",
    "module.classifier.1",
    "module.classifier.3",
]


def fused_digits_cnn(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (a DigitsCNN) wrapped as ``QuantWrapper`` (quant -> module -> dequant), fused, eval.

    Fusion groups are ``DIGITS_FUSE``: each conv-bn-relu becomes one ``ConvReLU2d`` with BN folded in.
    Taught in 05_static.
    """
    import copy

    import torch.ao.quantization as tq

    if not isinstance(model, nn.Module) or not hasattr(model, "features") or not hasattr(model, "classifier"):
        raise TypeError(f"model must be a helpers.models.DigitsCNN, got {type(model).__name__}")
    fused = tq.fuse_modules(copy.deepcopy(model).eval(), DIGITS_FUSE)
    return tq.QuantWrapper(fused).eval()


@torch.no_grad()
def calibrate_prepared(prepared: nn.Module, x: torch.Tensor, *, dtype: torch.dtype = torch.float64) -> nn.Module:
    """Run the calibration images ``x`` through an eager ``prepare``-d model, its forward in ``dtype``.

    The layers run in ``dtype`` (float64 by default) while the observers keep float32 statistics,
    so the ranges they record do not depend on the CPU's fp32 conv kernel (its summation order
    moves activations, and with them scales, in the last bits). The model is returned in its
    original dtype (float32 -> float64 -> float32 is exact), ready for ``convert``. Taught in 05_static.
    """
    import torch.ao.quantization as tq

    if not isinstance(prepared, nn.Module):
        raise TypeError(f"prepared must be an nn.Module, got {type(prepared).__name__}")
    check_float_tensor(x, "x")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    observers = [m for m in prepared.modules() if isinstance(m, tq.ObserverBase)]
    if not observers:
        raise ValueError("prepared holds no observer: run torch.ao.quantization.prepare on it first")
    param = next(prepared.parameters(), None)
    orig = param.dtype if param is not None else x.dtype
    prepared.to(dtype)
    for obs in observers:  # statistics stay float32 (an observer buffer's dtype is what convert reads)
        obs.to(orig)
    try:
        prepared(x.to(dtype))
    finally:
        prepared.to(orig)
    return prepared


def _engine_reduce_range(engine: str) -> bool:
    import torch.ao.quantization as tq

    return bool(tq.get_default_qconfig(engine).activation().reduce_range)


def quantize_digits_cnn(
    model: nn.Module,
    *,
    calib: torch.Tensor | None = None,
    ranges: dict[str, tuple[float, float]] | None = None,
    engine: str | None = None,
    per_channel: bool = True,
    act_bits: int = 8,
    reduce_range: bool | None = None,
) -> nn.Module:
    """Eager static int8 DigitsCNN: fuse, qconfig, prepare, calibrate (or use given ranges), convert.

    With ``calib`` the engine's default qconfig observes the calibration images, the forward run in
    float64 (``calibrate_prepared``: the same ranges on every CPU); ``engine`` also selects the
    kernels (qconfig and engine come from the same string); ``None`` takes the current
    ``torch.backends.quantized.engine`` (``x86`` on an x86 build, ``qnnpack`` on ARM). With ``ranges``
    (``{name in DIGITS_OBSERVED: (x_min, x_max)}``, e.g. from ``helpers.observers``) every activation
    uses a ``RangeObserver`` with ``act_bits``-bit unsigned codes. ``reduce_range`` caps activation
    codes at 7 bits (0..127): x86/fbgemm kernels on CPUs without AVX-512 VNNI add u8 x s8 products
    in pairs into a saturating int16, which 8-bit codes can overflow; ``None`` (default) takes the
    engine's own choice (True for x86/fbgemm, False for qnnpack/onednn), as its default qconfig does.
    ``per_channel`` picks per-channel or per-tensor symmetric int8 weights. Taught in 05_static.
    """
    import torch.ao.quantization as tq

    from helpers.observers import RangeObserver

    engine = torch.backends.quantized.engine if engine is None else engine
    check_choice(engine, "engine", tuple(e for e in torch.backends.quantized.supported_engines if e != "none"))
    if not isinstance(per_channel, bool):
        raise TypeError(f"per_channel must be True or False, got {per_channel!r}")
    if reduce_range is not None and not isinstance(reduce_range, bool):
        raise TypeError(f"reduce_range must be True, False or None, got {reduce_range!r}")
    if (calib is None) == (ranges is None):
        raise ValueError("pass exactly one of calib (images to observe) or ranges (precomputed clipping ranges)")
    torch.backends.quantized.engine = engine
    if reduce_range is None:
        reduce_range = _engine_reduce_range(engine)
    wrapped = fused_digits_cnn(model)
    default = tq.get_default_qconfig(engine)
    activation = default.activation.with_args(reduce_range=reduce_range)
    weight = tq.default_per_channel_weight_observer if per_channel else tq.default_weight_observer
    if ranges is None:
        check_float_tensor(calib, "calib")
        wrapped.qconfig = tq.QConfig(activation=activation, weight=weight)
        tq.prepare(wrapped, inplace=True)
        calibrate_prepared(wrapped, calib)
    else:
        act_bits = check_int(act_bits, "act_bits", lo=2, hi=8)
        code_bits = min(act_bits, 7) if reduce_range else act_bits
        missing = [n for n in DIGITS_OBSERVED if n not in ranges]
        if missing:
            raise ValueError(f"ranges must give a range for every name in DIGITS_OBSERVED; missing {missing}")
        wrapped.qconfig = tq.QConfig(activation=activation, weight=weight)  # reaches DeQuantStub
        modules = dict(wrapped.named_modules())
        for name in DIGITS_OBSERVED:
            lo, hi = (float(v) for v in ranges[name])
            act = RangeObserver.with_args(x_min=lo, x_max=hi, quant_min=0, quant_max=2**code_bits - 1)
            modules[name].qconfig = tq.QConfig(activation=act, weight=weight)
        tq.prepare(wrapped, inplace=True)
    return tq.convert(wrapped)


# ----------------------------------------------------------------------------- real architectures

MODELS = ("resnet18", "mobilenet_v2", "darknet19", "darknet19_relu")


def build_fp32(name: str) -> nn.Module:
    """An untrained fp32 model in eval mode: torchvision quantizable ResNet-18/MobileNetV2, or Darknet-19.

    Taught in 05_static (size and latency of real architectures; untrained weights, so no accuracy).
    """
    check_choice(name, "name", MODELS)
    torch.manual_seed(0)
    if name == "resnet18":
        from torchvision.models.quantization import resnet18

        return resnet18(weights=None, quantize=False).eval()
    if name == "mobilenet_v2":
        from torchvision.models.quantization import mobilenet_v2

        return mobilenet_v2(weights=None, quantize=False).eval()
    from helpers.darknet import Darknet19

    return Darknet19(leaky=name == "darknet19").eval()


def settle_batchnorm(model: nn.Module, images: torch.Tensor) -> nn.Module:
    """Re-estimate every BatchNorm's running statistics on ``images`` (a cumulative average), in place; eval mode.

    An untrained torchvision model keeps its initial statistics (mean 0, variance 1), so its activations
    shrink or grow layer by layer: untrained MobileNetV2 ends in logits far below the smallest scale
    torch's observers allow (they quantize to all zeros), and ONNX Runtime's QDQ quantizer leaves most of
    untrained ResNet-18's convolutions in float. With statistics of real activations every layer is
    unit-scale, as in a trained network; weights, architecture and FLOPs are unchanged. Taught in 05_static.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    images = check_float_tensor(images, "images")
    if images.dim() != 4 or images.shape[0] < 1:
        raise ValueError(f"images must be a 4-d batch (N, C, H, W) with N >= 1, got shape {tuple(images.shape)}")
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        raise ValueError("model has no BatchNorm layer to settle")
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    model.train()
    with torch.no_grad():
        model(images)
    return model.eval()


def eager_static_int8(model: nn.Module, calib: torch.Tensor, engine: str | None = None) -> nn.Module:
    """Eager static int8 copy of ``model``: fuse, ``get_default_qconfig(engine)``, prepare, calibrate, convert.

    ``engine=None`` takes the current ``torch.backends.quantized.engine`` (``x86`` on an x86 build,
    ``qnnpack`` on ARM).
    torchvision's quantizable models fuse themselves (``fuse_model()``) and carry Quant/DeQuant stubs;
    a ``Darknet19`` is wrapped in ``QuantWrapper`` and fused with ``darknet19_fuse_groups``. Taught in 05_static.
    """
    import torch.ao.quantization as tq

    from helpers.darknet import Darknet19, darknet19_fuse_groups

    engine = torch.backends.quantized.engine if engine is None else engine
    check_choice(engine, "engine", tuple(e for e in torch.backends.quantized.supported_engines if e != "none"))
    if not isinstance(calib, torch.Tensor) or calib.ndim != 4 or len(calib) == 0:
        raise ValueError("calib must be a non-empty (N, C, H, W) float tensor of calibration images")
    check_float_tensor(calib, "calib")
    torch.backends.quantized.engine = engine
    m = copy.deepcopy(model).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if isinstance(m, Darknet19):
            m = tq.QuantWrapper(tq.fuse_modules(m, darknet19_fuse_groups(m))).eval()
        elif hasattr(m, "fuse_model"):
            m.fuse_model(is_qat=False)
        else:
            raise TypeError("model must be a torchvision quantizable model (fuse_model) or a Darknet19")
        m.qconfig = tq.get_default_qconfig(engine)
        tq.prepare(m, inplace=True)
        with torch.no_grad():
            for img in calib:
                m(img[None])
        tq.convert(m, inplace=True)
    return m


def size_and_latency(fp32: nn.Module, int8: nn.Module, x: torch.Tensor, *, repeats: int = 10, warmup: int = 2) -> dict:
    """Serialized sizes (bytes) and median latencies (ms, 2 threads) of ``fp32`` and ``int8`` on ``x``, and their ratios.

    After ``warmup`` calls each, the two models run alternately ``repeats`` times (interleaved timing).
    Taught in 05_static.
    """
    repeats = check_int(repeats, "repeats", lo=1)
    warmup = check_int(warmup, "warmup", lo=0)
    s32, s8 = serialized_size(fp32), serialized_size(int8)
    measure_latency(lambda: fp32(x), warmup=warmup, repeats=1, threads=2)
    measure_latency(lambda: int8(x), warmup=warmup, repeats=1, threads=2)
    # interleave the two models run by run, so a load change on a shared machine hits both alike
    runs32, runs8 = [], []
    for _ in range(repeats):
        runs32.append(measure_latency(lambda: fp32(x), warmup=0, repeats=1, threads=2).median_ms)
        runs8.append(measure_latency(lambda: int8(x), warmup=0, repeats=1, threads=2).median_ms)
    t32 = Timing(statistics.median(runs32), min(runs32), max(runs32), repeats, warmup, 2)
    t8 = Timing(statistics.median(runs8), min(runs8), max(runs8), repeats, warmup, 2)
    return {
        "fp32_bytes": s32,
        "int8_bytes": s8,
        "size_ratio": s8 / s32,
        "fp32_ms": t32.median_ms,
        "int8_ms": t8.median_ms,
        "speedup": latency_ratio(t32, t8),
    }


def make_observer_view(
    model: nn.Module,
    acts: Mapping[str, Sequence[torch.Tensor]],
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    *,
    mode_acts: Mapping[str, Sequence[torch.Tensor]] | None = None,
) -> Callable[[str, str, float, int], dict]:
    """``observer_view(layer, method, percentile, bits) -> dict``: what lesson 05's observer widget shows.

    ``acts`` are the calibration activations of every name in ``DIGITS_OBSERVED`` (from
    ``collect_activations``). ``mode_acts``, if given, are the batches ``batch_mode`` votes over
    instead (lesson 05 passes one input per batch, the seminar's per-input mode). The view holds ``x`` (the layer's calibration values, flattened),
    ``lo``/``hi`` (the observer's clipping range at ``bits``), ``scale``/``zero_point``, ``mse`` of
    fake-quantizing ``x`` on that grid, ``clipped`` (percent of values outside the range),
    ``accuracy`` (test accuracy with every observed activation quantized by that observer and bit
    width, weights int8 per channel, on x86 with at most 7-bit codes), ``logit_sqnr_db`` (the same
    model's logits against the fp32 model's, computed in float64: a continuous measure that ranks
    settings whose accuracy ties), ``bits``, ``title`` and ``readout``. Ranges and accuracies are cached (``observer_view.layer_range``,
    ``observer_view.accuracy``), so returning to a setting is instant. Taught in 05_static.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module (a DigitsCNN), got {type(model).__name__}")
    if not isinstance(acts, Mapping):
        raise TypeError(f"acts must be a dict {{name: [batches]}} from collect_activations, got {type(acts).__name__}")
    missing = [n for n in DIGITS_OBSERVED if n not in acts]
    if missing:
        raise ValueError(f"acts must hold every layer of DIGITS_OBSERVED; missing {missing}")
    if mode_acts is None:
        mode_acts = acts
    elif not isinstance(mode_acts, Mapping) or any(n not in mode_acts for n in DIGITS_OBSERVED):
        raise ValueError("mode_acts must be None or a dict {name: [batches]} holding every layer of DIGITS_OBSERVED")
    check_tensor(y_test, "y_test")
    flat = {n: torch.cat([b.reshape(-1) for b in acts[n]]) for n in DIGITS_OBSERVED}
    check_float_tensor(x_test, "x_test")
    with torch.no_grad():  # the fp32 model's logits, correctly rounded (float64 forward): the same on every CPU
        logits_fp32 = copy.deepcopy(model).double()(x_test.double()).float()

    @functools.lru_cache(maxsize=512)
    def layer_range(layer: str, method: str, percentile: float, bits: int) -> tuple[float, float]:
        kwargs = {"percentile": percentile} if method == "percentile" else {}
        source = mode_acts if method == "batch_mode" else acts
        lo, hi = observer_range(method, list(source[layer]), bits, **kwargs)
        return float(lo), float(hi)

    @functools.lru_cache(maxsize=128)
    def accuracy(method: str, percentile: float, bits: int) -> tuple[float, float]:
        """``(test accuracy %, logit SQNR dB vs fp32)`` with every activation on that observer and bit width."""
        from helpers.affine import sqnr_db

        ranges = {n: layer_range(n, method, percentile, bits) for n in DIGITS_OBSERVED}
        q = quantize_digits_cnn(model, ranges=ranges, act_bits=bits)
        with torch.no_grad():
            logits = q(x_test)
        return evaluate(q, x_test, y_test), sqnr_db(logits_fp32, logits)

    def observer_view(layer: str, method: str, percentile: float, bits: int) -> dict:
        check_choice(layer, "layer", DIGITS_OBSERVED)
        check_choice(method, "method", METHODS)
        bits = check_bits(bits, lo=2, hi=8)
        percentile = round(check_finite_number(percentile, "percentile"), 3)
        lo, hi = layer_range(layer, method, percentile, bits)
        x = flat[layer]
        scale, zp = affine_qparams(lo, hi, bits, signed=False)
        qmin, qmax = qrange(bits, signed=False)
        err = mse(x, fake_quantize(x, scale, zp, qmin, qmax))
        acc, sqnr = accuracy(method, percentile, bits)
        clipped = float(((x < lo) | (x > hi)).float().mean()) * 100
        code_bits = min(bits, 7)  # quantize_digits_cnn on x86 caps codes at 7 bits (reduce_range)
        readout = (
            f"{layer}: {method}{f' p={percentile}' if method == 'percentile' else ''}, {bits}-bit activations\n"
            f"range [{lo:.4g}, {hi:.4g}]  scale {float(scale):.4g}  zero_point {int(zp)}\n"
            f"MSE {err:.3e}  clipped {clipped:.3f}%\n"
            f"all layers (x86, {code_bits}-bit codes): test accuracy {acc:.2f}%, logit SQNR vs fp32 {sqnr:.1f} dB"
        )
        return {
            "x": x,
            "lo": lo,
            "hi": hi,
            "scale": float(scale),
            "zero_point": int(zp),
            "mse": err,
            "clipped": clipped,
            "accuracy": acc,
            "logit_sqnr_db": sqnr,
            "bits": bits,
            "title": f"{layer} — {method}",
            "readout": readout,
        }

    observer_view.layer_range = layer_range
    observer_view.accuracy = accuracy
    return observer_view


# ----------------------------------------------------------------------------- exercises


def _requantize_cases() -> list[tuple[tuple, torch.Tensor, str]]:
    """Cases of ``check_requantize``: ``((acc, M, zero_point), expected uint8 codes, label)``.

    The expected codes are computed here with Python integers from the definition,
    ``clamp(zp + floor((acc * m0 + 2^(t-1)) / 2^t), 0, 255)`` with ``t = 31 + shift`` (a rounding
    right shift: ties go up), ``m0, shift`` from ``quantize_multiplier``; where ``M`` is a short
    binary fraction (0.5, 0.375, 1.5) that is exactly ``floor(acc * M + 1/2)`` of the rational
    ``acc * M``, and those ``acc`` sit exactly on ties (``acc * M = k + 1/2``), where truncation,
    round-half-to-even and round-half-away-from-zero all give another code.
    """
    settings = [
        ("zero point", 0.25, 128, list(range(-400, 401, 4))),  # exact products, no rounding: only the zero point
        ("ties", 0.5, 0, list(range(-41, 42, 2))),  # acc * 0.5 = k + 1/2 for every odd acc, both signs
        ("ties at 3/8", 0.375, 100, [a for a in range(-200, 201) if (3 * a) % 8 == 4]),
        ("M >= 1", 1.5, 10, list(range(-9, 10, 2))),  # shift = -1: a shift by 30, still rounding
        ("general", 0.0123, 3, list(range(-5000, 5000, 7))),
        ("clamp", 0.02, 250, [-(10**6), -5000, 0, 250, 300, 10**6]),
    ]
    cases = []
    for label, m, zp, accs in settings:
        m0, shift = (int(v) for v in quantize_multiplier(m))
        t = 31 + shift
        want = [min(max(zp + ((a * m0 + (1 << (t - 1))) >> t), 0), 255) for a in accs]
        cases.append(((torch.tensor(accs, dtype=torch.int32), m, zp), torch.tensor(want, dtype=torch.uint8), label))
    return cases


def check_requantize(fn: Callable | None, *, quiet: bool = False) -> bool:
    """Grade ``fn(acc, M, zero_point) -> uint8 codes``: the integer-only requantizer of exercise 1.

    ``acc`` is an int32 tensor, ``M`` a float, ``zero_point`` an int; the answer is
    ``clamp(zero_point + round(M * acc), 0, 255)`` computed with ``quantize_multiplier``'s ``m0, shift``
    and a rounding right shift (ties upward), as uint8. The cases put ``acc`` on exact ties and use a
    zero point and ``M >= 1``, so a truncating shift, a missing zero point, float rounding of
    ``M * acc`` (half to even) and C's ``round`` (half away from zero) are each rejected. Prints one
    line (``quiet=True``: none); returns whether every case agrees. Taught in 05_static.
    """
    from helpers.exercises import grade

    hints = {
        "ties": "add 2^(total-1) before the right shift: a plain >> truncates, and float rounding sends half of the ties to the even neighbour",
        "ties at 3/8": "round with the integer trick (acc * m0 + 2^(total-1)) >> total, where total = 31 + shift",
        "M >= 1": "shift is negative when M >= 1: the total right shift is 31 + shift",
        "zero point": "add zero_point after the shift, then clamp to 0..255",
        "general": "m0 * acc needs int64 (it exceeds int32); shift right by 31 + shift",
        "clamp": "clamp to 0..255 and return uint8",
    }
    return grade(
        "my_requantize",
        fn,
        _requantize_cases(),
        hint="m0, shift = quantize_multiplier(M); total = 31 + shift; y = (acc * m0 + 2**(total - 1)) >> total "
        "in int64; return clamp(y + zero_point, 0, 255) as uint8",
        hints=hints,
        quiet=quiet,
    )
