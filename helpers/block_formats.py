"""Block-scaled formats that LLMs ship in: MXFP8/MXFP4, NVFP4, GGUF Q8_0/Q4_0/Q4_1/Q4_K; KV-cache quantization.

Taught in 10_block_formats. Every format cuts each row of a weight matrix into blocks and stores
one (or two) small scale numbers per block next to the low-bit codes of its values:

================  ======  ==============================================  ============
format            block   bytes of one block (in file order)              bits/weight
================  ======  ==============================================  ============
``mxfp8_e4m3``    32      1 E8M0 scale + 32 fp8 e4m3 codes                8.25
``mxfp8_e5m2``    32      1 E8M0 scale + 32 fp8 e5m2 codes                8.25
``mxfp4``         32      1 E8M0 scale + 16 bytes of e2m1 nibbles         4.25
``nvfp4``         16      (GGUF packs 4 blocks: 4 E4M3 scales + 32 bytes) 4.5 (+ 1 fp32 per tensor)
``q8_0``          32      fp16 d + 32 int8                                8.5
``q4_0``          32      fp16 d + 16 bytes of nibbles                    4.5
``q4_1``          32      fp16 d + fp16 m + 16 bytes of nibbles           5.0
``q4_k``          256     fp16 d + fp16 dmin + 12 bytes of 6-bit
                          scales/mins for 8 sub-blocks + 128 bytes        4.5
================  ======  ==============================================  ============

The byte layouts are GGUF's (``gguf.quants``, llama.cpp's ``ggml-quants.c``): an encoded tensor
is a ``numpy.uint8`` array of shape ``(*x.shape[:-1], bytes_per_row)``, so ``gguf.quants.dequantize``
reads what :func:`encode` writes and :func:`decode` reads GGUF files. MXFP8 has no GGUF type;
its layout follows the same pattern (scale byte, then the element bytes).

The MX formats follow the OCP Microscaling spec v1.0: the shared scale is
``X = 2^(floor(log2(amax)) - emax_elem)`` (emax_elem = 8, 15, 2 for e4m3, e5m2, e2m1),
elements are ``x / X`` rounded to nearest, ties to even, saturating at the element maximum.
NVFP4 follows NVIDIA's two-level recipe (as in torchao): per-tensor fp32 scale
``amax / (448 * 6)``, per-16-value E4M3 scale ``block_amax / 6 / tensor_scale`` (rounded to
nearest even), e2m1 elements.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from helpers._validate import check_bits, check_choice, check_float_tensor, check_int, check_tensor
from helpers.affine import mse, sqnr_db

__all__ = [
    "FORMATS",
    "E2M1_VALUES",
    "layout",
    "block_size",
    "row_multiple",
    "bits_per_weight",
    "can_hold",
    "e2m1_codes",
    "e2m1_values",
    "mx_scale_exponent",
    "nvfp4_tensor_scale",
    "encode",
    "decode",
    "fake_quantize_format",
    "format_error",
    "BLOCK_SIZES",
    "fake_quantize_blocks",
    "block_bits_per_weight",
    "error_view",
    "holdable_linears",
    "weights_error",
    "weights_in_format",
    "fake_quantize_kv",
    "kv_cache_bytes_per_token",
    "kv_cache_bytes",
    "quantized_kv_bytes",
    "float64_llama",
    "quantized_kv_cache",
]

FORMATS = ("mxfp8_e4m3", "mxfp8_e5m2", "mxfp4", "nvfp4", "q8_0", "q4_0", "q4_1", "q4_k")

#: The 8 non-negative values of fp4 e2m1 (codes 0..7); code | 8 is the negative twin.
E2M1_VALUES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)

# Byte fields of one block, in file order: (name, bytes). Values per block first.
_LAYOUTS: dict[str, tuple[int, tuple[tuple[str, int], ...]]] = {
    "mxfp8_e4m3": (32, (("E8M0 scale", 1), ("32 x e4m3", 32))),
    "mxfp8_e5m2": (32, (("E8M0 scale", 1), ("32 x e5m2", 32))),
    "mxfp4": (32, (("E8M0 scale", 1), ("32 x e2m1 nibbles", 16))),
    "nvfp4": (64, (("4 x E4M3 scales", 4), ("64 x e2m1 nibbles", 32))),
    "q8_0": (32, (("fp16 d", 2), ("32 x int8", 32))),
    "q4_0": (32, (("fp16 d", 2), ("32 x 4-bit", 16))),
    "q4_1": (32, (("fp16 d", 2), ("fp16 m", 2), ("32 x 4-bit", 16))),
    "q4_k": (256, (("fp16 d", 2), ("fp16 dmin", 2), ("8 x (6-bit scale, 6-bit min)", 12), ("256 x 4-bit", 128))),
}
# Values that share one scale (the "block"); NVFP4 and Q4_K pack several into the unit above.
_BLOCK = {"mxfp8_e4m3": 32, "mxfp8_e5m2": 32, "mxfp4": 32, "nvfp4": 16, "q8_0": 32, "q4_0": 32, "q4_1": 32, "q4_k": 32}
# (emax of the element format, largest element value) for the MX element types.
_MX_ELEM = {"e4m3": (8, 448.0), "e5m2": (15, 57344.0), "e2m1": (2, 6.0)}
_FP8 = {"e4m3": torch.float8_e4m3fn, "e5m2": torch.float8_e5m2}
_E4M3_MAX = 448.0
_E4M3_TINY = 2.0**-6  # smallest normal e4m3, torchao's floor for NVFP4 block scales
_TIES = ("even", "gguf")


def _check_format(fmt: str) -> str:
    return check_choice(fmt, "fmt", FORMATS)


def layout(fmt: str) -> list[tuple[str, int]]:
    """Byte fields ``[(name, bytes), ...]`` of one storage unit of ``fmt`` in file order.

    One unit holds ``row_multiple(fmt)`` values. Taught in 10_block_formats.
    """
    return list(_LAYOUTS[_check_format(fmt)][1])


def row_multiple(fmt: str) -> int:
    """Values in one storage unit of ``fmt``: a row's length must be a multiple of it.

    32 for MX/Q8_0/Q4_0/Q4_1, 64 for NVFP4 (GGUF packs four 16-value blocks), 256 for Q4_K's
    super-block. Taught in 10_block_formats.
    """
    return _LAYOUTS[_check_format(fmt)][0]


def block_size(fmt: str) -> int:
    """Values that share one scale in ``fmt`` (32; 16 for NVFP4; Q4_K's sub-blocks are 32).

    Taught in 10_block_formats.
    """
    return _BLOCK[_check_format(fmt)]


def bits_per_weight(fmt: str) -> float:
    """Storage bits per value from the layout: ``8 * bytes_per_unit / values_per_unit``.

    MXFP4 ``8*17/32 = 4.25``, NVFP4 ``8*36/64 = 4.5`` (plus one fp32 per tensor), Q4_0 4.5,
    Q4_1 5.0, Q8_0 8.5, Q4_K ``8*144/256 = 4.5``. Taught in 10_block_formats.
    """
    n, fields = _LAYOUTS[_check_format(fmt)]
    return 8 * sum(b for _, b in fields) / n


def can_hold(shape: Sequence[int] | torch.Size, fmt: str) -> bool:
    """Whether a tensor of ``shape`` fits ``fmt``: its rows (last dimension) divide into whole units.

    SmolLM2's 576-wide rows fit every 32/64-value format but not Q4_K's 256-value super-blocks
    (576 = 2.25 x 256); its MLP ``down_proj`` rows (1536 = 6 x 256) do. Taught in 10_block_formats.
    """
    _check_format(fmt)
    if isinstance(shape, torch.Tensor) or not isinstance(shape, (Sequence, torch.Size)) or len(shape) == 0:
        raise TypeError(f"shape must be a non-empty sequence of ints, got {shape!r}")
    n = check_int(int(shape[-1]) if isinstance(shape[-1], np.integer) else shape[-1], "shape[-1]", lo=0)
    return n > 0 and n % row_multiple(fmt) == 0


# --------------------------------------------------------------------------- element formats


def e2m1_codes(v: torch.Tensor, ties: str = "even") -> torch.Tensor:
    """4-bit e2m1 codes (sign << 3 | magnitude index) of ``v``, saturating at ±6.

    Rounds to the nearest of ``E2M1_VALUES``; ``ties="even"`` sends a tie to the code with an even
    mantissa bit (OCP/IEEE), ``ties="gguf"`` to the smaller magnitude (the first minimum of
    gguf's error search). Values that round to zero get code 0 (+0). Taught in 10_block_formats.
    """
    check_float_tensor(v, "v")
    check_choice(ties, "ties", _TIES)
    return _e2m1_codes(v, ties)


_E2M1_MIDS = (0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0)  # midpoints between neighbouring magnitudes
_E2M1_TABLE = torch.tensor([*E2M1_VALUES, *(-v for v in E2M1_VALUES)])  # value of each 4-bit code


def _e2m1_codes(v: torch.Tensor, ties: str) -> torch.Tensor:
    vf = v.float()
    a = vf.abs()
    # magnitude index = how many midpoints |v| passes; a tie (|v| on a midpoint) stays below it, except
    # with ties="even" at 0.75, 1.75, 3.5, the midpoints whose upper neighbour has the even code
    mag = (a > _E2M1_MIDS[0]).to(torch.uint8)
    for i, mid in enumerate(_E2M1_MIDS[1:], start=1):
        mag += (a >= mid) if ties == "even" and i % 2 else (a > mid)
    sign = (vf < -_E2M1_MIDS[0]).to(torch.uint8) << 3  # negative and not rounded to zero (-0 is stored as +0)
    return mag | sign


def e2m1_values(codes: torch.Tensor) -> torch.Tensor:
    """Float32 values of 4-bit e2m1 ``codes`` (0..15). Taught in 10_block_formats."""
    check_tensor(codes, "codes")
    if codes.is_floating_point() or codes.dtype == torch.bool:
        raise TypeError(f"codes must be an integer tensor, got dtype {codes.dtype}")
    if bool((codes < 0).any()) or bool((codes > 15).any()):
        raise ValueError("codes must lie in 0..15")
    return _E2M1_TABLE[codes.int()]


def _floor_log2(a: torch.Tensor) -> torch.Tensor:
    """Exact ``floor(log2(a))`` for positive finite float32 (read from the exponent, no log)."""
    _, e = torch.frexp(a)
    return e.to(torch.int32) - 1


def mx_scale_exponent(x: torch.Tensor, elem: str = "e2m1") -> torch.Tensor:
    """Unbiased E8M0 exponent ``s`` of each 32-value block of ``x``'s rows: ``X = 2^s``.

    ``s = floor(log2(amax)) - emax_elem``, clamped to E8M0's range -127..127; an all-zero
    block gets -127. The block's largest value then lands in ``[2^emax, 2^(emax+1))`` before
    the element cast, so elements above the element max saturate.
    Taught in 10_block_formats.
    """
    check_choice(elem, "elem", tuple(_MX_ELEM))
    blocks = _blocks(x, 32, "mxfp4")
    return _mx_exponent(blocks, elem)


def _mx_exponent(blocks: torch.Tensor, elem: str) -> torch.Tensor:
    emax, _ = _MX_ELEM[elem]
    amax = blocks.abs().amax(-1)
    s = torch.where(amax > 0, _floor_log2(amax) - emax, torch.full_like(amax, -127, dtype=torch.int32))
    return s.clamp(-127, 127)


# --------------------------------------------------------------------------- input checks and packing


def _check_x(x: torch.Tensor, fmt: str) -> torch.Tensor:
    check_float_tensor(x, "x", allow_nonfinite=True)
    lo, hi = torch.aminmax(x.detach())  # one pass: NaN or inf makes the min or max non-finite
    if not (bool(torch.isfinite(lo)) and bool(torch.isfinite(hi))):
        raise ValueError("x must contain only finite values (no NaN or inf): block formats have no encoding for them")
    if x.ndim == 0:
        raise ValueError("x must have at least one dimension (rows are cut along the last one)")
    n = row_multiple(fmt)
    if x.shape[-1] % n:
        raise ValueError(
            f"x's rows (last dimension, {x.shape[-1]}) must be a multiple of {n} for {fmt}; "
            f"see can_hold(shape, {fmt!r})"
        )
    return x.detach().float().contiguous()


def _blocks(x: torch.Tensor, size: int, fmt: str) -> torch.Tensor:
    return _check_x(x, fmt).reshape(-1, size)


def _pack_nibbles(q: torch.Tensor) -> torch.Tensor:
    """GGUF nibble order: byte j of a 32-value group holds value j (low) and value j+16 (high)."""
    q = q.to(torch.uint8).reshape(q.shape[0], -1, 2, q.shape[-1] // 2)
    return (q[..., 0, :] | (q[..., 1, :] << 4)).reshape(q.shape[0], -1)


def _unpack_nibbles(b: torch.Tensor, group: int) -> torch.Tensor:
    b = b.reshape(b.shape[0], -1, group // 2)
    return torch.stack([b & 0x0F, b >> 4], dim=-2).reshape(b.shape[0], -1)


def _f16_bytes(d: torch.Tensor) -> torch.Tensor:
    return d.to(torch.float16).reshape(-1, 1).contiguous().view(torch.uint8)


def _f16_from(b: torch.Tensor) -> torch.Tensor:
    return b.contiguous().view(torch.float16).float().reshape(-1, 1)


def _check_f16_range(d: torch.Tensor, name: str, fmt: str) -> None:
    if bool((d.abs() > 65504).any()):
        raise ValueError(f"{fmt}: the block {name} exceeds float16's max 65504; the values are too large for {fmt}")


def _round_half_away(v: torch.Tensor) -> torch.Tensor:
    """C ``roundf`` (ties away from zero), computed exactly as gguf's ``np_roundf``."""
    a = v.abs()
    f = torch.floor(a)
    return torch.sign(v) * (f + torch.floor(2 * (a - f)))


def _safe_inv(d: torch.Tensor) -> torch.Tensor:
    return torch.where(d == 0, torch.zeros_like(d), 1.0 / torch.where(d == 0, torch.ones_like(d), d))


# --------------------------------------------------------------------------- encoders / decoders


def _enc_mx(blocks: torch.Tensor, elem: str, ties: str) -> torch.Tensor:
    s = _mx_exponent(blocks, elem)
    _, vmax = _MX_ELEM[elem]
    scaled = torch.ldexp(blocks, (-s).unsqueeze(-1).float())
    e = (s + 127).to(torch.uint8).reshape(-1, 1)
    if elem == "e2m1":
        return torch.cat([e, _pack_nibbles(_e2m1_codes(scaled, ties))], dim=1)
    q = scaled.clamp(-vmax, vmax).to(_FP8[elem]).view(torch.uint8)
    return torch.cat([e, q], dim=1)


def _dec_mx(b: torch.Tensor, elem: str) -> torch.Tensor:
    s = b[:, :1].int() - 127
    if elem == "e2m1":
        v = torch.take(_E2M1_TABLE, _unpack_nibbles(b[:, 1:], 32).long())
    else:
        v = b[:, 1:].contiguous().view(_FP8[elem]).float()
    x_hat = torch.ldexp(v, s.float())
    return torch.where(s == 128, torch.nan, x_hat)  # E8M0 0xFF is NaN: the whole block


def nvfp4_tensor_scale(x: torch.Tensor) -> float:
    """NVFP4's per-tensor fp32 scale ``amax / (448 * 6)`` (1.0 for an all-zero tensor).

    Chosen so that the block holding the tensor's largest value gets E4M3's largest scale, 448.
    Taught in 10_block_formats.
    """
    check_float_tensor(x, "x", allow_nonfinite=True)
    lo, hi = torch.aminmax(x.detach())  # max|x| = max(|min|, |max|), without a full-size |x|
    if not (bool(torch.isfinite(lo)) and bool(torch.isfinite(hi))):
        raise ValueError("x must contain only finite values (no NaN or inf)")
    amax = torch.maximum(lo.abs(), hi.abs()).float()
    return float(amax / (_E4M3_MAX * 6.0)) if float(amax) > 0 else 1.0


def _enc_nvfp4(blocks64: torch.Tensor, tensor_scale: float) -> torch.Tensor:
    b16 = blocks64.reshape(-1, 16)
    ts = torch.tensor(tensor_scale, dtype=torch.float32)
    block_scale = b16.abs().amax(-1) / 6.0
    s8 = (block_scale / ts).clamp(_E4M3_TINY, _E4M3_MAX).to(torch.float8_e4m3fn)
    s32 = s8.float()
    scaled = (b16 * ((1.0 / ts) / s32).unsqueeze(-1)).clamp(-6.0, 6.0)
    codes = _e2m1_codes(scaled, "even").reshape(-1, 2, 8)
    q = (codes[:, 0] | (codes[:, 1] << 4)).reshape(-1, 32)
    return torch.cat([s8.view(torch.uint8).reshape(-1, 4), q], dim=1)


def _dec_nvfp4(b: torch.Tensor, tensor_scale: float) -> torch.Tensor:
    s = b[:, :4].contiguous().view(torch.float8_e4m3fn).float().reshape(-1, 1)
    q = b[:, 4:].reshape(-1, 8)
    codes = torch.cat([q & 0x0F, q >> 4], dim=1)
    return (torch.take(_E2M1_TABLE, codes.long()) * s * torch.tensor(tensor_scale, dtype=torch.float32)).reshape(-1, 64)


def _enc_q8_0(blocks: torch.Tensor) -> torch.Tensor:
    d = blocks.abs().amax(-1, keepdim=True) / 127
    _check_f16_range(d, "scale d", "q8_0")
    q = _round_half_away(blocks * _safe_inv(d)).to(torch.int8)
    return torch.cat([_f16_bytes(d), q.view(torch.uint8)], dim=1)


def _dec_q8_0(b: torch.Tensor) -> torch.Tensor:
    return b[:, 2:].contiguous().view(torch.int8).float() * _f16_from(b[:, :2])


def _enc_q4_0(blocks: torch.Tensor) -> torch.Tensor:
    imax = blocks.abs().argmax(-1, keepdim=True)
    d = torch.gather(blocks, -1, imax) / -8
    _check_f16_range(d, "scale d", "q4_0")
    q = torch.trunc(blocks * _safe_inv(d) + 8.5).clamp(0, 15)
    return torch.cat([_f16_bytes(d), _pack_nibbles(q)], dim=1)


def _dec_q4_0(b: torch.Tensor) -> torch.Tensor:
    return _f16_from(b[:, :2]) * (_unpack_nibbles(b[:, 2:], 32).float() - 8)


def _enc_q4_1(blocks: torch.Tensor) -> torch.Tensor:
    hi = blocks.amax(-1, keepdim=True)
    lo = blocks.amin(-1, keepdim=True)
    d = (hi - lo) / 15
    _check_f16_range(d, "scale d", "q4_1")
    _check_f16_range(lo, "minimum m", "q4_1")
    q = torch.trunc((blocks - lo) * _safe_inv(d) + 0.5).clamp(0, 15)
    return torch.cat([_f16_bytes(d), _f16_bytes(lo), _pack_nibbles(q)], dim=1)


def _dec_q4_1(b: torch.Tensor) -> torch.Tensor:
    return _f16_from(b[:, :2]) * _unpack_nibbles(b[:, 4:], 32).float() + _f16_from(b[:, 2:4])


def _qkx2(x: torch.Tensor, nmax: int = 15, rmin: float = -1.0, rdelta: float = 0.1, nstep: int = 20):
    """llama.cpp's ``make_qkx2_quants`` for rows of ``x`` (one row = one 32-value sub-block).

    Weighted least-squares search over 21 candidate scales for ``x ≈ scale * L - the_min`` with
    ``L`` in 0..nmax and weights ``sqrt(mean(x^2)) + |x|``. Returns ``(scale, the_min, L)``.
    Rows are searched in cache-sized chunks; each row's result does not depend on the others.
    """
    if x.shape[0] <= _QKX2_ROWS:
        return _qkx2_rows(x, nmax, rmin, rdelta, nstep)
    parts = [_qkx2_rows(x[i : i + _QKX2_ROWS], nmax, rmin, rdelta, nstep) for i in range(0, x.shape[0], _QKX2_ROWS)]
    return tuple(torch.cat(p) for p in zip(*parts))


_QKX2_ROWS = 8192  # sub-blocks per chunk of the Q4_K search: 1 MiB per float32 intermediate


def _qkx2_rows(x: torch.Tensor, nmax: int, rmin: float, rdelta: float, nstep: int):
    w = x.pow(2).mean(-1, keepdim=True).sqrt() + x.abs()
    lo = x.amin(-1, keepdim=True).clamp(max=0)
    hi = x.amax(-1, keepdim=True)
    span = hi - lo
    flat = span == 0
    span_safe = torch.where(flat, torch.ones_like(span), span)
    sum_w = w.sum(-1, keepdim=True)
    sum_x = (w * x).sum(-1, keepdim=True)
    x_lo = x - lo
    iscale = nmax / span_safe
    scale = 1 / iscale
    L = torch.round(iscale * x_lo).clamp(0, nmax)
    best_err = (w * (scale * L + lo - x).pow(2)).sum(-1, keepdim=True)
    best_min = lo
    best_iscale = iscale  # L is recomputed from the winning candidate's iscale at the end
    for i in range(nstep + 1):
        iscale_i = (rmin + rdelta * i + nmax) / span_safe
        La = torch.round(iscale_i * x_lo).clamp_(0, nmax)
        wL = w * La
        sum_l = wL.sum(-1, keepdim=True)
        sum_l2 = (wL * La).sum(-1, keepdim=True)
        sum_xl = (wL * x).sum(-1, keepdim=True)
        det = sum_w * sum_l2 - sum_l * sum_l
        ok = det > 0
        det_safe = torch.where(ok, det, torch.ones_like(det))
        this_scale = (sum_w * sum_xl - sum_x * sum_l) / det_safe
        this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det_safe
        pos = this_min > 0
        this_scale = torch.where(pos, sum_xl / torch.where(sum_l2 > 0, sum_l2, torch.ones_like(sum_l2)), this_scale)
        this_min = torch.where(pos, torch.zeros_like(this_min), this_min)
        r = this_scale * La  # the weighted squared error w * (scale * L + min - x)^2, in place
        r += this_min
        r -= x
        r *= r
        r *= w
        err = r.sum(-1, keepdim=True)
        better = ok & (err < best_err)
        best_iscale = torch.where(better, iscale_i, best_iscale)
        best_err = torch.where(better, err, best_err)
        scale = torch.where(better, this_scale, scale)
        best_min = torch.where(better, this_min, best_min)
    L = torch.round(best_iscale * x_lo).clamp_(0, nmax)
    scale = torch.where(flat, torch.zeros_like(scale), scale)
    L = torch.where(flat, torch.zeros_like(L), L)
    return scale.squeeze(-1), -best_min.squeeze(-1), L


def _enc_q4_k(blocks: torch.Tensor) -> torch.Tensor:
    n = blocks.shape[0]
    sub = blocks.reshape(n * 8, 32)
    scales, mins, L = _qkx2(sub)
    scales, mins, L = scales.reshape(n, 8), mins.reshape(n, 8), L.reshape(n, 8, 32)
    max_scale = scales.amax(-1, keepdim=True).clamp(min=0)
    max_min = mins.amax(-1, keepdim=True).clamp(min=0)
    inv_scale = torch.where(max_scale > 0, 63.0 / torch.where(max_scale > 0, max_scale, 1.0), 0.0)
    inv_min = torch.where(max_min > 0, 63.0 / torch.where(max_min > 0, max_min, 1.0), 0.0)
    ls = torch.round(inv_scale * scales).clamp(0, 63).to(torch.uint8)
    lm = torch.round(inv_min * mins).clamp(0, 63).to(torch.uint8)
    d = max_scale / 63
    dmin = max_min / 63
    _check_f16_range(d, "super-block scale d", "q4_k")
    _check_f16_range(dmin, "super-block dmin", "q4_k")
    d16 = d.to(torch.float16).float()
    dmin16 = dmin.to(torch.float16).float()
    # Re-quantize every value against the 6-bit scales as they will be decoded.
    dj = (d16 * ls.float()).unsqueeze(-1)
    mj = (dmin16 * lm.float()).unsqueeze(-1)
    Lq = torch.round((blocks.reshape(n, 8, 32) + mj) / torch.where(dj == 0, 1.0, dj)).clamp(0, 15)
    L = torch.where(dj == 0, L, Lq).reshape(n, 256)
    sc = torch.empty(n, 12, dtype=torch.uint8)
    sc[:, 0:4] = ls[:, 0:4] | ((ls[:, 4:8] >> 4) << 6)
    sc[:, 4:8] = lm[:, 0:4] | ((lm[:, 4:8] >> 4) << 6)
    sc[:, 8:12] = (ls[:, 4:8] & 0x0F) | ((lm[:, 4:8] & 0x0F) << 4)
    q = L.to(torch.uint8).reshape(n, 4, 2, 32)
    qs = (q[:, :, 0] | (q[:, :, 1] << 4)).reshape(n, 128)
    return torch.cat([_f16_bytes(d), _f16_bytes(dmin), sc, qs], dim=1)


def _q4_k_scales(sc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unpack the 12 scale bytes into 8 six-bit scales and 8 six-bit mins."""
    a, m, low = sc[:, 0:4], sc[:, 4:8], sc[:, 8:12]
    ls = torch.cat([a & 0x3F, (low & 0x0F) | ((a >> 6) << 4)], dim=1)
    lm = torch.cat([m & 0x3F, (low >> 4) | ((m >> 6) << 4)], dim=1)
    return ls, lm


def _dec_q4_k(b: torch.Tensor) -> torch.Tensor:
    n = b.shape[0]
    d, dmin = _f16_from(b[:, 0:2]), _f16_from(b[:, 2:4])
    ls, lm = _q4_k_scales(b[:, 4:16])
    q = b[:, 16:].reshape(n, 4, 1, 32)
    L = torch.cat([q & 0x0F, q >> 4], dim=2).reshape(n, 8, 32).float()
    dj = (d * ls.float()).unsqueeze(-1)
    mj = (dmin * lm.float()).unsqueeze(-1)
    return (dj * L - mj).reshape(n, 256)


_ENC = {
    "mxfp8_e4m3": lambda b, ties: _enc_mx(b, "e4m3", ties),
    "mxfp8_e5m2": lambda b, ties: _enc_mx(b, "e5m2", ties),
    "mxfp4": lambda b, ties: _enc_mx(b, "e2m1", ties),
    "q8_0": lambda b, ties: _enc_q8_0(b),
    "q4_0": lambda b, ties: _enc_q4_0(b),
    "q4_1": lambda b, ties: _enc_q4_1(b),
    "q4_k": lambda b, ties: _enc_q4_k(b),
}
_DEC = {
    "mxfp8_e4m3": lambda b: _dec_mx(b, "e4m3"),
    "mxfp8_e5m2": lambda b: _dec_mx(b, "e5m2"),
    "mxfp4": lambda b: _dec_mx(b, "e2m1"),
    "q8_0": _dec_q8_0,
    "q4_0": _dec_q4_0,
    "q4_1": _dec_q4_1,
    "q4_k": _dec_q4_k,
}


def _unit_bytes(fmt: str) -> int:
    return sum(b for _, b in _LAYOUTS[fmt][1])


def _check_tensor_scale(fmt: str, tensor_scale: float | None, required: bool) -> float | None:
    if fmt != "nvfp4":
        if tensor_scale is not None:
            raise ValueError(f"tensor_scale is only used by 'nvfp4', got tensor_scale={tensor_scale!r} for {fmt!r}")
        return None
    if tensor_scale is None:
        if required:
            raise ValueError("decode(..., 'nvfp4') needs tensor_scale (the fp32 per-tensor scale used by encode)")
        return None
    if isinstance(tensor_scale, bool) or not isinstance(tensor_scale, (int, float)):
        raise TypeError(f"tensor_scale must be a float, got {type(tensor_scale).__name__}")
    if not (math.isfinite(tensor_scale) and tensor_scale > 0):
        raise ValueError(f"tensor_scale must be finite and > 0, got {tensor_scale}")
    return float(tensor_scale)


def encode(x: torch.Tensor, fmt: str, *, tensor_scale: float | None = None, ties: str = "even") -> np.ndarray:
    """Bytes of ``x`` in ``fmt``: ``numpy.uint8`` of shape ``(*x.shape[:-1], bytes_per_row)``, GGUF's layout.

    Rows (the last dimension) are cut into blocks of consecutive values. NaN/inf raise
    ``ValueError`` (no block format can store them); so do rows that are not a multiple of
    :func:`row_multiple` and scales that overflow fp16 (GGUF types). ``tensor_scale`` is NVFP4's
    fp32 per-tensor scale (default :func:`nvfp4_tensor_scale` of ``x``; pass the same value to
    :func:`decode`). ``ties`` (MXFP4/NVFP4 elements): ``"even"`` per the OCP spec or ``"gguf"``,
    the tie rule of gguf's MXFP4 encoder. Taught in 10_block_formats.
    """
    _check_format(fmt)
    check_choice(ties, "ties", _TIES)
    ts = _check_tensor_scale(fmt, tensor_scale, required=False)
    xf = _check_x(x, fmt)
    unit = row_multiple(fmt)
    blocks = xf.reshape(-1, unit)
    if fmt == "nvfp4":
        b = _enc_nvfp4(blocks, nvfp4_tensor_scale(xf) if ts is None else ts)
    else:
        b = _ENC[fmt](blocks, ties)
    rows = xf.shape[:-1]
    return b.reshape(*rows, (xf.shape[-1] // unit) * _unit_bytes(fmt)).numpy()


def decode(data: np.ndarray, fmt: str, *, tensor_scale: float | None = None) -> torch.Tensor:
    """Float32 values of GGUF-layout bytes ``data`` (``uint8``, shape ``(*rows, bytes_per_row)``).

    Inverse of :func:`encode`; also reads tensors from GGUF files (``GGUFReader(...).tensors[i].data``).
    NVFP4 needs the ``tensor_scale`` it was encoded with. Taught in 10_block_formats.
    """
    _check_format(fmt)
    ts = _check_tensor_scale(fmt, tensor_scale, required=True)
    if not isinstance(data, np.ndarray):
        raise TypeError(f"data must be a numpy uint8 array, got {type(data).__name__}")
    if data.dtype != np.uint8:
        raise TypeError(f"data must have dtype uint8, got {data.dtype}")
    ub = _unit_bytes(fmt)
    if data.ndim == 0 or data.size == 0 or data.shape[-1] % ub:
        raise ValueError(f"data's rows must be a non-empty multiple of {ub} bytes for {fmt}, got shape {data.shape}")
    b = torch.from_numpy(np.require(data, requirements=["C", "W"])).reshape(-1, ub)
    v = _dec_nvfp4(b, ts) if fmt == "nvfp4" else _DEC[fmt](b)
    return v.reshape(*data.shape[:-1], data.shape[-1] // ub * row_multiple(fmt))


def fake_quantize_format(x: torch.Tensor, fmt: str) -> torch.Tensor:
    """``x_hat = decode(encode(x, fmt))`` in ``x``'s shape (float32). Taught in 10_block_formats."""
    return _round_trip(x, fmt, torch.float32)


def _round_trip(x: torch.Tensor, fmt: str, dtype: torch.dtype) -> torch.Tensor:
    """``decode(encode(x, fmt))`` cast to ``dtype``; large tensors go in row chunks (the intermediates stay in cache)."""
    ts = nvfp4_tensor_scale(x) if fmt == "nvfp4" and isinstance(x, torch.Tensor) else None
    if not isinstance(x, torch.Tensor) or x.ndim < 2 or x.numel() <= _CHUNK:
        return decode(encode(x, fmt, tensor_scale=ts), fmt, tensor_scale=ts).to(dtype)
    rows = x.reshape(-1, x.shape[-1])
    step = max(1, _CHUNK // x.shape[-1])
    out = torch.empty(rows.shape, dtype=dtype)
    for i in range(0, rows.shape[0], step):  # each chunk decoded straight into its rows of the result
        out[i : i + step] = decode(encode(rows[i : i + step], fmt, tensor_scale=ts), fmt, tensor_scale=ts)
    return out.reshape(x.shape)


_CHUNK = 2**20  # values per chunk in fake_quantize_format


def format_error(x: torch.Tensor, fmt: str) -> dict[str, float]:
    """``{"mse", "sqnr_db", "bits_per_weight"}`` of ``x`` stored in ``fmt`` (lessons 02–03's metrics).

    Taught in 10_block_formats.
    """
    x_hat = fake_quantize_format(x, fmt)
    xf = x.detach().float()
    return {"mse": mse(xf, x_hat), "sqnr_db": sqnr_db(xf, x_hat), "bits_per_weight": bits_per_weight(fmt)}


#: Block sizes the value-level quantizer :func:`fake_quantize_blocks` accepts.
BLOCK_SIZES = (8, 16, 32, 64, 128, 256)
# element bits and scale(+min) bits of each block, for block_bits_per_weight
_ELEM_BITS = {"mxfp8_e4m3": 8, "mxfp8_e5m2": 8, "mxfp4": 4, "nvfp4": 4, "q8_0": 8, "q4_0": 4, "q4_1": 4}
_SCALE_BITS = {"mxfp8_e4m3": 8, "mxfp8_e5m2": 8, "mxfp4": 8, "nvfp4": 8, "q8_0": 16, "q4_0": 16, "q4_1": 32}


def block_bits_per_weight(fmt: str, block: int) -> float:
    """Bits per value of ``fmt``'s recipe with ``block`` values per scale: ``elem_bits + scale_bits / block``.

    At the format's own block size this equals :func:`bits_per_weight` (NVFP4's per-tensor fp32
    not counted); Q4_K's block is fixed (its super-block layout). Taught in 10_block_formats.
    """
    _check_format(fmt)
    if fmt == "q4_k":
        if block != block_size("q4_k"):
            raise ValueError(f"q4_k's block size is fixed at 32 (sub-blocks of a 256 super-block), got {block}")
        return bits_per_weight("q4_k")
    check_choice(block, "block", BLOCK_SIZES)
    return _ELEM_BITS[fmt] + _SCALE_BITS[fmt] / block


def fake_quantize_blocks(x: torch.Tensor, fmt: str, block: int | None = None) -> torch.Tensor:
    """``x_hat``: ``fmt``'s recipe (scale rule, scale type, element type) applied with ``block`` values per scale.

    ``block=None`` (or the format's own block) gives exactly :func:`fake_quantize_format`; other
    sizes (one of ``BLOCK_SIZES``) answer "what if MXFP4 used 16-value blocks?" without a byte
    layout. Rows (the last dimension) must be a multiple of ``block``. Q4_K only takes its own
    block. Taught in 10_block_formats.
    """
    _check_format(fmt)
    native = block_size(fmt)
    if block is None or block == native:
        return fake_quantize_format(x, fmt)
    block_bits_per_weight(fmt, block)  # validates block (and rejects q4_k)
    return _blockwise(x, fmt, block)


def _blockwise(x: torch.Tensor, fmt: str, block: int) -> torch.Tensor:
    """Value-level ``fmt`` recipe on blocks of ``block`` values (equals the byte path at the native block)."""
    check_float_tensor(x, "x", allow_nonfinite=True)
    if x.ndim == 0 or x.shape[-1] % block:
        raise ValueError(f"x's rows (last dimension, {tuple(x.shape)[-1:]}) must be a multiple of block={block}")
    xf = x.detach().float().contiguous()
    lo, hi = torch.aminmax(xf)
    if not (bool(torch.isfinite(lo)) and bool(torch.isfinite(hi))):
        raise ValueError("x must contain only finite values (no NaN or inf): block formats have no encoding for them")
    b = xf.reshape(-1, block)
    if fmt.startswith("mx"):
        elem = {"mxfp8_e4m3": "e4m3", "mxfp8_e5m2": "e5m2", "mxfp4": "e2m1"}[fmt]
        s = _mx_exponent(b, elem).unsqueeze(-1).float()
        scaled = torch.ldexp(b, -s)
        if elem == "e2m1":
            v = e2m1_values(_e2m1_codes(scaled, "even"))
        else:
            vmax = _MX_ELEM[elem][1]
            v = scaled.clamp(-vmax, vmax).to(_FP8[elem]).float()
        x_hat = torch.ldexp(v, s)
    elif fmt == "nvfp4":
        ts = torch.tensor(nvfp4_tensor_scale(xf), dtype=torch.float32)
        s32 = (b.abs().amax(-1) / 6.0 / ts).clamp(_E4M3_TINY, _E4M3_MAX).to(torch.float8_e4m3fn).float()
        scaled = (b * ((1.0 / ts) / s32).unsqueeze(-1)).clamp(-6.0, 6.0)
        x_hat = e2m1_values(_e2m1_codes(scaled, "even")) * s32.unsqueeze(-1) * ts
    elif fmt == "q8_0":
        d = (b.abs().amax(-1, keepdim=True) / 127).to(torch.float16).float()
        q = _round_half_away(b * _safe_inv(b.abs().amax(-1, keepdim=True) / 127)).clamp(-127, 127)
        x_hat = q * d
    elif fmt == "q4_0":
        d = torch.gather(b, -1, b.abs().argmax(-1, keepdim=True)) / -8
        q = torch.trunc(b * _safe_inv(d) + 8.5).clamp(0, 15)
        x_hat = (q - 8) * d.to(torch.float16).float()
    else:  # q4_1
        lo_b, hi_b = b.amin(-1, keepdim=True), b.amax(-1, keepdim=True)
        d = (hi_b - lo_b) / 15
        q = torch.trunc((b - lo_b) * _safe_inv(d) + 0.5).clamp(0, 15)
        x_hat = q * d.to(torch.float16).float() + lo_b.to(torch.float16).float()
    return x_hat.reshape(x.shape)


def error_view(x: torch.Tensor, fmt: str, block: int | None = None) -> dict:
    """What the lesson's widget shows for weight ``x`` in ``fmt`` with ``block`` values per scale.

    Returns ``{"x", "err", "mse", "sqnr_db", "bits_per_weight", "block", "message"}`` with
    ``err = x_hat - x`` (flattened, float32). When ``fmt`` cannot hold ``x`` that way (rows not a
    multiple of the block or of the storage unit, or a block size Q4_K does not have), the arrays
    are ``None`` and ``message`` says why. Taught in 10_block_formats.
    """
    check_float_tensor(x, "x")
    _check_format(fmt)
    native = block_size(fmt)
    block = native if block is None else block
    out = {"x": None, "err": None, "mse": None, "sqnr_db": None, "bits_per_weight": None, "block": block, "message": ""}
    if fmt == "q4_k" and block != native:
        out["message"] = f"q4_k: block size fixed at {native} (8 sub-blocks of one 256-value super-block)"
        block = native
        out["block"] = native
    width = x.shape[-1]
    need = row_multiple(fmt) if block == native else block
    if x.ndim == 0 or width % need:
        unit = "super-blocks" if fmt == "q4_k" else "blocks" if block != native else "storage units"
        out["message"] = f"{fmt} cannot hold these {width}-wide rows: {width} / {need} = {width / need:g} {unit}"
        return out
    x_hat = fake_quantize_blocks(x, fmt, None if block == native else block)
    xf = x.detach().float()
    out.update(
        x=xf.flatten(),
        err=(x_hat - xf).flatten(),
        mse=mse(xf, x_hat),
        sqnr_db=sqnr_db(xf, x_hat),
        bits_per_weight=block_bits_per_weight(fmt, block) if fmt != "q4_k" else bits_per_weight(fmt),
    )
    return out


# --------------------------------------------------------------------------- whole models


def holdable_linears(model: nn.Module, fmt: str) -> tuple[list[str], list[str]]:
    """``(held, skipped)``: names of the model's ``nn.Linear`` layers whose weight rows fit ``fmt``.

    A Linear's weight is ``(out_features, in_features)``; GGUF cuts rows along ``in_features``.
    Taught in 10_block_formats.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    _check_format(fmt)
    held, skipped = [], []
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Linear):
            (held if can_hold(mod.weight.shape, fmt) else skipped).append(name)
    return held, skipped


@contextlib.contextmanager
def weights_in_format(
    model: nn.Module, fmt: str, include: Callable[[str], bool] | None = None
) -> Iterator[tuple[list[str], list[str]]]:
    """Context manager: every Linear weight that fits ``fmt`` is replaced by its ``fmt`` round trip.

    Yields ``(held, skipped)`` from :func:`holdable_linears`; the original weights come back on
    exit. Layers that share one weight tensor (tied embeddings) are converted once.
    ``include(name) -> bool`` restricts the conversion to some layers (others count as skipped).
    Taught in 10_block_formats.
    """
    if include is not None and not callable(include):
        raise TypeError(f"include must be a callable name -> bool or None, got {type(include).__name__}")
    held, skipped = holdable_linears(model, fmt)
    if include is not None:
        skipped = sorted(set(skipped) | {n for n in held if not include(n)}, key=[*held, *skipped].index)
        held = [n for n in held if include(n)]
    modules = dict(model.named_modules())
    saved: dict[int, tuple[nn.Parameter, torch.Tensor]] = {}
    try:
        with torch.no_grad():
            for name in held:
                w = modules[name].weight
                if id(w) in saved:
                    continue
                x_hat = _round_trip(w.detach(), fmt, w.dtype)
                saved[id(w)] = (w, w.data)  # the original tensor itself: swapped back on exit, never copied
                w.data = x_hat
        yield held, skipped
    finally:
        for w, orig in saved.values():
            w.data = orig


def weights_error(model: nn.Module, originals: Mapping[str, torch.Tensor], names: Sequence[str]) -> dict[str, float]:
    """MSE and SQNR (dB) of the Linear weights ``names`` of ``model`` against ``originals[name]``, in float64.

    Pooled over every value of every listed layer; a weight shared by several layers (tied
    embedding and ``lm_head``) counts once. Use inside :func:`weights_in_format`.
    Taught in 10_block_formats.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    modules = dict(model.named_modules())
    seen: set[int] = set()
    se = sig = 0.0
    n = 0
    for name in names:
        if name not in modules or name not in originals:
            raise ValueError(f"names must be Linear layers of model with an entry in originals, got {name!r}")
        w = modules[name].weight
        if id(w) in seen:
            continue
        seen.add(id(w))
        ref = originals[name].detach()
        if ref.shape != w.shape:
            raise ValueError(f"originals[{name!r}] has shape {tuple(ref.shape)}, the layer's weight {tuple(w.shape)}")
        d_sq, r_sq = _squared_sums(w.detach(), ref)
        se += d_sq
        sig += r_sq
        n += ref.numel()
    if n == 0:
        raise ValueError("names must list at least one layer")
    m = se / n
    return {"mse": m, "sqnr_db": (10 * math.log10(sig / se) if se > 0 else math.inf), "values": n}


def _squared_sums(w: torch.Tensor, ref: torch.Tensor) -> tuple[float, float]:
    """``(sum (w - ref)^2, sum ref^2)`` in float64, in chunks that stay in cache (no full-size temporaries)."""
    a, r = w.reshape(-1), ref.reshape(-1)
    step = _CHUNK // 8
    diff = torch.empty(min(step, a.numel()), dtype=torch.float64)
    se = sig = 0.0
    for i in range(0, a.numel(), step):
        rc = r[i : i + step].double()
        d = torch.sub(a[i : i + step].double(), rc, out=diff[: rc.numel()])
        se += float(torch.dot(d, d))
        sig += float(torch.dot(rc, rc))
    return se, sig


# --------------------------------------------------------------------------- KV cache

_KV_AXES = ("token", "channel")


def fake_quantize_kv(x: torch.Tensor, bits: int, axis: str = "token", group_size: int | None = None) -> torch.Tensor:
    """Asymmetric min-max fake quantization of cached keys/values ``x`` of shape ``(..., tokens, head_dim)``.

    ``axis="token"``: one ``(scale, min)`` per token (and head) over its ``head_dim`` values, or
    over groups of ``group_size`` of them. ``axis="channel"``: one per channel over
    ``group_size`` consecutive tokens (default: all tokens); a last, shorter group gets its own.
    ``x_hat = round((x - min) / scale) * scale + min`` with ``scale = (max - min) / (2^bits - 1)``.
    KIVI (Liu et al. 2024): keys have outlier channels, so per-channel suits keys, per-token
    values. Taught in 10_block_formats.
    """
    check_float_tensor(x, "x")
    check_bits(bits, 1, 16)
    check_choice(axis, "axis", _KV_AXES)
    if x.ndim < 2:
        raise ValueError(f"x must have shape (..., tokens, head_dim), got {tuple(x.shape)}")
    xf = x.detach().double() if x.dtype == torch.float64 else x.detach().float()
    if axis == "channel":
        xf = xf.transpose(-1, -2)  # (..., head_dim, tokens): groups run along the tokens
    n = xf.shape[-1]
    g = n if group_size is None else check_int(group_size, "group_size", lo=1)
    if axis == "token" and n % g:
        raise ValueError(f"group_size must divide head_dim ({n}) for axis='token', got {g}")
    pad = (-n) % g
    if pad:  # repeat the last token: the partial group's min and max do not change
        xf = torch.cat([xf, xf[..., -1:].expand(*xf.shape[:-1], pad)], dim=-1)
    grouped = xf.reshape(*xf.shape[:-1], -1, g)
    lo = grouped.amin(-1, keepdim=True)
    hi = grouped.amax(-1, keepdim=True)
    scale = (hi - lo) / (2**bits - 1)
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = torch.round((grouped - lo) / safe).clamp(0, 2**bits - 1)
    x_hat = (q * scale + lo).reshape(xf.shape)[..., :n]
    if axis == "channel":
        x_hat = x_hat.transpose(-1, -2)
    return x_hat.to(x.dtype).contiguous()


def _cfg(config: object, name: str) -> int:
    value = getattr(config, name, None)
    if value is None:
        raise ValueError(f"config has no {name!r}; pass a transformers config of a decoder-only model")
    return int(value)


def kv_cache_bytes_per_token(config: object, bits: float = 16) -> float:
    """Bytes of K and V one token adds to the cache: ``layers * kv_heads * head_dim * 2 * bits / 8``.

    ``config`` is a transformers config (``num_hidden_layers``, ``num_key_value_heads`` or
    ``num_attention_heads``, ``head_dim`` or ``hidden_size / num_attention_heads``); scale/min
    overhead of quantized caches is not counted. Taught in 10_block_formats.
    """
    if isinstance(bits, bool) or not isinstance(bits, (int, float)) or not (0 < bits <= 64):
        raise ValueError(f"bits must be a number in (0, 64], got {bits!r}")
    layers = _cfg(config, "num_hidden_layers")
    heads = _cfg(config, "num_attention_heads")
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or _cfg(config, "hidden_size") // heads
    return layers * int(kv_heads) * int(head_dim) * 2 * bits / 8


def kv_cache_bytes(config: object, tokens: int, bits: float = 16, batch: int = 1) -> float:
    """Bytes of a full KV cache: ``batch * tokens * kv_cache_bytes_per_token``. Taught in 10_block_formats."""
    check_int(tokens, "tokens", lo=0)
    check_int(batch, "batch", lo=1)
    return batch * tokens * kv_cache_bytes_per_token(config, bits)


def quantized_kv_bytes(x: torch.Tensor, bits: int, axis: str = "token", group_size: int | None = None) -> int:
    """Bytes that really hold cached ``x`` (``(..., tokens, head_dim)``) quantized as :func:`fake_quantize_kv` does.

    The codes are packed (``bits`` <= 4: two per byte, else one int8/int16 each) and every group
    keeps an fp16 scale and an fp16 minimum; the tensors are built and their ``nbytes`` summed.
    ``bits=16``/``32`` give the plain fp16/fp32 tensor. Taught in 10_block_formats.
    """
    check_float_tensor(x, "x")
    check_bits(bits, 1, 32)
    check_choice(axis, "axis", _KV_AXES)
    if bits in (16, 32):
        return x.detach().to(torch.float16 if bits == 16 else torch.float32).nbytes
    xf = x.detach().float()
    if axis == "channel":
        xf = xf.transpose(-1, -2)
    n = xf.shape[-1]
    g = n if group_size is None else check_int(group_size, "group_size", lo=1)
    pad = (-n) % g
    if pad:
        xf = torch.cat([xf, xf[..., -1:].expand(*xf.shape[:-1], pad)], dim=-1)
    grouped = xf.reshape(*xf.shape[:-1], -1, g)
    lo, hi = grouped.amin(-1, keepdim=True), grouped.amax(-1, keepdim=True)
    scale = (hi - lo) / (2**bits - 1)
    q = torch.round((grouped - lo) / torch.where(scale > 0, scale, torch.ones_like(scale))).clamp(0, 2**bits - 1)
    q = q.reshape(*xf.shape)[..., :n].to(torch.uint8 if bits <= 8 else torch.int16).flatten()
    if bits <= 4:
        q = torch.cat([q, q.new_zeros(q.numel() % 2)])
        q = q[0::2] | (q[1::2] << 4)
    return q.nbytes + scale.to(torch.float16).nbytes + lo.to(torch.float16).nbytes


def _rms_norm_float64(self, hidden_states: torch.Tensor) -> torch.Tensor:
    h = hidden_states.double()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)
    return self.weight.double() * h


def _rotary_float64(self, x: torch.Tensor, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    freqs = position_ids[..., None].double() * self._inv_freq64
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos() * self.attention_scaling, emb.sin() * self.attention_scaling


def float64_llama(model: nn.Module) -> nn.Module:
    """Cast a Hugging Face Llama-style model to float64 *and* make its RMSNorm and RoPE compute in float64.

    ``model.double()`` alone is not enough: transformers' ``LlamaRMSNorm`` upcasts to float32
    (its mean over the hidden size then depends on the CPU's summation order) and the rotary
    embedding computes ``cos``/``sin`` in float32 from a float32 ``inv_freq``. Here both run in
    float64 (``inv_freq = 1 / theta^(2i/d)`` recomputed from the config), so printed perplexities
    are the same on every CPU code path. Changes ``model`` in place and returns it.
    Taught in 10_block_formats.
    """
    import types

    if not isinstance(model, nn.Module) or not hasattr(model, "config"):
        raise TypeError("model must be a transformers PreTrainedModel")
    model.double()
    cfg = model.config
    rope = getattr(cfg, "rope_parameters", None) or {}
    theta = float(rope.get("rope_theta", getattr(cfg, "rope_theta", 10000.0)))
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    for module in model.modules():
        name = type(module).__name__
        if name.endswith("RMSNorm") and hasattr(module, "variance_epsilon"):
            module.forward = types.MethodType(_rms_norm_float64, module)
        elif name.endswith("RotaryEmbedding") and hasattr(module, "inv_freq"):
            if rope.get("rope_type", "default") != "default":
                raise ValueError(f"float64_llama handles the default RoPE only, got {rope.get('rope_type')!r}")
            exponents = torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim
            module._inv_freq64 = 1.0 / theta**exponents
            module.forward = types.MethodType(_rotary_float64, module)
    return model


@contextlib.contextmanager
def quantized_kv_cache(
    model: nn.Module,
    key_bits: int | None = 4,
    value_bits: int | None = 4,
    *,
    key_axis: str = "channel",
    value_axis: str = "token",
    group_size: int | None = None,
) -> Iterator[nn.Module]:
    """Context manager: run a Hugging Face causal LM with its cached keys/values fake-quantized.

    Installs an attention function that passes the post-RoPE keys and the values (exactly what
    the cache stores) through :func:`fake_quantize_kv` before SDPA attention, so perplexity
    measures a quantized cache. ``None`` bits leave K or V in full precision. ``group_size``
    applies to both (tokens for ``"channel"``, ``head_dim`` values for ``"token"``).
    Taught in 10_block_formats.
    """
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    for name, b in (("key_bits", key_bits), ("value_bits", value_bits)):
        if b is not None:
            check_bits(b, 1, 16, name=name)
    check_choice(key_axis, "key_axis", _KV_AXES)
    check_choice(value_axis, "value_axis", _KV_AXES)
    if not hasattr(model, "config") or not hasattr(model.config, "_attn_implementation"):
        raise TypeError("model must be a transformers PreTrainedModel (it needs .config._attn_implementation)")

    def attention(module, query, key, value, attention_mask, **kwargs):
        if key_bits is not None:
            key = fake_quantize_kv(key, key_bits, key_axis, group_size if key_axis == "channel" else None)
        if value_bits is not None:
            value = fake_quantize_kv(value, value_bits, value_axis, group_size if value_axis == "channel" else None)
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)

    AttentionInterface.register("course_kv_quantized", attention)
    configs = [m.config for m in model.modules() if hasattr(m, "config") and hasattr(m.config, "_attn_implementation")]
    old = [c._attn_implementation for c in configs]
    try:
        for c in configs:
            c._attn_implementation = "course_kv_quantized"
        yield model
    finally:
        for c, o in zip(configs, old):
            c._attn_implementation = o
