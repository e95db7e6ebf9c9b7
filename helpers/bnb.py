"""bitsandbytes' quantizers rebuilt from scratch: blockwise 8-bit, LLM.int8(), NF4/FP4, double quantization.

Every function here is a vectorized reference of what ``bitsandbytes`` 0.50 computes, checked
against the library in ``tests/test_bnb.py``:

* blockwise absmax quantization onto a code table (the 256-entry *dynamic* code of 8-bit
  optimizers, or the 16-entry NF4/FP4 codes): ``q = nearest(code, x_block / absmax_block)`` —
  for the 8-bit code through bitsandbytes' CPU search (a 65,536-point grid and a lookup table),
  bit for bit, a last block shorter than the others included;
* LLM.int8(): row-wise (vector-wise) int8 activations, row-wise int8 weights (one scale per
  output feature), int32 accumulation, and the mixed-precision decomposition of activation
  columns that hold a value ``>= threshold``;
* 4-bit packing (two codes per byte, first element in the high nibble), double quantization of
  the absmax constants, exact bits-per-parameter accounting and memory measured from real
  storage (parameters, buffers and quantization state).

Taught in 07_bnb.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
from torch import nn

from helpers._validate import check_choice, check_finite_number, check_float_tensor, check_int, check_tensor
from helpers.dynamic import Float32Island
from helpers.kernels import int8_matmul
from helpers.measure import unique_storage_bytes
from helpers.nonuniform import pack_codes, unpack_codes

__all__ = [
    "layer_errors",
    "threshold_blocksize_view",
    "dynamic_code",
    "code_4bit",
    "check_blocksize",
    "check_blocksize_4bit",
    "lookup_table",
    "LUT_SIZE",
    "QUANT_DTYPES",
    "BLOCKSIZES_4BIT",
    "blockwise_quantize",
    "blockwise_dequantize",
    "int8_vectorwise_quantize",
    "outlier_columns",
    "llm_int8_linear",
    "llm_int8_matmul",
    "per_tensor_int8_linear",
    "Int8RefLinear",
    "pack_nibbles",
    "unpack_nibbles",
    "quantize_4bit",
    "dequantize_4bit",
    "DoubleQuant",
    "double_quantize",
    "double_dequantize",
    "bits_per_param_4bit",
    "storage_bytes",
    "optimizer_state_bytes",
    "Adam8bitRef",
    "torch_dynamic_int8",
    "check_absmax_int8_blockwise",
    "check_dq_bits",
]

INT8_MAX = 127
#: The input dtypes bitsandbytes' blockwise quantizers take.
QUANT_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
#: The block sizes bitsandbytes' 4-bit quantizer takes (its 8-bit one takes any size >= 1).
BLOCKSIZES_4BIT = (32, 64, 128, 256, 512, 1024, 2048, 4096)
#: 1/127**2 written as bitsandbytes writes it (``int8_mm_dequant``), so outputs agree to the last bit.
_INV_127_SQ = 6.200124e-05
#: 1/127 as bitsandbytes writes it (``int8_vectorwise_dequant``).
_INV_127 = 7.874015718698502e-3


# ----------------------------------------------------------------------------- code tables


def dynamic_code(signed: bool = True) -> torch.Tensor:
    """The 256-entry dynamic (tree) 8-bit code of bitsandbytes, sorted ascending, float32.

    Each exponent ``e = 0..6`` contributes ``2**e`` fraction values ``10**(e - 6) * m`` with
    ``m`` the midpoints of ``linspace(0.1, 1, 2**e + 1)`` (both signs when ``signed``), then
    ``0`` and ``1``: dense near zero, sparse near ±1 — a float format with a variable-length
    exponent. Equals ``bitsandbytes.functional.create_dynamic_map(signed)``.
    Taught in 07_bnb.
    """
    if not isinstance(signed, bool):
        raise TypeError(f"signed must be a bool, got {type(signed).__name__}")
    parts = []
    for e in range(7):  # seven exponents: a loop over groups of many values
        n = 2**e + 1 if signed else 2 ** (e + 1) + 1
        bounds = torch.linspace(0.1, 1, n, dtype=torch.float32)
        means = (bounds[:-1] + bounds[1:]) / 2.0
        parts.append(10 ** (e - 6) * means)
        if signed:
            parts.append(-(10 ** (e - 6)) * means)
    values = torch.cat([*parts, torch.tensor([0.0, 1.0])])
    if values.numel() < 256:  # unsigned code: pad with zeros like bitsandbytes
        values = torch.cat([values, torch.zeros(256 - values.numel())])
    return values.sort().values


def code_4bit(quant_type: str = "nf4") -> torch.Tensor:
    """The 16-entry bitsandbytes code for ``quant_type`` ``"nf4"`` or ``"fp4"`` in index order (float32).

    Index ``i`` (a 4-bit code) decodes to ``code[i]``. NF4 is sorted ascending (lesson 03 derives
    it from normal quantiles); bitsandbytes' FP4 is sign + 3 bits with its own exponent layout, so
    its index order is not sorted and its smallest magnitude is 1/192 (not e2m1's 1/12).
    Taught in 07_bnb (the tables themselves: 03_uniform_vs_nonuniform).
    """
    check_choice(quant_type, "quant_type", ("nf4", "fp4"))
    from bitsandbytes.functional import get_4bit_type

    return get_4bit_type(quant_type, device="cpu").float().clone()


def _check_input(x: Any, name: str = "x") -> torch.Tensor:
    """``x`` must be a float16, bfloat16 or float32 tensor: the dtypes bitsandbytes' quantizers take."""
    check_tensor(x, name, allow_empty=True)
    if x.dtype not in QUANT_DTYPES:
        raise TypeError(
            f"{name} must be a float16, bfloat16 or float32 tensor (bitsandbytes quantizes 16/32-bit floats), "
            f"got dtype {x.dtype}"
        )
    return x


def _check_code(code: Any) -> torch.Tensor:
    """A 256-entry float32 code table in ascending order (what bitsandbytes' CPU kernel reads)."""
    check_tensor(code, "code")
    if code.dtype != torch.float32:
        raise TypeError(f"code must be a float32 tensor (bitsandbytes reads it as float*), got dtype {code.dtype}")
    if code.ndim != 1 or code.numel() != 256:
        raise ValueError(f"code must be a 1-d table of 256 values (one per uint8 code), got shape {tuple(code.shape)}")
    if not bool(torch.isfinite(code).all()) or bool((code[1:] < code[:-1]).any()):
        raise ValueError("code must hold finite values in ascending order (as create_dynamic_map returns them)")
    return code.contiguous()


def check_blocksize(blocksize: Any, name: str = "blocksize") -> int:
    """Return ``blocksize`` if it is an integer >= 1: any block size bitsandbytes' 8-bit quantizer takes.

    A last block shorter than ``blocksize`` (when it does not divide the number of elements) is
    quantized with its own absmax, as bitsandbytes does.
    """
    return check_int(blocksize, name, lo=1)


def check_blocksize_4bit(blocksize: Any, name: str = "blocksize") -> int:
    """Return ``blocksize`` if it is one of the 4-bit block sizes bitsandbytes accepts (32, 64, ..., 4096)."""
    if isinstance(blocksize, bool) or not isinstance(blocksize, int):
        raise TypeError(f"{name} must be an int, one of {BLOCKSIZES_4BIT}; got {type(blocksize).__name__}")
    if blocksize not in BLOCKSIZES_4BIT:
        raise ValueError(f"{name} must be one of {BLOCKSIZES_4BIT} (bitsandbytes' 4-bit block sizes), got {blocksize}")
    return blocksize


def _num_blocks(n: int, blocksize: int) -> int:
    return -(-n // blocksize)


# ----------------------------------------------------------------------------- blockwise 8-bit

#: bitsandbytes' CPU kernel rounds each normalized value onto this many grid points across [-1, 1].
LUT_SIZE = 65536
_LUT_CACHE: dict[bytes, torch.Tensor] = {}
_CHUNK = 2**18  # values per step of the quantize loop: temporaries stay in cache


def lookup_table(code: torch.Tensor | None = None) -> torch.Tensor:
    """The table bitsandbytes' CPU kernel searches ``code`` with: ``LUT_SIZE`` uint8 code indices.

    Grid point ``i`` stands for the value ``g_i = -1 + 2 i / 65535`` (float32); its entry is the
    nearest code to ``g_i``, i.e. the number of midpoints ``(code[j] + code[j+1]) / 2`` below
    ``g_i`` (a value exactly on a midpoint keeps the lower code). Built once per code table.
    Taught in 07_bnb.
    """
    code = dynamic_code() if code is None else _check_code(code)
    key = code.numpy().tobytes()
    if key not in _LUT_CACHE:
        midpoints = 0.5 * (code[:-1] + code[1:])
        grid = -1.0 + (2.0 * torch.arange(LUT_SIZE, dtype=torch.float32)) / (LUT_SIZE - 1)
        _LUT_CACHE[key] = torch.searchsorted(midpoints, grid).to(torch.uint8)
    return _LUT_CACHE[key]


def _grid_index(scaled: torch.Tensor) -> torch.Tensor:
    """Grid point of each normalized value: ``trunc((s + 1) * 32767.5 + 0.5)`` in float32 (s in [-1, 1])."""
    return scaled.add_(1.0).mul_(0.5 * (LUT_SIZE - 1)).add_(0.5).to(torch.int32)


def _quantize_rows(rows: torch.Tensor, lut: torch.Tensor, q_out: torch.Tensor, absmax_out: torch.Tensor) -> None:
    """Quantize each row of ``rows`` (float32) as one block, every case bitsandbytes' kernel meets.

    NaN is left out of a block's absmax; a block whose absmax is 0 gets code 0 everywhere; a
    value whose scaled form is NaN (NaN itself, inf / inf, 0 times the infinite reciprocal of a
    subnormal absmax) gets code ``lut[0]`` — the kernel's float-to-int conversion of NaN.
    """
    mag = rows.abs()
    absmax = torch.where(mag.isnan(), 0.0, mag).amax(dim=1)
    scaled = (rows * absmax.reciprocal().unsqueeze(1)).clamp_(-1.0, 1.0)
    nan = scaled.isnan()
    idx = _grid_index(scaled.masked_fill_(nan, -1.0))
    q = lut[idx]
    q[absmax == 0] = 0
    q_out.copy_(q.view(q_out.shape))
    absmax_out.copy_(absmax)


def blockwise_quantize(
    x: torch.Tensor, code: torch.Tensor | None = None, blocksize: int = 4096
) -> tuple[torch.Tensor, torch.Tensor]:
    """Blockwise absmax quantization onto a 256-entry ``code``: ``(q, absmax)``, as bitsandbytes' CPU kernel.

    The flattened ``x`` is cut into blocks of ``blocksize`` (the last one may be shorter); each
    block is scaled by its own ``absmax = max|x_block|`` and each value becomes the index of its
    nearest code, ``q ≈ argmin_i |code[i] - x / absmax|`` (uint8, shape of ``x``). An outlier only
    inflates the scale of its own block. ``code`` defaults to ``dynamic_code()``.

    The search is bitsandbytes' (0.50, CPU): ``s = x * (1/absmax)`` is rounded onto a grid of
    ``LUT_SIZE`` points across [-1, 1] and the grid point's nearest code is read from
    ``lookup_table(code)``. Equal to ``bitsandbytes.functional.quantize_blockwise`` bit for bit,
    NaN and inf included (``tests/test_bnb.py``). Taught in 07_bnb.
    """
    _check_input(x)
    code = dynamic_code() if code is None else _check_code(code)
    blocksize = check_blocksize(blocksize)
    lut = lookup_table(code)
    flat = x.reshape(-1)
    n = flat.numel()
    full = n // blocksize
    q = torch.empty(n, dtype=torch.uint8)
    absmax = torch.empty(_num_blocks(n, blocksize), dtype=torch.float32)
    rows_per_step = max(1, _CHUNK // blocksize)
    body, q_body = flat[: full * blocksize].view(full, blocksize), q[: full * blocksize].view(full, blocksize)
    buf = torch.empty(min(rows_per_step, full) * blocksize, dtype=torch.float32)
    for r in range(0, full, rows_per_step):
        rows = body[r : r + rows_per_step].float()
        k = rows.shape[0]
        lo, hi = torch.aminmax(rows, dim=1)  # NaN propagates: such a block takes the careful path
        am = torch.maximum(hi, lo.neg(), out=absmax[r : r + k])
        inv = am.reciprocal()
        if not bool(((am > 0) & (inv < math.inf) & (am < math.inf)).all()):
            _quantize_rows(rows, lut, q_body[r : r + k], absmax[r : r + k])
            continue
        # the common case, one pass per step: |x * (1/absmax)| <= (1 + 2**-24)**2, so no clamp is needed
        scaled = torch.mul(rows, inv.unsqueeze(1), out=buf[: k * blocksize].view(k, blocksize))
        torch.index_select(lut, 0, _grid_index(scaled).view(-1), out=q_body[r : r + k].view(-1))
    if n > full * blocksize:  # the last, shorter block
        _quantize_rows(flat[full * blocksize :].float().unsqueeze(0), lut, q[full * blocksize :], absmax[full:])
    return q.view(x.shape), absmax


def blockwise_dequantize(
    q: torch.Tensor, absmax: torch.Tensor, code: torch.Tensor | None = None, blocksize: int = 4096
) -> torch.Tensor:
    """``x_hat = code[q] * absmax_block`` (float32, shape of ``q``): the inverse of ``blockwise_quantize``.

    Equal to ``bitsandbytes.functional.dequantize_blockwise`` (float32 output). Taught in 07_bnb.
    """
    check_tensor(q, "q", allow_empty=True)
    if q.dtype != torch.uint8:
        raise TypeError(f"q must be a uint8 tensor of code indices, got dtype {q.dtype}")
    code = dynamic_code() if code is None else _check_code(code)
    blocksize = check_blocksize(blocksize)
    return _dequantize_blocks(q, absmax, code, blocksize)


def _dequantize_blocks(q: torch.Tensor, absmax: Any, table: torch.Tensor, blocksize: int) -> torch.Tensor:
    """``table[q] * absmax_block`` over blocks of ``blocksize`` (the last may be shorter), float32."""
    check_tensor(absmax, "absmax", allow_empty=True)
    if absmax.dtype != torch.float32:
        raise TypeError(f"absmax must be a float32 tensor (one scale per block), got dtype {absmax.dtype}")
    n = q.numel()
    blocks = _num_blocks(n, blocksize)
    if absmax.numel() != blocks:
        raise ValueError(f"absmax must hold one value per block ({blocks}), got {absmax.numel()}")
    scale = absmax.reshape(-1).repeat_interleave(blocksize)[:n]
    return (table[q.reshape(-1).long()] * scale).reshape(q.shape)


# ----------------------------------------------------------------------------- LLM.int8()


def _check_threshold(threshold: Any) -> float:
    threshold = check_finite_number(threshold, "threshold")
    if threshold < 0:
        raise ValueError(f"threshold must be >= 0 (0 switches the outlier decomposition off), got {threshold}")
    return threshold


def outlier_columns(x: torch.Tensor, threshold: float = 6.0) -> torch.Tensor:
    """Indices of the feature columns of ``x`` (..., in_features) holding any ``|x| >= threshold``.

    Compared in float16, as bitsandbytes does (activations are cast to fp16 before quantization).
    ``threshold = 0`` returns no columns (no decomposition). Taught in 07_bnb.
    """
    check_float_tensor(x, "x")
    threshold = _check_threshold(threshold)
    if threshold == 0:
        return torch.empty(0, dtype=torch.long)
    a = x.reshape(-1, x.shape[-1]).to(torch.float16)
    return torch.nonzero((a.abs() >= threshold).any(dim=0)).flatten()


def int8_vectorwise_quantize(
    x: torch.Tensor, threshold: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Row-wise symmetric int8 of a 2-d ``x``: ``(q, row_absmax, outlier_cols)``.

    ``q = round(x_fp16 * 127 / row_absmax)`` per row. With ``threshold > 0`` the values
    ``|x| >= threshold`` are left out of each row's absmax and whole outlier columns are set to 0
    in ``q`` (they run in floating point instead). Mirrors ``bitsandbytes.functional.int8_vectorwise_quant``.
    Taught in 07_bnb.
    """
    check_float_tensor(x, "x")
    if x.ndim != 2:
        raise ValueError(f"x must be 2-d (rows, features), got shape {tuple(x.shape)}")
    threshold = _check_threshold(threshold)
    a = x.to(torch.float16)
    cols = torch.empty(0, dtype=torch.long)
    if threshold > 0:
        is_outlier = a.abs() >= threshold
        cols = torch.nonzero(is_outlier.any(dim=0)).flatten()
        a = a.masked_fill(is_outlier, 0)
    row_absmax = a.abs().amax(dim=1).float()
    q = torch.round(a * (127.0 / row_absmax.unsqueeze(1))).to(torch.int8)
    if threshold > 0 and x.shape[0] > 1:
        q[:, cols] = 0
    return q, row_absmax, cols


def llm_int8_linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    threshold: float = 6.0,
) -> torch.Tensor:
    """LLM.int8() linear layer ``y = x W^T + b`` in the dtype of ``x``.

    1. weights: int8 per output row, ``W_q = round(W * 127 / max_j |W_ij|)``;
    2. activations: int8 per row (token), outlier columns (any ``|x| >= threshold``) removed;
    3. ``y = (x_q W_q^T)_int32 * s_x s_w / 127^2`` — integer accumulate, one float rescale;
    4. outlier columns: ``y += x[:, cols] @ W_hat[:, cols]^T`` in float, with the dequantized
       int8 weights (as ``Linear8bitLt(has_fp16_weights=False)`` does).

    ``threshold = 0`` is plain vector-wise int8. Matches ``bnb.nn.Linear8bitLt`` in eval mode.
    Taught in 07_bnb.
    """
    check_float_tensor(x, "x")
    check_float_tensor(weight, "weight")
    if weight.ndim != 2 or x.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"weight must be 2-d (out_features, in_features={x.shape[-1]}), got shape {tuple(weight.shape)}"
        )
    if bias is not None:
        check_float_tensor(bias, "bias")
        if bias.shape != (weight.shape[0],):
            raise ValueError(f"bias must have shape ({weight.shape[0]},), got {tuple(bias.shape)}")
    threshold = _check_threshold(threshold)
    w_q, w_absmax, _ = int8_vectorwise_quantize(weight)
    return llm_int8_matmul(x, w_q, w_absmax, bias, threshold)


def llm_int8_matmul(
    x: torch.Tensor,
    w_q: torch.Tensor,
    w_absmax: torch.Tensor,
    bias: torch.Tensor | None = None,
    threshold: float = 6.0,
) -> torch.Tensor:
    """Steps 2-4 of ``llm_int8_linear`` with the weights already quantized (as a deployed layer holds them).

    ``w_q``/``w_absmax`` come from ``int8_vectorwise_quantize(weight)`` (int8 codes, one absmax
    per output row) — what ``Linear8bitLt`` stores as ``weight`` and ``SCB``.
    Taught in 07_bnb.
    """
    check_float_tensor(x, "x")
    check_tensor(w_q, "w_q")
    if w_q.dtype != torch.int8 or w_q.ndim != 2 or x.shape[-1] != w_q.shape[1]:
        raise ValueError(
            f"w_q must be a 2-d int8 tensor (out_features, in_features={x.shape[-1]}), "
            f"got dtype {w_q.dtype} and shape {tuple(w_q.shape)}"
        )
    check_float_tensor(w_absmax, "w_absmax")
    if w_absmax.shape != (w_q.shape[0],):
        raise ValueError(f"w_absmax must have shape ({w_q.shape[0]},), got {tuple(w_absmax.shape)}")
    if bias is not None:
        check_float_tensor(bias, "bias")
        if bias.shape != (w_q.shape[0],):
            raise ValueError(f"bias must have shape ({w_q.shape[0]},), got {tuple(bias.shape)}")
    threshold = _check_threshold(threshold)
    a = x.reshape(-1, x.shape[-1])
    x_q, x_absmax, cols = int8_vectorwise_quantize(a, threshold)
    acc = int8_matmul(x_q, w_q.t())
    y = acc * (x_absmax.unsqueeze(1) * w_absmax.float().unsqueeze(0)) * _INV_127_SQ
    if bias is not None:
        y = y + bias.float()
    y = y.to(x.dtype)
    if cols.numel():
        w_hat = (w_q[:, cols] * w_absmax.float().unsqueeze(1) * _INV_127).to(x.dtype)
        y = y.addmm(a[:, cols], w_hat.t())
    return y.reshape(*x.shape[:-1], w_q.shape[0])


def per_tensor_int8_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Naive symmetric int8 with ONE scale for all of ``x`` and one for all of ``W`` (the baseline LLM.int8 beats).

    ``y = (x_q W_q^T)_int32 * (max|x| / 127) (max|W| / 127) + b``: one outlier feature in ``x``
    sets the step for every token and feature. Taught in 07_bnb.
    """
    check_float_tensor(x, "x")
    check_float_tensor(weight, "weight")
    if weight.ndim != 2 or x.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"weight must be 2-d (out_features, in_features={x.shape[-1]}), got shape {tuple(weight.shape)}"
        )
    a = x.reshape(-1, x.shape[-1]).float()
    s_x = a.abs().max().clamp(min=1e-12) / INT8_MAX
    s_w = weight.abs().max().float().clamp(min=1e-12) / INT8_MAX
    x_q = torch.round(a / s_x).to(torch.int8)
    w_q = torch.round(weight.float() / s_w).to(torch.int8)
    y = int8_matmul(x_q, w_q.t()) * (s_x * s_w)
    if bias is not None:
        y = y + bias.float()
    return y.to(x.dtype).reshape(*x.shape[:-1], weight.shape[0])


class Int8RefLinear(nn.Module):
    """Drop-in ``nn.Linear`` replacement running a from-scratch int8 scheme (for swapping into MiniLM).

    ``scheme``: ``"per_tensor"`` (``per_tensor_int8_linear``), ``"vectorwise"`` (LLM.int8 with
    threshold 0) or ``"llm_int8"`` (with ``threshold``). ``last_outlier_fraction`` records the
    fraction of input columns sent to the float path by the latest call. Taught in 07_bnb.
    """

    def __init__(self, linear: nn.Linear, scheme: str = "llm_int8", threshold: float = 6.0) -> None:
        super().__init__()
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"linear must be an nn.Linear, got {type(linear).__name__}")
        self.scheme = check_choice(scheme, "scheme", ("per_tensor", "vectorwise", "llm_int8"))
        self.threshold = _check_threshold(threshold) if scheme == "llm_int8" else 0.0
        self.weight = nn.Parameter(linear.weight.detach().clone(), requires_grad=False)
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone(), requires_grad=False)
        self.last_outlier_fraction = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scheme == "per_tensor":
            return per_tensor_int8_linear(x, self.weight, self.bias)
        cols = outlier_columns(x, self.threshold)
        self.last_outlier_fraction = cols.numel() / x.shape[-1]
        return llm_int8_linear(x, self.weight, self.bias, self.threshold)


# ----------------------------------------------------------------------------- 4-bit


def pack_nibbles(q: torch.Tensor) -> torch.Tensor:
    """Two 4-bit codes per byte, the first in the high nibble: ``byte = q[2i] << 4 | q[2i+1]`` (uint8, flat).

    An odd count is padded with a zero code. The course's one packer, ``helpers.nonuniform.pack_codes``
    at 4 bits (the same order). Taught in 07_bnb.
    """
    check_tensor(q, "q")
    if q.dtype != torch.uint8:
        raise TypeError(f"q must be a uint8 tensor of 4-bit codes, got dtype {q.dtype}")
    if q.numel() and int(q.max()) > 15:
        raise ValueError(f"q must hold 4-bit codes 0..15, got a maximum of {int(q.max())}")
    return pack_codes(q, 4)


def unpack_nibbles(packed: torch.Tensor, n: int | None = None) -> torch.Tensor:
    """The 4-bit codes of ``packed`` in order (high nibble first), the first ``n`` of them (uint8).

    ``helpers.nonuniform.unpack_codes`` at 4 bits. Taught in 07_bnb.
    """
    check_tensor(packed, "packed")
    if packed.dtype != torch.uint8:
        raise TypeError(f"packed must be a uint8 tensor, got dtype {packed.dtype}")
    if n is None and packed.numel() == 0:
        return packed.new_zeros(0)
    return unpack_codes(packed, 4, 2 * packed.numel() if n is None else n)


def _bounds_4bit(quant_type: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Midpoints between the sorted 4-bit code values, and the index of each sorted value in the table."""
    code = code_4bit(quant_type)
    order = torch.argsort(code, stable=True)
    sorted_code = code[order]
    return (sorted_code[:-1] + sorted_code[1:]) / 2, order


def quantize_4bit(x: torch.Tensor, blocksize: int = 64, quant_type: str = "nf4") -> tuple[torch.Tensor, torch.Tensor]:
    """Blockwise 4-bit NF4/FP4: ``(packed, absmax)`` with ``packed`` uint8 of shape ``(ceil(numel/2), 1)``.

    Each block of ``blocksize`` values (the last may be shorter) is scaled by its absmax and each
    value becomes the index of its nearest code, ``q = argmin_i |code[i] - x / absmax|`` (a value
    exactly between two codes takes the lower one); two codes per byte (``pack_nibbles``), an odd
    count padded with the code of 0.0. Full blocks are scaled as ``x * (1/absmax)``, the shorter
    last block as ``x / absmax``, an all-zero block by ``absmax`` clamped to 1e-38 (the last block
    also stores that clamped value) — bitsandbytes 0.50's CPU arithmetic, so that the result is
    ``bitsandbytes.functional.quantize_4bit(..., compress_statistics=False)`` bit for bit.
    Taught in 07_bnb.
    """
    _check_input(x)
    check_choice(quant_type, "quant_type", ("nf4", "fp4"))
    blocksize = check_blocksize_4bit(blocksize)
    bounds, order = _bounds_4bit(quant_type)
    flat = x.reshape(-1).float()
    n = flat.numel()
    full = n // blocksize
    blocks = flat[: full * blocksize].view(full, blocksize)
    absmax = blocks.abs().amax(dim=1)
    scaled = (blocks * (1.0 / absmax.clamp(min=1e-38)).unsqueeze(1)).clamp_(-1.0, 1.0).reshape(-1)
    if n > full * blocksize:
        tail = flat[full * blocksize :]
        tail_absmax = tail.abs().amax().clamp(min=1e-38)
        absmax = torch.cat([absmax, tail_absmax.unsqueeze(0)])
        scaled = torch.cat([scaled, (tail / tail_absmax).clamp_(-1.0, 1.0)])
    if n % 2:
        scaled = torch.cat([scaled, scaled.new_zeros(1)])
    q = order[torch.bucketize(scaled, bounds)].to(torch.uint8)
    packed = pack_nibbles(q) if n else q
    return packed.unsqueeze(1), absmax


def dequantize_4bit(
    packed: torch.Tensor,
    absmax: torch.Tensor,
    shape: tuple[int, ...] | torch.Size,
    blocksize: int = 64,
    quant_type: str = "nf4",
) -> torch.Tensor:
    """``x_hat = code[q] * absmax_block`` reshaped to ``shape`` (float32): the inverse of ``quantize_4bit``.

    Taught in 07_bnb.
    """
    check_choice(quant_type, "quant_type", ("nf4", "fp4"))
    shape = tuple(int(s) for s in shape)
    n = math.prod(shape)
    if n < 1:
        raise ValueError(f"shape must describe a non-empty tensor, got {shape}")
    blocksize = check_blocksize_4bit(blocksize)
    check_tensor(packed, "packed")
    if packed.numel() != (n + 1) // 2:
        raise ValueError(
            f"packed must hold (numel + 1) // 2 = {(n + 1) // 2} bytes for shape {shape}, got {packed.numel()}"
        )
    q = unpack_nibbles(packed.reshape(-1), n)
    return _dequantize_blocks(q, absmax, code_4bit(quant_type), blocksize).reshape(shape)


class DoubleQuant(NamedTuple):
    """Double-quantized absmax constants: 8-bit codes, their own absmax (one per ``blocksize2``), the mean offset."""

    q: torch.Tensor
    absmax2: torch.Tensor
    offset: torch.Tensor
    blocksize2: int


def double_quantize(absmax: torch.Tensor, blocksize2: int = 256) -> DoubleQuant:
    """Quantize the per-block ``absmax`` constants themselves (QLoRA's double quantization).

    ``offset = mean(absmax)``; ``q = blockwise_quantize(absmax - offset, dynamic_code(), blocksize2)``:
    32 bits per block become 8, plus 32 bits per ``blocksize2`` blocks (the last group may be shorter).
    Taught in 07_bnb.
    """
    check_float_tensor(absmax, "absmax")
    if absmax.ndim != 1:
        raise ValueError(f"absmax must be 1-d (one value per block), got shape {tuple(absmax.shape)}")
    blocksize2 = check_blocksize(blocksize2, name="blocksize2")
    offset = absmax.float().mean()
    q, absmax2 = blockwise_quantize(absmax.float() - offset, dynamic_code(), blocksize2)
    return DoubleQuant(q, absmax2, offset, blocksize2)


def double_dequantize(dq: DoubleQuant) -> torch.Tensor:
    """The absmax constants recovered from a ``DoubleQuant``: ``code[q] * absmax2 + offset`` (float32).

    Taught in 07_bnb.
    """
    if not isinstance(dq, DoubleQuant):
        raise TypeError(f"dq must be a DoubleQuant, got {type(dq).__name__}")
    return blockwise_dequantize(dq.q, dq.absmax2, dynamic_code(), dq.blocksize2) + dq.offset


def bits_per_param_4bit(
    numel: int, blocksize: int = 64, double_quant: bool = False, blocksize2: int = 256, tables: bool = False
) -> float:
    """Exact storage of a 4-bit tensor in bits per parameter.

    With ``blocks = ceil(numel/blocksize)``: ``(4 numel + 32 blocks) / numel`` without double
    quantization; with it ``(4 numel + 8 blocks + 32 ceil(blocks/blocksize2) + 32) / numel``
    (8-bit constants, their float32 absmax, the float32 offset). An odd ``numel`` stores one more
    nibble (the packed bytes are ``ceil(numel/2)``). ``tables=True`` adds the code tables a layer
    stores (16 float32 for NF4/FP4, plus 256 float32 for the dynamic code with double quantization).
    Taught in 07_bnb.
    """
    numel = check_int(numel, "numel", lo=1)
    blocksize = check_blocksize_4bit(blocksize)
    blocksize2 = check_blocksize(blocksize2, name="blocksize2")
    if not isinstance(double_quant, bool) or not isinstance(tables, bool):
        raise TypeError("double_quant and tables must be bools")
    blocks = _num_blocks(numel, blocksize)
    bits = 8 * ((numel + 1) // 2) + (16 * 32 if tables else 0)
    if double_quant:
        bits += 8 * blocks + 32 * _num_blocks(blocks, blocksize2) + 32 + (256 * 32 if tables else 0)
    else:
        bits += 32 * blocks
    return bits / numel


# ----------------------------------------------------------------------------- memory


def _quant_state_tensors(qs: Any) -> list[torch.Tensor]:
    out = []
    for name in ("absmax", "code", "offset"):
        t = getattr(qs, name, None)
        if isinstance(t, torch.Tensor):
            out.append(t)
    state2 = getattr(qs, "state2", None)
    if state2 is not None and getattr(qs, "nested", False):
        out.extend(_quant_state_tensors(state2))
    return out


def storage_bytes(model: nn.Module, *, include_tables: bool = True) -> int:
    """Bytes actually held by ``model``: every parameter and buffer plus bitsandbytes' quantization state.

    Counts each tensor's real storage (packed 4-bit as packed bytes, int8 as 1 byte), each storage
    once, plus ``Params4bit.quant_state`` (absmax, nested absmax, offset, code tables) and
    ``Linear8bitLt``'s row scales ``SCB`` — the tensors ``numel()``-based counts miss.
    ``include_tables=False`` leaves out the code tables (per-layer constants of 16 or 256 floats).
    Taught in 07_bnb.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    tensors: list[torch.Tensor] = list(model.parameters()) + list(model.buffers())
    for module in model.modules():
        weight = getattr(module, "weight", None)
        qs = getattr(weight, "quant_state", None)
        if qs is not None:
            extra = _quant_state_tensors(qs)
            if not include_tables:
                extra = [t for t in extra if t is not getattr(qs, "code", None)]
                state2 = getattr(qs, "state2", None)
                if state2 is not None:
                    extra = [t for t in extra if t is not getattr(state2, "code", None)]
            tensors.extend(extra)
        state = getattr(module, "state", None)
        for holder in (weight, state):
            for name in ("CB", "SCB"):
                t = getattr(holder, name, None)
                if isinstance(t, torch.Tensor):
                    tensors.append(t)
    return unique_storage_bytes(tensors)


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of every tensor in ``optimizer.state`` (moments, 8-bit codes, absmax, shared code tables once).

    Taught in 07_bnb.
    """
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
    return unique_storage_bytes(
        value for state in optimizer.state.values() for value in state.values() if isinstance(value, torch.Tensor)
    )


# ----------------------------------------------------------------------------- 8-bit Adam


class Adam8bitRef(torch.optim.Optimizer):
    """Blockwise 8-bit Adam from scratch: the algorithm of ``bnb.optim.Adam8bit``, with its arithmetic in the parameters' dtype.

    For a tensor of at least ``min_8bit_size`` elements both moments live as uint8 codes with one
    absmax per block of ``blocksize``: the first moment on the signed dynamic code, the second on
    the unsigned one (``dynamic_code``). Each step dequantizes them, takes the Adam step

        ``m = b1 m + (1 - b1) g``, ``v = b2 v + (1 - b2) g^2``,
        ``p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)``

    and quantizes them again (``blockwise_quantize``: bitsandbytes' CPU code search). Smaller tensors
    keep two plain moments. bitsandbytes' CPU step does the same in float32; here the update
    runs in the parameters' dtype, so with float64 parameters a training run is the same on every
    CPU — the only rounding that matters is the 8-bit code's. Taught in 07_bnb.
    """

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        min_8bit_size: int = 4096,
        blocksize: int = 256,
    ) -> None:
        lr = check_finite_number(lr, "lr")
        eps = check_finite_number(eps, "eps")
        if lr <= 0 or eps <= 0:
            raise ValueError(f"lr and eps must be > 0, got {lr} and {eps}")
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        for b in betas:
            b = check_finite_number(b, "beta")
            if not 0 <= b < 1:
                raise ValueError(f"betas must lie in [0, 1), got {betas}")
        min_8bit_size = check_int(min_8bit_size, "min_8bit_size", lo=1)
        blocksize = check_blocksize(blocksize)
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps})
        self.min_8bit_size = min_8bit_size
        self.blocksize = blocksize

    def _quantize(self, x: torch.Tensor, code: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # bitsandbytes keeps its moments in float32; a short last block gets its own absmax
        return blockwise_quantize(x.reshape(-1).float(), code, self.blocksize)

    def _dequantize(
        self, q: torch.Tensor, absmax: torch.Tensor, code: torch.Tensor, like: torch.Tensor
    ) -> torch.Tensor:
        return blockwise_dequantize(q, absmax, code, self.blocksize).reshape(like.shape).to(like.dtype)

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        signed, unsigned = dynamic_code(True), dynamic_code(False)
        for group in self.param_groups:
            lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    if p.numel() >= self.min_8bit_size:
                        zeros = torch.zeros_like(p)
                        state["state1"], state["absmax1"] = self._quantize(zeros, signed)
                        state["state2"], state["absmax2"] = self._quantize(zeros, unsigned)
                    else:
                        state["exp_avg"], state["exp_avg_sq"] = torch.zeros_like(p), torch.zeros_like(p)
                state["step"] += 1
                t = state["step"]
                eight_bit = "state1" in state
                if eight_bit:
                    m = self._dequantize(state["state1"], state["absmax1"], signed, p)
                    v = self._dequantize(state["state2"], state["absmax2"], unsigned, p)
                else:
                    m, v = state["exp_avg"], state["exp_avg_sq"]
                m.mul_(beta1).add_((1 - beta1) * g)
                v.mul_(beta2).add_((1 - beta2) * g * g)
                denom = v.sqrt() / math.sqrt(1 - beta2**t) + eps
                p.sub_(lr / (1 - beta1**t) * m / denom)
                if eight_bit:
                    state["state1"], state["absmax1"] = self._quantize(m, signed)
                    state["state2"], state["absmax2"] = self._quantize(v, unsigned)
        return loss


# ----------------------------------------------------------------------------- swapping layers


def swap_linears(model: nn.Module, factory: Any) -> nn.Module:
    """A deep copy of ``model`` with every ``nn.Linear`` replaced by ``factory(linear)``.

    The new modules keep whatever mode ``factory`` leaves them in (a freshly built module is in
    training mode — call ``.eval()`` on the result). Taught in 07_bnb.
    """
    import copy

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not callable(factory):
        raise TypeError(f"factory must be callable, got {type(factory).__name__}")
    new = copy.deepcopy(model)
    targets = [(name, m) for name, m in new.named_modules() if type(m) is nn.Linear]
    for name, linear in targets:
        parent_name, _, child = name.rpartition(".")
        parent = new.get_submodule(parent_name) if parent_name else new
        setattr(parent, child, factory(linear))
    return new


def torch_dynamic_int8(linear: nn.Linear) -> nn.Module:
    """torch.ao's dynamic int8 Linear for ``linear`` — the module ``quantize_dynamic(..., dtype=torch.qint8)`` inserts.

    Per-tensor uint8 activations (quantized at run time), per-tensor int8 weights, on the current
    ``torch.backends.quantized.engine``; built from the float32 cast of ``linear`` and wrapped in
    ``Float32Island`` so that it also runs inside a float64 model. Taught in 07_bnb.
    """
    if not isinstance(linear, nn.Linear):
        raise TypeError(f"linear must be an nn.Linear, got {type(linear).__name__}")
    lin32 = nn.Linear(linear.in_features, linear.out_features, linear.bias is not None)
    lin32.load_state_dict({k: v.float() for k, v in linear.state_dict().items()})
    lin32.qconfig = torch.ao.quantization.default_dynamic_qconfig
    return Float32Island(torch.ao.nn.quantized.dynamic.Linear.from_float(lin32))


def bnb_int8(linear: nn.Linear, threshold: float = 6.0) -> nn.Module:
    """``bnb.nn.Linear8bitLt(has_fp16_weights=False, threshold)`` holding ``linear``'s weights, quantized (training mode).

    A float64 ``linear`` works too: the layer stores float32 parameters (quantized to int8 from
    their float16 cast), and in eval mode a float64 input is cast to float16 for quantization,
    accumulated in int32 and returned in float64, its outlier columns computed in float64 —
    exactly what ``llm_int8_linear`` computes for the same input. Taught in 07_bnb.
    """
    if not isinstance(linear, nn.Linear):
        raise TypeError(f"linear must be an nn.Linear, got {type(linear).__name__}")
    threshold = _check_threshold(threshold)
    import bitsandbytes as bnb

    m = bnb.nn.Linear8bitLt(
        linear.in_features, linear.out_features, linear.bias is not None, has_fp16_weights=False, threshold=threshold
    )
    m.load_state_dict(linear.state_dict())
    return m.to("cpu")


def bnb_4bit(
    linear: nn.Linear,
    quant_type: str = "nf4",
    blocksize: int = 64,
    double_quant: bool = True,
    compute_dtype: torch.dtype | None = None,
    portable: bool = True,
) -> nn.Module:
    """``bnb.nn.Linear4bit`` holding ``linear``'s weights quantized to ``quant_type`` at ``blocksize``.

    ``portable=True`` switches off the AVX512-BF16 CPU path that repacks the weight at the
    first eval call (and undoes double quantization), so every machine runs the same
    dequantize-then-matmul path.

    A float64 ``linear`` (from a model whose float parts run in float64) is quantized from its
    float32 cast and computes in float32 unless ``compute_dtype`` says otherwise: bitsandbytes
    quantizes 16/32-bit floats only, and its CPU 4-bit dequantization returns wrong numbers for a
    float64 compute dtype (0.50). The layer takes float64 inputs and returns float64 outputs.
    Taught in 07_bnb.
    """
    if not isinstance(linear, nn.Linear):
        raise TypeError(f"linear must be an nn.Linear, got {type(linear).__name__}")
    check_choice(quant_type, "quant_type", ("nf4", "fp4"))
    blocksize = check_blocksize_4bit(blocksize)
    if compute_dtype == torch.float64:
        raise ValueError("compute_dtype float64 is not supported by bitsandbytes' 4-bit kernels; use float32")
    weight = linear.weight.detach()
    if weight.dtype == torch.float64:
        weight = weight.float()
        compute_dtype = compute_dtype or torch.float32
    import bitsandbytes as bnb

    m = bnb.nn.Linear4bit(
        linear.in_features,
        linear.out_features,
        linear.bias is not None,
        compute_dtype=compute_dtype,
        compress_statistics=double_quant,
        quant_type=quant_type,
    )
    m.weight = bnb.nn.Params4bit(
        weight.clone(),
        requires_grad=False,
        blocksize=blocksize,
        compress_statistics=double_quant,
        quant_type=quant_type,
        module=m,
    )
    if linear.bias is not None:
        m.bias = nn.Parameter(linear.bias.detach().to(weight.dtype).clone(), requires_grad=False)
    m = m.to("cpu")
    if portable:
        m.support_avx512bf16_for_cpu = False
    return m


def layer_errors(
    x: torch.Tensor, weight: torch.Tensor, threshold: float, blocksize: int
) -> tuple[float, float, float, float]:
    """``(rel_err_llm_int8, outlier_fraction, mse_nf4, mse_absmax8)`` of one layer at the given settings.

    ``rel_err = ||llm_int8_linear(x, W) - x W^T|| / ||x W^T||``; ``outlier_fraction`` is the share
    of input columns LLM.int8 keeps in float; the MSEs are of ``W`` quantized blockwise with
    ``blocksize`` (NF4 and the 8-bit dynamic code). Taught in 07_bnb.
    """
    check_float_tensor(x, "x")
    check_float_tensor(weight, "weight")
    y = x @ weight.t()
    y_q = llm_int8_linear(x, weight, None, threshold)
    rel = float((y_q - y).norm() / y.norm())
    frac = outlier_columns(x, threshold).numel() / x.shape[-1]
    w32 = weight.detach().float()  # bitsandbytes quantizes 16/32-bit floats; errors are measured in weight's dtype
    packed, absmax = quantize_4bit(w32, blocksize, "nf4")
    mse4 = float((dequantize_4bit(packed, absmax, weight.shape, blocksize, "nf4") - weight).pow(2).mean())
    q8, a8 = blockwise_quantize(w32, blocksize=blocksize)
    mse8 = float((blockwise_dequantize(q8, a8, blocksize=blocksize) - weight).pow(2).mean())
    return rel, frac, mse4, mse8


def _block_absmax(w: torch.Tensor, blocksize: int) -> torch.Tensor:
    """max |w| of each block of ``blocksize`` of the flattened ``w`` (the last block may be shorter)."""
    flat = w.reshape(-1).abs()
    pad = (-flat.numel()) % blocksize
    return torch.cat([flat, flat.new_zeros(pad)]).reshape(-1, blocksize).amax(1)


def threshold_blocksize_view(
    x: torch.Tensor, weight: torch.Tensor, threshold: float = 6.0, blocksize: int = 64, name: str = "layer"
) -> dict[str, object]:
    """What lesson 07's widget shows for one layer: input feature absmax vs the threshold, weight blocks' absmax.

    Returns ``col_absmax`` (max |x| per input feature), ``outliers`` (the features LLM.int8 keeps
    in float: absmax >= threshold, none at threshold 0), ``block_absmax`` (one per block of
    ``blocksize`` weights), the :func:`layer_errors` numbers (``rel_err``, ``float_fraction``,
    ``mse_nf4``, ``mse_8bit``), ``threshold``, ``blocksize``, ``name`` and ``readout``. Drawn by
    ``helpers.plotting.bnb.threshold_blocksize_figure``. Taught in 07_bnb.
    """
    check_float_tensor(x, "x")
    check_float_tensor(weight, "weight")
    if not isinstance(name, str):
        raise TypeError(f"name must be a string, got {type(name).__name__}")
    a = x.reshape(-1, x.shape[-1]).float()
    rel, frac, mse4, mse8 = layer_errors(a, weight.float(), threshold, blocksize)
    col = a.abs().amax(0)
    out = col >= threshold if threshold > 0 else torch.zeros_like(col, dtype=torch.bool)
    readout = (
        f"{name}: LLM.int8 relative output error {rel:.3e}, float columns {100 * frac:.2f}% | "
        f"weights at block size {blocksize}: MSE NF4 {mse4:.3e}, 8-bit dynamic {mse8:.3e}"
    )
    return {
        "col_absmax": col,
        "outliers": out,
        "block_absmax": _block_absmax(weight.detach().float(), blocksize),
        "rel_err": rel,
        "float_fraction": frac,
        "mse_nf4": mse4,
        "mse_8bit": mse8,
        "threshold": float(threshold),
        "blocksize": blocksize,
        "name": name,
        "readout": readout,
    }


# ----------------------------------------------------------------------------- exercises


def check_absmax_int8_blockwise(fn: Any, quiet: bool = False) -> bool:
    """Grade ``fn(x, blocksize) -> x_hat``: symmetric int8 with one absmax per block, dequantized.

    The answers come from torch's own per-channel fake quantizer (one channel per block, scale
    ``absmax/127``, codes -127..127). The cases catch one absmax for the whole tensor, truncating
    instead of rounding, and an absmax taken without ``abs`` (a block whose largest magnitude is
    negative). Taught in 07_bnb.
    """
    from helpers.exercises import close, grade

    def want(x: torch.Tensor, blocksize: int) -> torch.Tensor:
        blocks = x.reshape(-1, blocksize)
        scale = blocks.abs().amax(1) / 127
        zero = torch.zeros(blocks.shape[0], dtype=torch.int32)
        return torch.fake_quantize_per_channel_affine(blocks, scale, zero, 0, -127, 127).reshape(x.shape)

    g = torch.Generator().manual_seed(7)
    # codes with fractions below 0.5 (rounding and truncating agree), all positive: only one absmax for all blocks fails
    fractions = torch.tensor([127.0, 10.2, 50.2, 3.2, 100.2, 0.2, 7.2, 20.2]) / 127
    per_block = torch.cat([0.01 * fractions, 10.0 * fractions])
    rounding = torch.tensor([127.0, 10.7, 3.6, 50.8, 0.7, 99.6, 20.9, 64.7])  # absmax 127: each value is its code
    sign = torch.tensor([-127.0, 10.2, -3.2, 50.2, -0.2, 99.2, -20.2, 1.2])  # the largest magnitude is negative
    big = torch.randn(64, 64, generator=g)
    cases = [
        ((per_block, 8), want(per_block, 8), "per block"),
        ((rounding, 8), want(rounding, 8), "rounding"),
        ((sign, 8), want(sign, 8), "sign"),
        ((big, 64), want(big, 64), "random"),
    ]
    return grade(
        "my_absmax_int8_blockwise",
        fn,
        cases,
        hint="reshape to (-1, blocksize), absmax = max |x| per row, round(127 x / absmax) * absmax / 127",
        hints={
            "per block": "one absmax per block of blocksize values, not one for the whole tensor",
            "rounding": "round to the nearest code (torch.round), do not truncate",
            "sign": "the absmax is the largest magnitude, max |x| (abs first), and the codes keep their sign",
        },
        compare=close(rtol=1e-6, atol=1e-7),
        quiet=quiet,
    )


def check_dq_bits(fn: Any, quiet: bool = False) -> bool:
    """Grade ``fn(numel, blocksize) -> float``: bits per parameter of NF4 with double quantization.

    The answers come from :func:`bits_per_param_4bit` (``tests/test_bnb.py`` proves it equal to the
    bytes a real ``Linear4bit`` holds). The cases catch a missing float32 offset, missing second-level
    absmax, and rounding the block counts down instead of up. Taught in 07_bnb.
    """
    from helpers.exercises import close, grade

    sizes = [(4096 * 4096, 128, "large"), (384 * 1536, 64, "MiniLM"), (64 * 300, 64, "groups"), (65, 64, "short block")]
    cases = [((n, bs), bits_per_param_4bit(n, bs, double_quant=True), label) for n, bs, label in sizes]
    return grade(
        "my_dq_bits",
        fn,
        cases,
        hint="(4-bit codes + 8 bits per block + 32 bits per 256 blocks + a 32-bit offset) / numel",
        hints={
            "large": "count every part: 8-bit constants, their float32 absmax (one per 256), and the float32 offset",
            "groups": "300 blocks need 2 second-level absmax values: round the number of groups up",
            "short block": "a short last block still has its own constant, and 65 codes take 33 bytes: round up",
        },
        compare=close(rtol=1e-12, atol=0.0),
        quiet=quiet,
    )
