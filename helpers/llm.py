"""Weight quantization of a causal language model: RTN, GPTQ, AWQ, HQQ, and SmoothQuant W8A8.

Vocabulary (as everywhere in the course): ``w`` a weight matrix of shape ``(out_features,
in_features)``, ``x`` its input activations ``(tokens, in_features)``, ``q`` integer codes,
``scale``, ``zero_point``, ``bits``, ``w_hat`` the dequantized weight. Groups run along the
input dimension: each row is cut into contiguous groups of ``group_size`` columns, each group
with its own ``scale`` (and zero-point). ``group_size`` must divide ``in_features``.

Grids (one group ``g``, ``qmax = 2^bits - 1``):

* asymmetric, integer zero-point: ``scale = (max g - min g) / qmax``,
  ``zero_point = clamp(round(-min g / scale), 0, qmax)``, ``q = clamp(round(w / scale) + zero_point, 0, qmax)``, ``w_hat = (q - zero_point) · scale``;
* asymmetric, float zero-point (GGUF Q4_1's "float minimum" ``m = min g``):
  ``q = clamp(round((w - m) / scale), 0, qmax)``, ``w_hat = q · scale + m``;
* symmetric: ``scale = max|g| / (2^(bits-1) - 1)``, ``q = clamp(round(w / scale), -2^(bits-1), 2^(bits-1) - 1)``,
  ``w_hat = q · scale``.

Taught in 09_llm.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import nn

from helpers._validate import (
    check_bits,
    check_choice,
    check_finite_number,
    check_float_tensor,
    check_int,
    check_tensor,
)

__all__ = [
    "ZERO_POINTS",
    "METHODS",
    "LINEAR_NAMES",
    "allowed_group_sizes",
    "rtn_qparams",
    "rtn_quantize",
    "rtn_dequantize",
    "fake_quantize_rtn",
    "hessian",
    "gptq_quantize",
    "awq_search_scale",
    "hqq_quantize",
    "smoothquant_scales",
    "quantize_activations",
    "w8a8_linear",
    "W8A8Linear",
    "capture_inputs",
    "reconstruction_error",
    "decoder_layers",
    "smoothquant_model",
    "w8a8_model",
    "quantize_model",
    "activation_channel_max",
    "packed_bytes",
    "PackedLinear",
    "pack_model",
    "decode_tokens_per_second",
    "LAYER_VIEW_METHODS",
    "layer_view",
]

ZERO_POINTS = ("int", "float")
METHODS = ("rtn", "gptq", "awq", "hqq")
ACT_GRANULARITIES = ("tensor", "token")
# Linear layers of one Llama decoder layer, in execution order.
LINEAR_NAMES = (
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
)
# Linear layers that read the same input, and the op whose output that input is.
_INPUT_GROUPS = (
    (("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"), "input_layernorm"),
    (("self_attn.o_proj",), "self_attn.v_proj"),
    (("mlp.gate_proj", "mlp.up_proj"), "post_attention_layernorm"),
    (("mlp.down_proj",), "mlp.up_proj"),
)


# --------------------------------------------------------------------------- checks


def allowed_group_sizes(in_features: int) -> list[int]:
    """Group sizes that divide ``in_features`` (every group full), e.g. 576 → 1, 2, 3, …, 64, 72, …, 576.

    Taught in 09_llm.
    """
    check_int(in_features, "in_features", lo=1)
    return [g for g in range(1, in_features + 1) if in_features % g == 0]


def _check_weight(w: torch.Tensor, name: str = "w") -> torch.Tensor:
    check_float_tensor(w, name)
    if w.dim() != 2:
        raise ValueError(f"{name} must be 2-d (out_features, in_features), got shape {tuple(w.shape)}")
    return w


def _check_group_size(group_size: int | None, in_features: int) -> int:
    if group_size is None:
        return in_features
    check_int(group_size, "group_size", lo=1)
    if in_features % group_size:
        allowed = [g for g in allowed_group_sizes(in_features) if g >= 8]
        raise ValueError(
            f"group_size must divide in_features={in_features} (or be None for one group per row); "
            f"allowed values >= 8: {allowed}; got {group_size}"
        )
    return group_size


def _check_grid(bits: int, symmetric: bool, zero_point: str) -> None:
    check_bits(bits, lo=2, hi=8)
    if not isinstance(symmetric, bool):
        raise TypeError(f"symmetric must be True or False, got {symmetric!r}")
    check_choice(zero_point, "zero_point", ZERO_POINTS)


def _code_range(bits: int, symmetric: bool) -> tuple[int, int]:
    if symmetric:
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


# --------------------------------------------------------------------------- round-to-nearest


def rtn_qparams(
    w: torch.Tensor,
    bits: int = 4,
    group_size: int | None = 64,
    symmetric: bool = False,
    zero_point: str = "int",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-group ``(scale, zero_point)`` of shape ``(out_features, n_groups)`` from each group's min and max.

    Asymmetric: ``scale = (max - min) / (2^bits - 1)``; ``zero_point`` is ``clamp(round(-min/scale), 0, 2^bits-1)``
    for ``zero_point="int"`` and the float minimum ``min`` itself for ``"float"``. Symmetric:
    ``scale = max|w| / (2^(bits-1) - 1)``, zero-point 0. A constant group gets ``scale = 1``
    (asymmetric float: its minimum is then reproduced exactly). Taught in 09_llm.
    """
    _check_weight(w)
    _check_grid(bits, symmetric, zero_point)
    gs = _check_group_size(group_size, w.shape[1])
    g = w.reshape(w.shape[0], -1, gs)
    if symmetric:
        scale = g.abs().amax(-1) / (2 ** (bits - 1) - 1)
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        return scale, torch.zeros_like(scale)
    lo, hi = g.amin(-1), g.amax(-1)
    qmax = 2**bits - 1
    scale = (hi - lo) / qmax
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    if zero_point == "float":
        return scale, lo
    return scale, torch.clamp(torch.round(-lo / scale), 0, qmax)


def _expand(p: torch.Tensor, gs: int) -> torch.Tensor:
    """(rows, n_groups) → (rows, n_groups * gs) by repeating each group's value."""
    return p.repeat_interleave(gs, dim=-1)


def _quantize_codes(
    w: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, qmin: int, qmax: int, float_zero: bool
) -> torch.Tensor:
    """Elementwise codes with ``scale``/``zero`` already broadcast to ``w``."""
    if float_zero:
        return torch.clamp(torch.round((w - zero) / scale), qmin, qmax)
    return torch.clamp(torch.round(w / scale) + zero, qmin, qmax)


def _dequantize_codes(q: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, float_zero: bool) -> torch.Tensor:
    return q * scale + zero if float_zero else (q - zero) * scale


def rtn_quantize(
    w: torch.Tensor,
    bits: int = 4,
    group_size: int | None = 64,
    symmetric: bool = False,
    zero_point: str = "int",
    param_dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Round-to-nearest group-wise quantization: ``(q, scale, zero_point)``.

    ``q = clamp(round(w / scale) + zero_point, qmin, qmax)`` (int zero-point), or
    ``clamp(round((w - min) / scale), 0, qmax)`` (float zero-point = group minimum); ``q`` is an
    int8 tensor shaped like ``w``; ``scale``/``zero_point`` are ``(out_features, n_groups)``.
    ``param_dtype`` (e.g. ``torch.float16``, as GGUF stores them) rounds scale and zero-point
    after the codes are chosen, exactly as llama.cpp's encoders do. Taught in 09_llm.
    """
    scale, zero = rtn_qparams(w, bits, group_size, symmetric, zero_point)
    if param_dtype is not None and not (isinstance(param_dtype, torch.dtype) and param_dtype.is_floating_point):
        raise TypeError(f"param_dtype must be a floating-point torch.dtype or None, got {param_dtype!r}")
    gs = w.shape[1] // scale.shape[1]
    qmin, qmax = _code_range(bits, symmetric)
    q = _quantize_codes(w, _expand(scale, gs), _expand(zero, gs), qmin, qmax, zero_point == "float" and not symmetric)
    if param_dtype is not None:
        scale, zero = scale.to(param_dtype), zero.to(param_dtype)
    return q.to(torch.int8 if symmetric else torch.uint8), scale, zero


def rtn_dequantize(
    q: torch.Tensor,
    scale: torch.Tensor,
    zero_point: torch.Tensor,
    float_zero: bool = False,
) -> torch.Tensor:
    """``w_hat = (q - zero_point) · scale`` per group, or ``q · scale + zero_point`` when ``float_zero`` (float32).

    Taught in 09_llm.
    """
    check_tensor(q, "q")
    check_tensor(scale, "scale")
    check_tensor(zero_point, "zero_point")
    if q.dim() != 2 or scale.dim() != 2 or scale.shape != zero_point.shape or q.shape[0] != scale.shape[0]:
        raise ValueError(
            f"q must be (out, in) and scale/zero_point (out, n_groups), got {tuple(q.shape)}, "
            f"{tuple(scale.shape)}, {tuple(zero_point.shape)}"
        )
    if q.shape[1] % scale.shape[1]:
        raise ValueError(f"q's {q.shape[1]} columns are not a whole number of {scale.shape[1]} groups")
    gs = q.shape[1] // scale.shape[1]
    s = _expand(scale.float(), gs)
    z = _expand(zero_point.float(), gs)
    return _dequantize_codes(q.float(), s, z, float_zero)


def fake_quantize_rtn(
    w: torch.Tensor,
    bits: int = 4,
    group_size: int | None = 64,
    symmetric: bool = False,
    zero_point: str = "int",
    param_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Round-to-nearest ``w_hat = dequantize(quantize(w))`` on the group-wise grid (same shape and dtype as ``w``).

    Taught in 09_llm.
    """
    q, scale, zero = rtn_quantize(w, bits, group_size, symmetric, zero_point, param_dtype)
    return rtn_dequantize(q, scale, zero, zero_point == "float" and not symmetric).to(w.dtype)


# --------------------------------------------------------------------------- GPTQ


def hessian(x: torch.Tensor) -> torch.Tensor:
    """GPTQ's layer Hessian ``H = 2 XᵀX / n`` (float64) of the loss ``‖W Xᵀ − Ŵ Xᵀ‖²`` for inputs ``x`` (n, in).

    Taught in 09_llm.
    """
    check_float_tensor(x, "x")
    x = x.reshape(-1, x.shape[-1]).double()
    return 2.0 * (x.T @ x) / x.shape[0]


def gptq_quantize(
    w: torch.Tensor,
    h: torch.Tensor,
    bits: int = 4,
    group_size: int | None = 64,
    symmetric: bool = False,
    zero_point: str = "int",
    damp: float = 0.01,
    block_size: int = 128,
    act_order: bool = False,
) -> torch.Tensor:
    """GPTQ (Frantar et al. 2023): quantize ``w`` column by column, feeding each column's error forward.

        With ``U`` the upper Cholesky factor of ``(H + λI)⁻¹`` (``λ = damp · mean diag H``), column
        ``i`` is rounded to ``q_i`` on its group's grid, and the not-yet-quantized columns absorb
        its error: ``e = (w_i − q_i) / U_ii``, ``W[:, j] −= e · U_ij`` for ``j > i`` — the optimal
        brain surgeon update ``δw = −(w_i − q_i)/[H⁻¹]_ii · H⁻¹[i, :]`` with the Hessian of the
        remaining columns. Updates inside a block of ``block_size`` columns are applied at once;
        the rest of the matrix gets them lazily, in one matmul per block. A group's grid is fixed
        (min/max) when its first column is reached, from the already-updated weights (one group per
    row: from the original weights, up front). ``act_order``
        processes columns in decreasing ``diag H`` and then fixes every group's grid up front from
        the original weights (the "static groups" variant, so the grid layout stays that of RTN).
        Columns with ``H_ii = 0`` (never active) are set to zero's code. The arithmetic is float64.
        Returns ``w_hat`` (float, like ``w``). Taught in 09_llm.
    """
    _check_weight(w)
    _check_grid(bits, symmetric, zero_point)
    rows, cols = w.shape
    gs = _check_group_size(group_size, cols)
    check_float_tensor(h, "h")
    if h.shape != (cols, cols):
        raise ValueError(f"h must be ({cols}, {cols}) for w of shape {tuple(w.shape)}, got {tuple(h.shape)}")
    damp = check_finite_number(damp, "damp")
    if damp < 0:
        raise ValueError(f"damp must be >= 0, got {damp}")
    check_int(block_size, "block_size", lo=1)
    if not isinstance(act_order, bool):
        raise TypeError(f"act_order must be True or False, got {act_order!r}")
    float_zero = zero_point == "float" and not symmetric
    qmin, qmax = _code_range(bits, symmetric)

    W = w.detach().double().clone()
    H = h.detach().double().clone()
    dead = torch.diag(H) == 0
    H[dead, dead] = 1.0
    W[:, dead] = 0.0

    static = None  # per-column grid fixed up front (one group per row, or act-order)
    if act_order or gs == cols:
        s_all, z_all = rtn_qparams(W, bits, gs, symmetric, zero_point)
        static = (_expand(s_all, gs), _expand(z_all, gs))
    if act_order:
        perm = torch.argsort(torch.diag(H), descending=True, stable=True)
        W, H = W[:, perm], H[perm][:, perm]
        static = (static[0][:, perm], static[1][:, perm])
    else:
        perm = None

    H += damp * torch.mean(torch.diag(H)) * torch.eye(cols, dtype=H.dtype)
    U = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)

    Q = torch.zeros_like(W)
    if static is None:
        block_size = max(gs, block_size // gs * gs)  # blocks hold whole groups
    scale_col = zero_col = None
    for b0 in range(0, cols, block_size):
        b1 = min(b0 + block_size, cols)
        W1 = W[:, b0:b1].clone()
        E1 = torch.zeros_like(W1)
        U1 = U[b0:b1, b0:b1]
        for i in range(b1 - b0):
            c = b0 + i
            if static is not None:
                scale_col, zero_col = static[0][:, c], static[1][:, c]
            elif c % gs == 0:
                s, z = rtn_qparams(W1[:, i : i + gs], bits, None, symmetric, zero_point)
                scale_col, zero_col = s[:, 0], z[:, 0]
            wc = W1[:, i]
            qc = _dequantize_codes(
                _quantize_codes(wc, scale_col, zero_col, qmin, qmax, float_zero), scale_col, zero_col, float_zero
            )
            Q[:, c] = qc
            err = (wc - qc) / U1[i, i]
            W1[:, i:] -= err.unsqueeze(1) * U1[i, i:].unsqueeze(0)
            E1[:, i] = err
        W[:, b1:] -= E1 @ U[b0:b1, b1:]
    if perm is not None:
        Q = Q[:, torch.argsort(perm)]
    return Q.to(w.dtype)


# --------------------------------------------------------------------------- AWQ


def _output_error(ws: Sequence[torch.Tensor], w_hats: Sequence[torch.Tensor], gram: torch.Tensor) -> float:
    """Σ over linears of mean ‖x Wᵀ − x Ŵᵀ‖² per token, as ``Σ_ij (D G)_ij D_ij`` with ``G = xᵀx / n``, ``D = W − Ŵ``."""
    total = 0.0
    for w, w_hat in zip(ws, w_hats, strict=True):
        d = w - w_hat
        total += float(((d @ gram) * d).sum())
    return total


def awq_search_scale(
    ws: Sequence[torch.Tensor] | torch.Tensor,
    x: torch.Tensor,
    bits: int = 4,
    group_size: int | None = 64,
    symmetric: bool = False,
    zero_point: str = "int",
    n_grid: int = 20,
) -> tuple[torch.Tensor, float, list[float]]:
    """AWQ (Lin et al. 2024): per-input-channel scale ``s = mean|x|^α`` chosen by grid search over α.

    Salient input channels (large mean activation) are scaled up before rounding so that
    their weights lose less relative precision: ``Ŵ = Q(W · diag(s)) · diag(s)⁻¹``. ``s`` is
    normalised by ``sqrt(max s · min s)``; α runs over ``0, 1/n_grid, …, (n_grid−1)/n_grid``
    and the α minimising ``Σ_W mean ‖x Wᵀ − x Ŵᵀ‖²`` over the linears ``ws`` that read ``x`` wins.
    α = 0 is plain RTN, so AWQ is never worse than RTN on this objective. Returns
    ``(s, best_alpha, errors per α)``. Taught in 09_llm.
    """
    if isinstance(ws, torch.Tensor):
        ws = [ws]
    if not ws:
        raise ValueError("ws must hold at least one weight matrix")
    for k, w in enumerate(ws):
        _check_weight(w, f"ws[{k}]")
    check_float_tensor(x, "x")
    x = x.reshape(-1, x.shape[-1]).float()
    if any(w.shape[1] != x.shape[1] for w in ws):
        raise ValueError(f"every weight must have in_features = x.shape[-1] = {x.shape[1]}")
    check_int(n_grid, "n_grid", lo=1)
    _check_grid(bits, symmetric, zero_point)
    _check_group_size(group_size, x.shape[1])
    return _awq_search(ws, x, x, bits, group_size, symmetric, zero_point, n_grid)


# --------------------------------------------------------------------------- HQQ


def _shrink_lp(x: torch.Tensor, beta: float, p: float) -> torch.Tensor:
    """Generalised soft-thresholding, the proximal operator of ``|x|^p / β``: ``sign(x)·relu(|x| − |x|^(p−1)/β)``."""
    return torch.sign(x) * torch.relu(x.abs() - x.abs().pow(p - 1) / beta)


def hqq_quantize(
    w: torch.Tensor,
    bits: int = 4,
    group_size: int | None = 64,
    iters: int = 20,
    p: float = 0.7,
    beta: float = 10.0,
    kappa: float = 1.01,
    update_scale: bool = False,
) -> tuple[torch.Tensor, list[float]]:
    """HQQ (Badri & Shaji 2023): calibration-free zero-point (and optionally scale) by half-quadratic splitting.

    Minimises ``‖W − Ŵ‖_p^p`` (p < 1, robust to outliers) with ``Ŵ = (q − z)·s``,
    ``q = clamp(round(W/s + z), 0, 2^bits − 1)``, starting from the min-max grid with a float
    zero-point (the RTN float-minimum grid). With an auxiliary error ``W_e`` and penalty ``β``:
    ``W_e ← shrink_p(W − Ŵ, β)``; ``z ← mean_group(q − (W − W_e)/s)``; optionally
    ``(s, m) ←`` least squares of ``W − W_e ≈ s·q + m`` per group (``z = −m/s``); ``β ← κβ``.
    Stops at the first iteration whose mean ``|W − Ŵ|`` does not improve and keeps the best.
    Returns ``(w_hat, objective)`` where ``objective[k]`` is mean ``|W − Ŵ|`` of iterate ``k``
    (``objective[0]`` is the starting RTN grid); it is non-increasing. Taught in 09_llm.
    """
    _check_weight(w)
    check_bits(bits, lo=2, hi=8)
    gs = _check_group_size(group_size, w.shape[1])
    check_int(iters, "iters", lo=0)
    p = check_finite_number(p, "p")
    if not 0 < p <= 1:
        raise ValueError(f"p must be in (0, 1], got {p}")
    beta = check_finite_number(beta, "beta")
    kappa = check_finite_number(kappa, "kappa")
    if beta <= 0 or kappa < 1:
        raise ValueError(f"beta must be > 0 and kappa >= 1, got beta={beta}, kappa={kappa}")
    if not isinstance(update_scale, bool):
        raise TypeError(f"update_scale must be True or False, got {update_scale!r}")
    qmax = 2**bits - 1
    work = torch.float64 if w.dtype == torch.float64 else torch.float32  # float64 in, float64 arithmetic
    W = w.detach().to(work).reshape(w.shape[0], -1, gs)
    lo, hi = W.amin(-1, keepdim=True), W.amax(-1, keepdim=True)
    scale = (hi - lo) / qmax
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    zero = -lo / scale

    def dequant(scale: torch.Tensor, zero: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q = torch.clamp(torch.round(W / scale + zero), 0, qmax)
        return q, (q - zero) * scale

    q, w_hat = dequant(scale, zero)
    objective = [float((W - w_hat).abs().mean())]
    best_hat = w_hat
    for _ in range(iters):
        w_e = _shrink_lp(W - w_hat, beta, p)
        target = W - w_e
        if update_scale:
            qm = q.mean(-1, keepdim=True)
            tm = target.mean(-1, keepdim=True)
            var = ((q - qm) ** 2).mean(-1, keepdim=True)
            cov = ((q - qm) * (target - tm)).mean(-1, keepdim=True)
            new_scale = torch.where(var > 0, cov / var.clamp_min(1e-12), scale)
            new_scale = torch.where(new_scale > 0, new_scale, scale)
            scale, zero = new_scale, -(tm - new_scale * qm) / new_scale
        else:
            zero = torch.mean(q - target / scale, dim=-1, keepdim=True)
        beta *= kappa
        q, w_hat = dequant(scale, zero)
        err = float((W - w_hat).abs().mean())
        if err >= objective[-1]:
            break
        objective.append(err)
        best_hat = w_hat
    return best_hat.reshape(w.shape).to(w.dtype), objective


# --------------------------------------------------------------------------- SmoothQuant and W8A8


def smoothquant_scales(
    x_max: torch.Tensor, ws: Sequence[torch.Tensor] | torch.Tensor, alpha: float = 0.5
) -> torch.Tensor:
    """SmoothQuant (Xiao et al. 2023) per-input-channel scales ``s_j = max|X_j|^α / max|W_{:,j}|^(1−α)``.

    ``X · diag(s)⁻¹ · (diag(s) · Wᵀ)`` is the same product, but the activation outliers move
    into the weights (α is the migration strength). ``x_max`` is each channel's max |x| over the
    calibration tokens; the weight max runs over every linear in ``ws`` that reads that input.
    Taught in 09_llm.
    """
    check_float_tensor(x_max, "x_max")
    if isinstance(ws, torch.Tensor):
        ws = [ws]
    if not ws:
        raise ValueError("ws must hold at least one weight matrix")
    alpha = check_finite_number(alpha, "alpha")
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    work = torch.float64 if x_max.dtype == torch.float64 else torch.float32  # float64 in, float64 out
    w_max = torch.stack([w.detach().abs().amax(0) for w in ws]).amax(0).to(work)
    if w_max.shape != x_max.shape:
        raise ValueError(f"x_max must have shape {tuple(w_max.shape)} (in_features), got {tuple(x_max.shape)}")
    s = x_max.to(work).clamp_min(1e-5).pow(alpha) / w_max.clamp_min(1e-5).pow(1 - alpha)
    return s.clamp_min(1e-5)


def quantize_activations(x: torch.Tensor, granularity: str = "tensor", bits: int = 8) -> torch.Tensor:
    """Dynamic symmetric fake quantization of activations: ``x_hat = round(x/s)·s``, ``s = max|x| / (2^(b−1)−1)``.

    ``granularity="tensor"``: one ``s`` for the whole input; ``"token"``: one per row (token).
    Taught in 09_llm.
    """
    check_float_tensor(x, "x")
    check_choice(granularity, "granularity", ACT_GRANULARITIES)
    check_bits(bits, lo=2, hi=16)
    qmax = 2 ** (bits - 1) - 1
    amax = x.abs().amax() if granularity == "tensor" else x.abs().amax(-1, keepdim=True)
    s = (amax / qmax).clamp_min(1e-8)
    return torch.clamp(torch.round(x / s), -qmax, qmax) * s


def w8a8_linear(
    x: torch.Tensor, w_hat: torch.Tensor, bias: torch.Tensor | None = None, granularity: str = "tensor"
) -> torch.Tensor:
    """W8A8 fake-quant linear: ``quantize_activations(x) · Ŵᵀ + b`` with ``Ŵ`` already int8-per-channel.

    Taught in 09_llm.
    """
    return nn.functional.linear(quantize_activations(x, granularity), w_hat, bias)


class W8A8Linear(nn.Module):
    """``nn.Linear`` replacement with int8 per-output-channel symmetric weights and dynamic int8 activations.

    Taught in 09_llm.
    """

    def __init__(self, linear: nn.Linear, granularity: str = "tensor") -> None:
        super().__init__()
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"linear must be an nn.Linear, got {type(linear).__name__}")
        check_choice(granularity, "granularity", ACT_GRANULARITIES)
        self.granularity = granularity
        w = linear.weight.detach()
        self.register_buffer("weight", fake_quantize_rtn(w, 8, None, symmetric=True))
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().clone())
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return w8a8_linear(x, self.weight, self.bias, self.granularity)


# --------------------------------------------------------------------------- model plumbing


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The decoder layers of a Llama-style causal LM (``model.model.layers``). Taught in 09_llm."""
    try:
        return model.model.layers
    except AttributeError:
        raise TypeError(
            f"model must be a Llama-style causal LM with model.model.layers, got {type(model).__name__}"
        ) from None


def _batch(tokens: torch.Tensor, seq_len: int) -> torch.Tensor:
    check_tensor(tokens, "tokens")
    if tokens.dtype not in (torch.int64, torch.int32) or tokens.dim() != 1:
        raise TypeError(f"tokens must be a 1-d int64 tensor of token ids, got {tokens.dtype} {tuple(tokens.shape)}")
    check_int(seq_len, "seq_len", lo=2)
    n = tokens.numel() // seq_len
    if n == 0:
        raise ValueError(f"tokens must hold at least seq_len={seq_len} ids, got {tokens.numel()}")
    return tokens[: n * seq_len].reshape(n, seq_len).long()


@torch.no_grad()
def capture_inputs(
    model: nn.Module, tokens: torch.Tensor, names: Iterable[str], seq_len: int = 512
) -> dict[str, torch.Tensor]:
    """Input activations ``(tokens, in_features)`` of the named submodules, recorded by forward hooks.

    ``tokens`` is cut into sequences of ``seq_len`` and run through ``model`` once. Taught in 09_llm.
    """
    names = list(names)
    modules = dict(model.named_modules())
    missing = [n for n in names if n not in modules]
    if missing:
        raise ValueError(f"names must be submodule names of model; unknown: {missing[:5]}")
    ids = _batch(tokens, seq_len)
    store: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    handles = [
        modules[n].register_forward_hook(
            lambda mod, args, out, n=n: store[n].append(args[0].detach().reshape(-1, args[0].shape[-1]))
        )
        for n in names
    ]
    try:
        model(input_ids=ids, use_cache=False)
    finally:
        for hd in handles:
            hd.remove()
    return {n: torch.cat(v) for n, v in store.items()}


def activation_channel_max(x: torch.Tensor) -> torch.Tensor:
    """Max ``|x|`` per input channel over all tokens (the SmoothQuant statistic). Taught in 09_llm."""
    check_float_tensor(x, "x")
    return x.reshape(-1, x.shape[-1]).abs().amax(0)


def reconstruction_error(w: torch.Tensor, w_hat: torch.Tensor, x: torch.Tensor, relative: bool = True) -> float:
    """Layer output error ``‖x Wᵀ − x Ŵᵀ‖_F`` (divided by ``‖x Wᵀ‖_F`` when ``relative``). Taught in 09_llm."""
    _check_weight(w)
    _check_weight(w_hat, "w_hat")
    check_float_tensor(x, "x")
    if w.shape != w_hat.shape or x.shape[-1] != w.shape[1]:
        raise ValueError(f"shapes do not match: w {tuple(w.shape)}, w_hat {tuple(w_hat.shape)}, x {tuple(x.shape)}")
    x = x.reshape(-1, x.shape[-1]).double()
    err = torch.linalg.norm(x @ (w.double() - w_hat.double()).T)
    if relative:
        err = err / torch.linalg.norm(x @ w.double().T)
    return float(err)


def _layer_inputs(model: nn.Module, ids: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """Hidden states entering decoder layer 0 and the keyword arguments every layer receives."""
    layers = decoder_layers(model)
    captured: dict = {}

    class _Stop(Exception):
        pass

    def hook(mod: nn.Module, args: tuple, kwargs: dict) -> None:
        captured["hidden"] = args[0] if args else kwargs.pop("hidden_states")
        captured["kwargs"] = {k: v for k, v in kwargs.items() if k != "hidden_states"}
        raise _Stop

    handle = layers[0].register_forward_pre_hook(hook, with_kwargs=True)
    try:
        model(input_ids=ids, use_cache=False)
    except _Stop:
        pass
    finally:
        handle.remove()
    return captured["hidden"], captured["kwargs"]


def _run_layer(layer: nn.Module, hidden: torch.Tensor, kwargs: dict) -> torch.Tensor:
    out = layer(hidden, **kwargs)
    return out[0] if isinstance(out, tuple) else out


def _sub(layer: nn.Module, name: str) -> nn.Module:
    return layer.get_submodule(name)


def _capture_layer(layer: nn.Module, hidden: torch.Tensor, kwargs: dict) -> dict[str, torch.Tensor]:
    """Inputs of one input-sharing group's first linear (q, o, gate, down) for one decoder layer."""
    heads = [group[0] for group, _ in _INPUT_GROUPS]
    store: dict[str, torch.Tensor] = {}
    handles = [
        _sub(layer, n).register_forward_hook(
            lambda mod, args, out, n=n: store.__setitem__(n, args[0].detach().reshape(-1, args[0].shape[-1]))
        )
        for n in heads
    ]
    try:
        _run_layer(layer, hidden, kwargs)
    finally:
        for hd in handles:
            hd.remove()
    return store


def _fold_scale(layer: nn.Module, prev: str, group: Sequence[str], s: torch.Tensor, config: object) -> None:
    """Multiply the group's weight columns by ``s`` and divide the previous op's output by ``s``."""
    for n in group:
        lin = _sub(layer, n)
        lin.weight.data.mul_(s.to(lin.weight.dtype))
    prev_mod = _sub(layer, prev)
    if isinstance(prev_mod, nn.Linear):
        if prev.endswith("v_proj"):
            # o_proj's input channel h*head_dim + d is v's channel (h // n_rep)*head_dim + d;
            # s was tied across the query heads that share a key/value head.
            s_v = _tie_gqa(s, config)
            prev_mod.weight.data.div_(s_v.unsqueeze(1))
        else:
            prev_mod.weight.data.div_(s.unsqueeze(1))
    else:
        prev_mod.weight.data.div_(s)


def _gqa_shape(config: object) -> tuple[int, int, int]:
    heads = config.num_attention_heads
    kv = getattr(config, "num_key_value_heads", heads)
    head_dim = getattr(config, "head_dim", config.hidden_size // heads)
    return kv, heads // kv, head_dim


def _tie_gqa(v: torch.Tensor, config: object) -> torch.Tensor:
    """Per-o_proj-input vector (heads·head_dim) → per-v_proj-output vector (kv·head_dim): first of each tie."""
    kv, rep, hd = _gqa_shape(config)
    return v.reshape(kv, rep, hd)[:, 0, :].reshape(-1)


def _tie_stat(stat: torch.Tensor, config: object, reduce: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Make a per-o_proj-input statistic equal across the query heads sharing a kv head."""
    kv, rep, hd = _gqa_shape(config)
    tied = reduce(stat.reshape(kv, rep, hd))
    return tied.unsqueeze(1).expand(kv, rep, hd).reshape(-1)


def _check_model_args(method: str, bits: int, group_size: int | None, symmetric: bool, zero_point: str) -> None:
    check_choice(method, "method", METHODS)
    _check_grid(bits, symmetric, zero_point)
    if group_size is not None:
        check_int(group_size, "group_size", lo=1)


@torch.no_grad()
def quantize_model(
    model: nn.Module,
    method: str = "rtn",
    bits: int = 4,
    group_size: int | None = 64,
    symmetric: bool = False,
    zero_point: str = "int",
    calibration: torch.Tensor | None = None,
    seq_len: int = 512,
    layers: Sequence[int] | None = None,
    damp: float = 0.01,
    act_order: bool = False,
    n_grid: int = 20,
    hqq_iters: int = 20,
    progress: Callable[[int], None] | None = None,
) -> dict:
    """Quantize every decoder-layer linear of ``model`` in place, layer by layer, with ``method``.

    ``"rtn"`` and ``"hqq"`` need no data (HQQ always uses the float zero-point grid). ``"gptq"``
    and ``"awq"`` need ``calibration`` token ids: they are cut into ``seq_len`` sequences, run
    to decoder layer 0, and then pushed through the layers one at a time — each layer is
    calibrated on the outputs of the already-quantized layers before it (sequential
    quantization), and q/k/v (and gate/up) share one Hessian / one AWQ scale since they read
    the same input. AWQ's scales are folded into the previous op: the RMSNorm weight for
    q/k/v and gate/up, ``up_proj``'s rows for ``down_proj``, ``v_proj``'s rows for ``o_proj``
    (tied across the query heads that share a key/value head); then every linear is rounded.
    The embedding and ``lm_head`` (tied) stay as they are. ``layers`` restricts the work to
    those layer indices. Returns ``{"errors": {"<i>.<name>": relative ‖WX − ŴX‖}, "seconds": …}``
    (errors only for calibrated methods, on their calibration inputs). Taught in 09_llm.
    """
    _check_model_args(method, bits, group_size, symmetric, zero_point)
    blocks = decoder_layers(model)
    todo = (
        list(range(len(blocks))) if layers is None else [check_int(i, "layers[i]", 0, len(blocks) - 1) for i in layers]
    )
    start = time.perf_counter()
    errors: dict[str, float] = {}
    if method in ("rtn", "hqq"):
        for i in todo:
            for n in LINEAR_NAMES:
                lin = _sub(blocks[i], n)
                if method == "rtn":
                    w_hat = fake_quantize_rtn(lin.weight, bits, group_size, symmetric, zero_point)
                else:
                    w_hat, _ = hqq_quantize(lin.weight, bits, group_size, iters=hqq_iters)
                lin.weight.data.copy_(w_hat)
            if progress is not None:
                progress(i)
        return {"errors": errors, "seconds": time.perf_counter() - start}
    if calibration is None:
        raise ValueError(f"calibration token ids are required for method={method!r}")
    ids = _batch(calibration, seq_len)
    hidden, kwargs = _layer_inputs(model, ids)
    config = model.config
    last = max(todo)
    for i, layer in enumerate(blocks):
        if i > last:
            break
        if i in todo:
            xs = _capture_layer(layer, hidden, kwargs)
            originals = {n: _sub(layer, n).weight.detach().clone() for n in LINEAR_NAMES}
            inputs = {}
            for group, _prev in _INPUT_GROUPS:
                for n in group:
                    inputs[n] = xs[group[0]]
            if method == "gptq":
                for group, _prev in _INPUT_GROUPS:
                    h = hessian(xs[group[0]])
                    for n in group:
                        lin = _sub(layer, n)
                        w_hat = gptq_quantize(
                            lin.weight, h, bits, group_size, symmetric, zero_point, damp=damp, act_order=act_order
                        )
                        lin.weight.data.copy_(w_hat)
            else:  # awq: search and fold every scale, then round every linear
                for group, prev in _INPUT_GROUPS:
                    x = xs[group[0]]
                    stat_x = x
                    if prev.endswith("v_proj"):
                        mean_abs = _tie_stat(x.abs().mean(0), config, lambda t: t.mean(1))
                        stat_x = mean_abs.unsqueeze(0)  # awq_search_scale uses mean |x| only for s
                    ws = [_sub(layer, n).weight.detach() for n in group]
                    s, _, _ = _awq_search(ws, x, stat_x, bits, group_size, symmetric, zero_point, n_grid)
                    _fold_scale(layer, prev, group, s, config)
                for n in LINEAR_NAMES:
                    lin = _sub(layer, n)
                    lin.weight.data.copy_(fake_quantize_rtn(lin.weight, bits, group_size, symmetric, zero_point))
            for n in LINEAR_NAMES:
                lin = _sub(layer, n)
                if method == "gptq":
                    errors[f"{i}.{n}"] = reconstruction_error(originals[n], lin.weight, inputs[n])
        hidden = _run_layer(layer, hidden, kwargs)
        if progress is not None:
            progress(i)
    return {"errors": errors, "seconds": time.perf_counter() - start}


def _awq_search(
    ws: Sequence[torch.Tensor],
    x: torch.Tensor,
    stat_x: torch.Tensor,
    bits: int,
    group_size: int | None,
    symmetric: bool,
    zero_point: str,
    n_grid: int,
) -> tuple[torch.Tensor, float, list[float]]:
    """AWQ grid search with ``s = mean|stat_x|^α`` (``stat_x`` may be tied across GQA heads) and the loss on ``x``."""
    ws = [w.float() for w in ws]
    x = x.reshape(-1, x.shape[-1]).double()
    gram = ((x.T @ x) / x.shape[0]).float()  # the loss needs only xᵀx: cheaper than x Dᵀ for many tokens
    x_mean = stat_x.float().abs().mean(0).clamp_min(1e-8)
    errors: list[float] = []
    best = (math.inf, 0.0, torch.ones_like(x_mean))
    for k in range(n_grid):
        alpha = k / n_grid
        s = x_mean.pow(alpha)
        s = s / torch.sqrt(s.max() * s.min())
        w_hats = [fake_quantize_rtn(w * s, bits, group_size, symmetric, zero_point) / s for w in ws]
        err = _output_error(ws, w_hats, gram)
        errors.append(err)
        if err < best[0]:
            best = (err, alpha, s)
    return best[2], best[1], errors


@torch.no_grad()
def smoothquant_model(
    model: nn.Module,
    calibration: torch.Tensor,
    alpha: float = 0.5,
    seq_len: int = 512,
    groups: Sequence[str] = ("qkv", "gate_up", "down"),
) -> dict[str, torch.Tensor]:
    """Apply SmoothQuant in place: per-channel scales from calibration maxima, folded into the previous op.

    For each decoder layer and each chosen input group — ``"qkv"`` (folded into
    ``input_layernorm``), ``"gate_up"`` (``post_attention_layernorm``), ``"down"``
    (``up_proj``'s rows) — ``s = smoothquant_scales(max|x|, W, α)``; the weights' columns are
    multiplied by ``s`` and the previous op's output divided by ``s``. In float arithmetic
    the model computes the same function. Returns the scales by ``"<i>.<group>"``.
    Taught in 09_llm.
    """
    keys = {"qkv": 0, "gate_up": 2, "down": 3}
    groups = list(groups)
    for g in groups:
        check_choice(g, "groups[i]", tuple(keys))
    heads = [_INPUT_GROUPS[keys[g]][0][0] for g in groups]
    blocks = decoder_layers(model)
    names = [f"model.layers.{i}.{h}" for i in range(len(blocks)) for h in heads]
    xs = capture_inputs(model, calibration, names, seq_len)
    scales = {}
    for i, layer in enumerate(blocks):
        for g in groups:
            group, prev = _INPUT_GROUPS[keys[g]]
            x_max = activation_channel_max(xs[f"model.layers.{i}.{group[0]}"])
            s = smoothquant_scales(x_max, [_sub(layer, n).weight for n in group], alpha)
            _fold_scale(layer, prev, group, s, model.config)
            scales[f"{i}.{g}"] = s
    return scales


def w8a8_model(model: nn.Module, granularity: str = "tensor") -> nn.Module:
    """Swap every decoder-layer linear for :class:`W8A8Linear` in place (embedding and ``lm_head`` stay float).

    Taught in 09_llm.
    """
    check_choice(granularity, "granularity", ACT_GRANULARITIES)
    for layer in decoder_layers(model):
        for n in LINEAR_NAMES:
            parent_name, _, child = n.rpartition(".")
            parent = layer.get_submodule(parent_name)
            setattr(parent, child, W8A8Linear(getattr(parent, child), granularity))
    return model


# --------------------------------------------------------------------------- size and decoding speed


def packed_bytes(
    out_features: int,
    in_features: int,
    bits: int,
    group_size: int | None,
    param_bytes: int = 2,
    zero_point: str = "int",
) -> int:
    """Bytes of one weight matrix stored packed: ``bits`` per code plus each group's parameters.

    Every group stores an fp16 ``scale`` (``param_bytes``) and its zero-point: ``bits`` more bits
    for an integer zero-point, another fp16 for a float one (GGUF Q4_1's minimum). E.g. 4 bits,
    groups of 32, float minimum: 4 + 32/32 = 5 bits per weight, Q4_1's size. Taught in 09_llm.
    """
    check_int(out_features, "out_features", lo=1)
    check_int(in_features, "in_features", lo=1)
    check_bits(bits, lo=2, hi=8)
    gs = _check_group_size(group_size, in_features)
    check_int(param_bytes, "param_bytes", lo=1)
    check_choice(zero_point, "zero_point", ZERO_POINTS)
    groups = out_features * (in_features // gs)
    zero_bits = bits if zero_point == "int" else 8 * param_bytes
    total_bits = out_features * in_features * bits + groups * (8 * param_bytes + zero_bits)
    return math.ceil(total_bits / 8)


class PackedLinear(nn.Module):
    """An ``nn.Linear`` whose weight is stored as int8 (per output channel) or packed int4 (groups) codes.

    The forward pass calls PyTorch's CPU weight-only kernels (``aten._weight_int8pack_mm``,
    ``aten._weight_int4pack_mm_for_cpu``) on float32 activations: the weights are read at 8 or 4
    bits per value and dequantized inside the kernel, as llama.cpp does during decoding.
    Taught in 09_llm.
    """

    def __init__(self, linear: nn.Linear, fmt: str = "int8", group_size: int = 32) -> None:
        super().__init__()
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"linear must be an nn.Linear, got {type(linear).__name__}")
        check_choice(fmt, "fmt", ("int8", "int4"))
        self.fmt = fmt
        w = linear.weight.detach().float()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().clone())
        if fmt == "int8":
            q, scale, _ = rtn_quantize(w, 8, None, symmetric=True)
            self.register_buffer("codes", q)
            self.register_buffer("scales", scale[:, 0].contiguous())
            self.group_size = w.shape[1]
        else:
            gs = _check_group_size(group_size, w.shape[1])
            q, scale, lo = rtn_quantize(w, 4, gs, zero_point="float")
            # tinygemm layout: w_hat = (q - 8) * scale + zero with zero = min + 8 * scale
            self.register_buffer("codes", torch.ops.aten._convert_weight_to_int4pack_for_cpu(q.to(torch.int32), 1))
            sz = torch.stack([scale.T, (lo + 8 * scale).T], dim=-1).contiguous()
            self.register_buffer("scales", sz)
            self.group_size = gs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2 = x.reshape(-1, shape[-1]).float()
        if self.fmt == "int8":
            y = torch.ops.aten._weight_int8pack_mm(x2, self.codes, self.scales)
        else:
            y = torch.ops.aten._weight_int4pack_mm_for_cpu(x2, self.codes, self.group_size, self.scales)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*shape[:-1], self.out_features).to(x.dtype)


def pack_model(model: nn.Module, fmt: str = "int8", group_size: int = 32, lm_head: bool = True) -> nn.Module:
    """Swap every decoder-layer linear (and ``lm_head``) for :class:`PackedLinear` in place.

    The embedding is a separate module and stays float even though ``lm_head`` shares its
    weight. Taught in 09_llm.
    """
    check_choice(fmt, "fmt", ("int8", "int4"))
    for layer in decoder_layers(model):
        for n in LINEAR_NAMES:
            parent_name, _, child = n.rpartition(".")
            parent = layer.get_submodule(parent_name)
            setattr(parent, child, PackedLinear(getattr(parent, child), fmt, group_size))
    if lm_head:
        model.lm_head = PackedLinear(model.lm_head, fmt, group_size)
    return model


@torch.no_grad()
def decode_tokens_per_second(model: nn.Module, prompt: torch.Tensor, n_new: int = 32, repeats: int = 3) -> float:
    """Greedy decoding speed: new tokens per second after the prompt, best of ``repeats`` runs.

    Each step feeds one token with the key/value cache, so every weight is read once per
    token: the memory-bound regime of LLM inference. Taught in 09_llm.
    """
    if prompt.dim() != 1:
        raise ValueError(f"prompt must be a 1-d tensor of token ids, got shape {tuple(prompt.shape)}")
    check_int(n_new, "n_new", lo=1)
    check_int(repeats, "repeats", lo=1)
    best = math.inf
    for _ in range(repeats):
        out = model(input_ids=prompt.long().unsqueeze(0), use_cache=True)
        past, nxt = out.past_key_values, out.logits[:, -1:].argmax(-1)
        start = time.perf_counter()
        for _ in range(n_new):
            out = model(input_ids=nxt, past_key_values=past, use_cache=True)
            past, nxt = out.past_key_values, out.logits[:, -1:].argmax(-1)
        best = min(best, time.perf_counter() - start)
    return n_new / best


# --------------------------------------------------------------------------- one layer, for the widget

LAYER_VIEW_METHODS = ("rtn", "gptq", "awq", "hqq", "smoothquant")


def layer_view(
    w: torch.Tensor,
    x: torch.Tensor,
    method: str = "rtn",
    bits: int = 3,
    group_size: int = 64,
    alpha: float = 0.5,
) -> dict:
    """Quantize one linear ``w`` with inputs ``x`` and return what the lesson's widget shows.

    ``method``: ``"rtn"``, ``"gptq"`` (Hessian from ``x``, act-order), ``"awq"`` (fixed scale
    ``s = mean|x|^alpha``; ``alpha = 0`` is RTN), ``"hqq"`` (float zero-point), or
    ``"smoothquant"`` (weights and per-tensor activations both at ``bits``, migration
    strength ``alpha``). Returns the per-input-channel mean ``|x|``, the per-channel weight
    error ``‖W[:, j] − Ŵ[:, j]‖``, the relative output error ``‖xWᵀ − x̂Ŵᵀ‖/‖xWᵀ‖`` and the
    weight MSE (all float64 numbers). Taught in 09_llm.
    """
    _check_weight(w)
    check_float_tensor(x, "x")
    check_choice(method, "method", LAYER_VIEW_METHODS)
    _check_grid(bits, False, "int")
    _check_group_size(group_size, w.shape[1])
    alpha = check_finite_number(alpha, "alpha")
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    x = x.reshape(-1, x.shape[-1]).double()
    if x.shape[1] != w.shape[1]:
        raise ValueError(f"x must have {w.shape[1]} columns (in_features), got {x.shape[1]}")
    w = w.detach().double()
    x_in = x
    if method == "rtn":
        w_hat = fake_quantize_rtn(w, bits, group_size)
    elif method == "gptq":
        w_hat = gptq_quantize(w, hessian(x), bits, group_size, act_order=True)
    elif method == "awq":
        s = x.abs().mean(0).clamp_min(1e-8).pow(alpha)
        s = s / torch.sqrt(s.max() * s.min())
        w_hat = fake_quantize_rtn(w * s, bits, group_size) / s
    elif method == "hqq":
        w_hat, _ = hqq_quantize(w, bits, group_size)
        w_hat = w_hat.double()
    else:
        s = smoothquant_scales(activation_channel_max(x), w, alpha)
        w_hat = fake_quantize_rtn(w * s, bits, None, symmetric=True) / s
        x_in = quantize_activations(x / s, "tensor", bits) * s
    y = x @ w.T
    err = torch.linalg.norm(y - x_in @ w_hat.T) / torch.linalg.norm(y)
    return {
        "x_mean": x.abs().mean(0),
        "channel_error": torch.linalg.norm(w - w_hat, dim=0),
        "output_error": float(err),
        "weight_mse": float(((w - w_hat) ** 2).mean()),
        "w": w,
        "w_hat": w_hat,
    }
