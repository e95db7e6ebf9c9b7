"""Quantization-aware training: fake quantization with the straight-through estimator, LSQ, QAT layers.

Taught in 06_qat. The pieces, from the smallest up:

* ``fake_quant_ste`` — ``x_hat = (clamp(round(x / scale) + zero_point, qmin, qmax) - zero_point) * scale``
  as a ``torch.autograd.Function`` whose backward is the straight-through estimator (STE):
  ``dL/dx = dL/dx_hat`` where the code lands inside ``qmin..qmax`` and 0 where it was clipped
  (the same mask as ``torch.fake_quantize_per_tensor_affine``'s backward);
* ``lsq_quantize`` — learned step size quantization (Esser et al. 2020, "LSQ"):
  ``x_hat = clamp(round(x / step), qmin, qmax) * step`` with a gradient for ``step`` too,
  ``dx_hat/dstep = round(x/step) - x/step`` inside the range and ``qmin`` or ``qmax`` outside,
  scaled by ``grad_scale = 1 / sqrt(N * qmax)``;
* ``RangeObserver``, ``ActQuantizer``, ``WeightQuantizer`` and ``QATLayer`` — a Conv2d/Linear with
  per-channel weight fake-quant and per-tensor input (activation) fake-quant, any bits 2..8;
* ``make_qat_model``, ``calibrate``, ``freeze_observers``, ``ptq_model`` — swap every Conv2d/Linear
  of a model, so post-training quantization (PTQ: calibrate, freeze, evaluate) and QAT
  (calibrate, then fine-tune through the fake quantizers) use exactly the same quantizers;
* ``record_layer_inputs``, ``layer_input_ranges``, ``set_act_ranges`` — PTQ with lesson 05's observers
  (``CLIP_METHODS``) choosing each activation range; ``freeze_bn_stats`` (BatchNorm on running statistics
  during training); ``model_logits`` and ``logit_kl`` (fidelity to the fp32 model);
* ``check_fake_quant``, ``check_ste``, ``check_step_grad`` — the lesson's exercise checkers.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from helpers._validate import (
    check_axis,
    check_bits,
    check_choice,
    check_finite_number,
    check_float_tensor,
    check_int,
    check_positive,
    check_tensor,
)
from helpers.affine import PER_CHANNEL_ZP_DTYPES, _float_zero_point_fake_quant, affine_qparams, qrange
from helpers.exercises import close, grade
from helpers.models import as_model_dtype
from helpers.observers import observer_range, run_hooked

__all__ = [
    "ste_view",
    "ste_grid_view",
    "FakeQuantSTE",
    "LSQQuantize",
    "fake_quant_ste",
    "ste_mask",
    "lsq_quantize",
    "lsq_grad_scale",
    "lsq_init_step",
    "RangeObserver",
    "ActQuantizer",
    "WeightQuantizer",
    "QATLayer",
    "make_qat_model",
    "calibrate",
    "freeze_observers",
    "ptq_model",
    "qat_layers",
    "record_layer_inputs",
    "layer_input_ranges",
    "set_act_ranges",
    "freeze_bn_stats",
    "model_logits",
    "logit_kl",
    "check_fake_quant",
    "check_ste",
    "check_step_grad",
    "STEP_GRAD_X",
    "METHODS",
    "OBSERVERS",
    "CLIP_METHODS",
]

METHODS = ("minmax", "lsq")
OBSERVERS = ("minmax", "ema")
#: Lesson 05's observers that choose a clipping range from recorded activations (``helpers.observers``).
CLIP_METHODS = ("minmax", "histogram", "percentile", "mse", "kl")


# ---------------------------------------------------------------------------- argument checks


def _check_qmin_qmax(qmin: int, qmax: int) -> tuple[int, int]:
    qmin = check_int(qmin, "qmin", lo=-(2**15), hi=2**16 - 1)
    qmax = check_int(qmax, "qmax", lo=-(2**15), hi=2**16 - 1)
    if qmin >= qmax:
        raise ValueError(f"qmin must be < qmax, got qmin={qmin}, qmax={qmax}")
    return qmin, qmax


def _param(
    value: float | int | torch.Tensor, x: torch.Tensor, axis: int | None, name: str, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """``value`` as a tensor of ``dtype`` (default ``x``'s) shaped to broadcast per tensor (axis None) or along ``axis``."""
    p = value if isinstance(value, torch.Tensor) else torch.tensor(float(value))
    p = p.to(x.dtype if dtype is None else dtype)
    if axis is None:
        if p.numel() != 1:
            raise ValueError(f"{name} must have one element for per-tensor quantization, got shape {tuple(p.shape)}")
        return p.reshape(())
    if p.numel() != x.shape[axis]:
        raise ValueError(f"{name} must have {x.shape[axis]} elements (size of axis {axis}), got {p.numel()}")
    shape = [1] * x.ndim
    shape[axis] = -1
    return p.reshape(shape)


# The input dtypes torch's fake-quant kernels accept. Like them, float16/bfloat16 inputs are computed in
# float32 (scale stored as float32) and cast back; they are never rounded in half precision.
FAKE_QUANT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
# lsq_quantize: torch's learnable fake-quant (its LSQ kernel) takes float32 x and step; float64 runs the same formula.
LSQ_DTYPES = (torch.float32, torch.float64)


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype


def _check_fq_input(x: torch.Tensor, name: str = "x") -> torch.Tensor:
    """``x`` must be a finite, non-empty tensor of a dtype torch's fake-quant kernels accept."""
    check_tensor(x, name)
    if x.dtype not in FAKE_QUANT_DTYPES:
        allowed = ", ".join(str(d).replace("torch.", "") for d in FAKE_QUANT_DTYPES)
        raise TypeError(f"{name} must have dtype {allowed} (what torch's fake-quant kernels accept), got {x.dtype}")
    return check_float_tensor(x, name)


def _check_scale_in(s: torch.Tensor, name: str = "scale") -> torch.Tensor:
    """``s`` (already in the compute dtype) must be finite, > 0 and have a finite reciprocal there."""
    if not bool(torch.isfinite(s).all()) or not bool((s > 0).all()) or not bool(torch.isfinite(1.0 / s).all()):
        big = torch.finfo(s.dtype).max
        raise ValueError(
            f"{name} must lie in [{1 / big:.4g}, {big:.4g}] (positive and finite, with a finite reciprocal, in "
            f"{str(s.dtype).replace('torch.', '')}), got min {s.min().item():.6g}, max {s.max().item():.6g}"
        )
    return s


def _fake_quant(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, qmin: int, qmax: int) -> torch.Tensor:
    """``FakeQuantSTE`` in ``x``'s compute dtype (float16/bfloat16 widened to float32, as torch does), cast back."""
    cdt = _compute_dtype(x)
    out = FakeQuantSTE.apply(x.to(cdt), scale.to(cdt), zero_point.to(cdt), qmin, qmax)
    return out.to(x.dtype)


class _TorchFakeQuant64(torch.autograd.Function):
    """float64 fake quantization exactly as torch's CPU kernels compute it (used by ``fake_quant_ste``).

    torch stores the scale as float32, codes are ``round(x * float32(1 / scale)) + zp`` in float64, and
    the result is ``(code - zp) * scale`` rounded to float32 per tensor, exact in float64 per channel.
    """

    @staticmethod
    def forward(ctx, x, scale32, zero_point, qmin, qmax, per_channel):  # noqa: D102
        code = torch.round(x * (1.0 / scale32).to(torch.float64)) + zero_point
        mask = (code >= qmin) & (code <= qmax)
        ctx.save_for_backward(mask)
        q = code.clamp(qmin, qmax) - zero_point
        if per_channel:
            return q * scale32.to(torch.float64)
        return (q.to(torch.float32) * scale32).to(torch.float64)

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        (mask,) = ctx.saved_tensors
        return grad * mask, None, None, None, None, None


def _check_zero_point(zero_point: int | torch.Tensor, qmin: int, qmax: int) -> None:
    zp = zero_point if isinstance(zero_point, torch.Tensor) else torch.tensor(zero_point)
    if zp.dtype == torch.bool or zp.is_complex():
        raise TypeError(f"zero_point must be an integer tensor or number, got dtype {zp.dtype}")
    if zp.numel() == 0:
        raise ValueError("zero_point must be non-empty")
    if zp.is_floating_point() and not bool((zp == torch.round(zp)).all()):
        raise ValueError("zero_point must hold whole numbers")
    if bool((zp < qmin).any()) or bool((zp > qmax).any()):
        raise ValueError(
            f"zero_point must lie in qmin..qmax = {qmin}..{qmax}, got {zp.min().item()}..{zp.max().item()}"
        )


def _check_axis_arg(axis: int | None, x: torch.Tensor) -> int | None:
    return None if axis is None else check_axis(axis, x.ndim)


# ---------------------------------------------------------------------------- STE fake quantization


def _ste_args(
    x: torch.Tensor, scale: float | torch.Tensor, zero_point: int | torch.Tensor, qmin: int, qmax: int, axis: int | None
) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """Validate the fake-quant arguments; return ``scale``/``zero_point`` shaped to broadcast and ``qmin``/``qmax``.

    ``scale``/``zero_point`` come back in ``x``'s compute dtype (float32 for float16/bfloat16 ``x``).
    """
    _check_fq_input(x, "x")
    qmin, qmax = _check_qmin_qmax(qmin, qmax)
    axis = _check_axis_arg(axis, x)
    if scale is None or zero_point is None:
        raise TypeError("scale and zero_point must be numbers or tensors, got None")
    if isinstance(scale, torch.Tensor):
        check_tensor(scale, "scale")
    check_positive(scale if isinstance(scale, torch.Tensor) else check_finite_number(scale, "scale"), "scale")
    if not _float_zero_point(zero_point, axis):
        _check_zero_point(zero_point, qmin, qmax)
    elif not bool(torch.isfinite(zero_point).all()):
        raise ValueError("zero_point must contain only finite values (no NaN or inf)")
    cdt = _compute_dtype(x)
    s = _check_scale_in(_param(scale, x, axis, "scale", cdt))
    if axis is not None:  # torch.fake_quantize_per_channel_affine's dtype rules
        if not isinstance(scale, torch.Tensor) or scale.dtype != torch.float32:
            got = scale.dtype if isinstance(scale, torch.Tensor) else type(scale).__name__
            raise TypeError(
                f"scale must be a float32 tensor for per-channel fake quantization (as torch's kernel), got {got}"
            )
        if not isinstance(zero_point, torch.Tensor) or zero_point.dtype not in PER_CHANNEL_ZP_DTYPES:
            got = zero_point.dtype if isinstance(zero_point, torch.Tensor) else type(zero_point).__name__
            allowed = ", ".join(str(d).replace("torch.", "") for d in PER_CHANNEL_ZP_DTYPES)
            raise TypeError(
                f"zero_point must be a tensor of dtype {allowed} for per-channel fake quantization, got {got}"
            )
    z = _param(zero_point, x, axis, "zero_point", cdt)
    return s, z, qmin, qmax


def _float_zero_point(zero_point: int | torch.Tensor, axis: int | None) -> bool:
    """Per channel, torch treats a float32/float16 zero point by its float rule ``round(x / scale + zp)``."""
    return axis is not None and isinstance(zero_point, torch.Tensor) and zero_point.is_floating_point()


class _TorchFakeQuantFloatZP(torch.autograd.Function):
    """Per-channel fake quantization with a floating-point zero point, as torch's CPU kernel computes it
    (``helpers.affine._float_zero_point_fake_quant``); the STE passes the gradient where ``qmin <= q <= qmax``."""

    @staticmethod
    def forward(ctx, x, scale32, zero_point, qmin, qmax):  # noqa: D102
        out, mask = _float_zero_point_fake_quant(x, scale32, zero_point, qmin, qmax)
        ctx.save_for_backward(mask)
        return out

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        (mask,) = ctx.saved_tensors
        return grad * mask, None, None, None, None


class FakeQuantSTE(torch.autograd.Function):
    """Fake quantization whose backward is the straight-through estimator (clipped codes get 0).

    Forward: ``x_hat = (clamp(round(x * (1/scale)) + zp, qmin, qmax) - zp) * scale`` (round half to even).
    Backward: ``grad_x = grad * [qmin <= round(x/scale) + zp <= qmax]``; no gradient for scale or zp.
    Taught in 06_qat.
    """

    @staticmethod
    def forward(ctx, x, scale, zero_point, qmin, qmax):  # noqa: D102
        code = torch.round(x * (1.0 / scale)) + zero_point
        mask = (code >= qmin) & (code <= qmax)
        ctx.save_for_backward(mask)
        return (code.clamp(qmin, qmax) - zero_point) * scale

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        (mask,) = ctx.saved_tensors
        return grad * mask, None, None, None, None


def fake_quant_ste(
    x: torch.Tensor,
    scale: float | torch.Tensor,
    zero_point: int | torch.Tensor,
    qmin: int,
    qmax: int,
    *,
    axis: int | None = None,
) -> torch.Tensor:
    """Fake-quantize ``x`` (quantize, then dequantize) with a straight-through-estimator gradient.

    ``x_hat = (clamp(round(x / scale) + zero_point, qmin, qmax) - zero_point) * scale``; backward
    passes ``dL/dx_hat`` unchanged where ``qmin <= round(x/scale) + zero_point <= qmax`` and 0 where the
    code was clipped. Per-tensor (``axis=None``) or per-channel along ``axis``. The forward equals
    ``torch.fake_quantize_per_tensor_affine`` / ``..._per_channel_affine`` bit for bit, and so does
    the gradient, on every dtype those kernels accept: float16/bfloat16 ``x`` is computed in float32
    with a float32 ``scale`` and cast back (never rounded in half precision); float64 ``x`` uses a
    float32 ``scale`` and ``1/scale`` as torch does (so do ``ActQuantizer``/``WeightQuantizer``). Per channel,
    a float32/float16 ``zero_point`` follows torch's float rule ``round(x / scale + zero_point)`` (it may be
    fractional; whole odd zero points then round ties unlike int32 ones). Taught in 06_qat.
    """
    s, z, qmin, qmax = _ste_args(x, scale, zero_point, qmin, qmax, axis)
    if _float_zero_point(zero_point, axis):
        zf = _param(zero_point, x, axis, "zero_point", torch.float32)
        return _TorchFakeQuantFloatZP.apply(x, _param(scale, x, axis, "scale", torch.float32), zf, qmin, qmax)
    if x.dtype == torch.float64:
        s32 = _check_scale_in(_param(scale, x, axis, "scale", torch.float32))
        return _TorchFakeQuant64.apply(x, s32, z, qmin, qmax, axis is not None)
    return _fake_quant(x, s, z, qmin, qmax)


def ste_mask(
    x: torch.Tensor,
    scale: float | torch.Tensor,
    zero_point: int | torch.Tensor,
    qmin: int,
    qmax: int,
    *,
    axis: int | None = None,
) -> torch.Tensor:
    """Boolean mask where the STE passes the gradient: ``qmin <= round(x / scale) + zero_point <= qmax``.

    Taught in 06_qat.
    """
    s, z, qmin, qmax = _ste_args(x, scale, zero_point, qmin, qmax, axis)
    if _float_zero_point(zero_point, axis):
        s32 = _param(scale, x, axis, "scale", torch.float32)
        zf = _param(zero_point, x, axis, "zero_point", torch.float32)
        return _float_zero_point_fake_quant(x.detach(), s32, zf, qmin, qmax)[1]
    if x.dtype == torch.float64:
        s32 = _check_scale_in(_param(scale, x, axis, "scale", torch.float32))
        code = torch.round(x * (1.0 / s32).to(torch.float64)) + z
        return (code >= qmin) & (code <= qmax)
    code = torch.round(x.to(s.dtype) * (1.0 / s)) + z
    return (code >= qmin) & (code <= qmax)


# ---------------------------------------------------------------------------- LSQ


class LSQQuantize(torch.autograd.Function):
    """Learned-step-size fake quantization ``x_hat = clamp(round(x / step), qmin, qmax) * step`` (LSQ).

    Backward (Esser et al. 2020, eq. 3): ``grad_x = grad`` inside the range, 0 outside;
    ``grad_step = grad_scale * sum(grad * d)`` with ``d = round(x/step) - x/step`` inside,
    ``qmin`` below, ``qmax`` above (summed per channel when ``step`` has one entry per channel).
    Taught in 06_qat.
    """

    @staticmethod
    def forward(ctx, x, step, qmin, qmax, grad_scale):  # noqa: D102
        v = x * (1.0 / step)
        r = torch.round(v)
        below = r < qmin
        above = r > qmax
        d_step = torch.where(below, float(qmin), torch.where(above, float(qmax), r - v))
        ctx.save_for_backward(~(below | above), d_step)
        ctx.step_shape = step.shape
        ctx.grad_scale = grad_scale
        return r.clamp(qmin, qmax) * step

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        inside, d_step = ctx.saved_tensors
        grad_x = grad * inside
        g = grad * d_step
        shape = ctx.step_shape
        if len(shape) == 0 or math.prod(shape) == 1:
            grad_step = g.sum().reshape(shape)
        else:
            dims = [i for i, n in enumerate(shape) if n == 1]
            grad_step = g.sum(dim=dims, keepdim=True)
        return grad_x, grad_step * ctx.grad_scale, None, None, None


def lsq_grad_scale(n_per_step: int, qmax: int) -> float:
    """The LSQ gradient scale ``g = 1 / sqrt(N * qmax)``, N = elements sharing one step. Taught in 06_qat."""
    n_per_step = check_int(n_per_step, "n_per_step", lo=1)
    qmax = check_int(qmax, "qmax", lo=1)
    return 1.0 / math.sqrt(n_per_step * qmax)


def lsq_quantize(
    x: torch.Tensor,
    step: torch.Tensor,
    bits: int,
    *,
    signed: bool = True,
    axis: int | None = None,
    grad_scale: float | None = None,
) -> torch.Tensor:
    """LSQ fake quantization ``x_hat = clamp(round(x / step), qmin, qmax) * step`` with a learnable ``step``.

    ``qmin, qmax = qrange(bits, signed)`` (symmetric, no zero-point: signed for weights, unsigned
    for ReLU outputs). ``step`` is one number (per tensor) or one per index of ``axis``. The step's
    gradient is multiplied by ``grad_scale``, by default ``1 / sqrt(N * qmax)`` with N the number of
    elements that share one step (Esser et al. 2020). Taught in 06_qat.
    """
    check_float_tensor(x, "x")
    if x.dtype not in LSQ_DTYPES:
        raise TypeError(
            f"x must have dtype float32 or float64 (torch's learnable fake-quant kernel computes float32 only; "
            f"float64 is the course's exact runs), got {x.dtype}"
        )
    bits = check_bits(bits, lo=2, hi=8)
    axis = _check_axis_arg(axis, x)
    check_tensor(step, "step")
    if step.dtype != x.dtype:
        raise TypeError(f"step must have x's dtype {x.dtype} (torch's kernel requires it), got {step.dtype}")
    check_positive(step, "step")
    qmin, qmax = qrange(bits, signed)
    s = _param(step, x, axis, "step")
    if grad_scale is None:
        n = x.numel() if axis is None else x.numel() // x.shape[axis]
        grad_scale = lsq_grad_scale(n, qmax)
    else:
        grad_scale = check_finite_number(grad_scale, "grad_scale")
        if grad_scale <= 0:
            raise ValueError(f"grad_scale must be > 0, got {grad_scale}")
    return LSQQuantize.apply(x, s, qmin, qmax, grad_scale)


def lsq_init_step(x: torch.Tensor, bits: int, *, signed: bool = True, axis: int | None = None) -> torch.Tensor:
    """LSQ's initial step ``2 * mean(|x|) / sqrt(qmax)`` per tensor or per index of ``axis``. Taught in 06_qat."""
    check_float_tensor(x, "x")
    bits = check_bits(bits, lo=2, hi=8)
    axis = _check_axis_arg(axis, x)
    _, qmax = qrange(bits, signed)
    a = x.detach().abs()
    mean = a.mean() if axis is None else a.movedim(axis, 0).reshape(x.shape[axis], -1).mean(dim=1)
    return (2.0 * mean / math.sqrt(qmax)).clamp_min(1e-8)


# ---------------------------------------------------------------------------- modules


class RangeObserver(nn.Module):
    """Tracks the range ``[min_val, max_val]`` of what flows through it: running min-max or an EMA.

    ``mode="minmax"``: ``min_val = min(min_val, min(x))`` (the range only grows);
    ``mode="ema"``: ``min_val += momentum * (min(x) - min_val)`` (first batch initialises it).
    It updates only while ``enabled`` and the module is training, or inside ``calibrate``;
    ``freeze()`` stops it for good (until ``enabled = True``). Taught in 06_qat.
    """

    def __init__(self, mode: str = "ema", momentum: float = 0.1) -> None:
        super().__init__()
        self.mode = check_choice(mode, "mode", OBSERVERS)
        momentum = check_finite_number(momentum, "momentum")
        if not 0.0 < momentum <= 1.0:
            raise ValueError(f"momentum must be in (0, 1], got {momentum}")
        self.momentum = momentum
        self.enabled = True
        self.calibrating = False
        self.register_buffer("min_val", torch.tensor(float("inf")))
        self.register_buffer("max_val", torch.tensor(float("-inf")))

    @property
    def initialized(self) -> bool:
        """Whether at least one batch has been observed."""
        return bool(torch.isfinite(self.min_val))

    def freeze(self) -> None:
        """Stop updating the range."""
        self.enabled = False

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if self.enabled and (self.training or self.calibrating):
            lo, hi = torch.aminmax(x.detach().float())
            if not self.initialized:
                self.min_val.copy_(lo)
                self.max_val.copy_(hi)
            elif self.mode == "minmax":
                self.min_val.copy_(torch.minimum(self.min_val, lo))
                self.max_val.copy_(torch.maximum(self.max_val, hi))
            else:
                self.min_val.add_(self.momentum * (lo - self.min_val))
                self.max_val.add_(self.momentum * (hi - self.max_val))
        return x


class ActQuantizer(nn.Module):
    """Per-tensor activation fake-quantizer: observed affine range + STE (``"minmax"``) or a learned step (``"lsq"``).

    ``"minmax"``: ``scale, zero_point = affine_qparams(min_val, max_val, bits, signed)`` from a
    ``RangeObserver``, then ``fake_quant_ste``. ``"lsq"``: ``lsq_quantize`` with a learnable step
    initialised by ``calibrate`` from the observer (``2 mean|x| / sqrt(qmax)`` on the first batch).
    ``signed=False`` (default) suits ReLU outputs and images; ``dtype`` is the learnable step's dtype
    (``"lsq"``: float32 or float64, the dtype of the inputs it will see). Taught in 06_qat.
    """

    def __init__(
        self,
        bits: int = 8,
        *,
        method: str = "minmax",
        observer: str = "ema",
        signed: bool = False,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        self.bits = check_bits(bits, lo=2, hi=8)
        self.method = check_choice(method, "method", METHODS)
        self.signed = bool(signed)
        self.qmin, self.qmax = qrange(self.bits, self.signed)
        self.observer = RangeObserver(observer)
        if method == "lsq" and dtype not in LSQ_DTYPES:
            raise TypeError(f"dtype must be torch.float32 or torch.float64 for method='lsq', got {dtype!r}")
        self.step = nn.Parameter(torch.tensor(1.0, dtype=dtype)) if method == "lsq" else None
        self.register_buffer("step_initialized", torch.tensor(False))

    def qparams(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Current ``(scale, zero_point)`` (min-max method) or ``(step, 0)`` (LSQ)."""
        if self.method == "lsq":
            return self.step.detach(), torch.tensor(0, dtype=torch.int32)
        if not self.observer.initialized:
            raise RuntimeError("the activation observer has seen no data: run calibrate(model, x) first")
        return affine_qparams(self.observer.min_val, self.observer.max_val, self.bits, signed=self.signed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        _check_fq_input(x, "x")
        self.observer(x)
        if self.method == "lsq":
            if not bool(self.step_initialized):
                with torch.no_grad():
                    self.step.copy_(lsq_init_step(x, self.bits, signed=self.signed))
                    self.step_initialized.fill_(True)
            return lsq_quantize(x, self.step, self.bits, signed=self.signed)
        scale, zero_point = self.qparams()
        if x.dtype == torch.float64:  # torch's float64 rule: float32 scale and 1/scale, float32 product per tensor
            s32 = _check_scale_in(scale.to(torch.float32).reshape(()))
            return _TorchFakeQuant64.apply(x, s32, zero_point.to(torch.float64), self.qmin, self.qmax, False)
        return _fake_quant(x, _check_scale_in(scale.to(_compute_dtype(x))), zero_point, self.qmin, self.qmax)


class WeightQuantizer(nn.Module):
    """Per-channel (axis 0) symmetric weight fake-quantizer: min-max of the current weight + STE, or LSQ.

    ``"minmax"``: ``scale_c = max|w_c| / ((qmax - qmin) / 2)`` recomputed from the weight at every
    forward (as ``helpers.affine.calc_qparams(w, bits, symmetric=True, axis=0)``), then
    ``fake_quant_ste``. ``"lsq"``: one learnable step per output channel, initialised to
    ``2 mean|w_c| / sqrt(qmax)``. Taught in 06_qat.
    """

    def __init__(self, weight: torch.Tensor, bits: int = 8, *, method: str = "minmax") -> None:
        super().__init__()
        _check_fq_input(weight, "weight")
        self.bits = check_bits(bits, lo=2, hi=8)
        self.method = check_choice(method, "method", METHODS)
        self.qmin, self.qmax = qrange(self.bits, signed=True)
        if method == "lsq":
            self.step = nn.Parameter(lsq_init_step(weight, self.bits, signed=True, axis=0))
        else:
            self.step = None

    def qparams(self, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel ``(scale, zero_point)`` for ``weight``."""
        if self.method == "lsq":
            return self.step.detach(), torch.zeros(weight.shape[0], dtype=torch.int32)
        w = weight.detach().float().reshape(weight.shape[0], -1)
        lo, hi = torch.aminmax(w, dim=1)
        return affine_qparams(lo, hi, self.bits, symmetric=True)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:  # noqa: D102
        _check_fq_input(weight, "weight")
        if self.method == "lsq":
            return lsq_quantize(weight, self.step, self.bits, signed=True, axis=0)
        scale, _ = self.qparams(weight)
        shape = [-1] + [1] * (weight.ndim - 1)
        zero = torch.zeros((), dtype=weight.dtype)
        if weight.dtype == torch.float64:  # torch's float64 rule: float32 scale and 1/scale, exact product per channel
            s32 = _check_scale_in(scale.reshape(shape).to(torch.float32), "scale")
            return _TorchFakeQuant64.apply(weight, s32, zero, self.qmin, self.qmax, True)
        scale = _check_scale_in(scale.reshape(shape).to(_compute_dtype(weight)), "scale")
        return _fake_quant(weight, scale, zero, self.qmin, self.qmax)


def _integer_codes(x_hat: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``x_hat / scale`` rounded to the integer code it stands for, with the gradient of ``x_hat / scale``.

    ``x_hat`` is a fake-quantized tensor (``(code - zero_point) * scale``); the division is exact
    or within an ulp of the integer, and ``v + (round(v) - v)`` is exactly ``round(v)`` (Sterbenz).
    """
    v = x_hat / scale
    return v + (torch.round(v) - v).detach()


class QATLayer(nn.Module):
    """A Conv2d or Linear whose input is fake-quantized per tensor and whose weight per output channel.

    ``y = layer_op(act_quant(x), weight_quant(w)) + b`` (bias stays float, as in int8 kernels
    where it is added to the int32 accumulator). ``bits`` is the weight bit width, ``act_bits``
    the activation bit width (defaults to ``bits``). Like an integer kernel, the layer accumulates
    the integer codes (``x_hat / s_x`` and ``w_hat / s_w``) and rescales once by ``s_x * s_w``:
    the same value in exact arithmetic, but the accumulation is exact (integers below 2**24 in
    float32, 2**53 in float64), so equal sums are bit-equal whatever the kernel's summation order
    (otherwise max-pool ties after the layer break differently on different CPUs). Taught in 06_qat.
    """

    def __init__(
        self,
        layer: nn.Module,
        bits: int = 8,
        *,
        act_bits: int | None = None,
        method: str = "minmax",
        observer: str = "ema",
        act_signed: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(layer, (nn.Conv2d, nn.Linear)):
            raise TypeError(f"layer must be an nn.Conv2d or nn.Linear, got {type(layer).__name__}")
        bits = check_bits(bits, lo=2, hi=8)
        act_bits = bits if act_bits is None else check_bits(act_bits, lo=2, hi=8, name="act_bits")
        self.layer = layer
        step_dtype = layer.weight.dtype if layer.weight.dtype in LSQ_DTYPES else torch.float32
        self.act_quant = ActQuantizer(act_bits, method=method, observer=observer, signed=act_signed, dtype=step_dtype)
        self.weight_quant = WeightQuantizer(layer.weight, bits, method=method)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        weight = self.layer.weight
        x_hat = self.act_quant(x)
        w_hat = self.weight_quant(weight)
        s_x = self.act_quant.qparams()[0].to(x_hat.dtype)
        s_w = self.weight_quant.qparams(weight)[0].to(w_hat.dtype)
        q_x = _integer_codes(x_hat, s_x)
        q_w = _integer_codes(w_hat, s_w.reshape([-1] + [1] * (weight.ndim - 1)))
        rescale = s_x * s_w  # one per output channel
        if isinstance(self.layer, nn.Conv2d):
            acc = self.layer._conv_forward(q_x, q_w, None)
            rescale = rescale.reshape(-1, 1, 1)
        else:
            acc = F.linear(q_x, q_w)
        y = acc * rescale
        bias = self.layer.bias
        if bias is not None:
            y = y + (bias.reshape(-1, 1, 1) if isinstance(self.layer, nn.Conv2d) else bias)
        return y


# ---------------------------------------------------------------------------- whole models


def _check_model(model: nn.Module) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")


def qat_layers(model: nn.Module) -> Iterator[tuple[str, QATLayer]]:
    """``(name, QATLayer)`` for every swapped layer of ``model``. Taught in 06_qat."""
    _check_model(model)
    for name, module in model.named_modules():
        if isinstance(module, QATLayer):
            yield name, module


def make_qat_model(
    model: nn.Module,
    bits: int = 8,
    *,
    act_bits: int | None = None,
    method: str = "minmax",
    observer: str = "ema",
    dtype: torch.dtype | None = None,
) -> nn.Module:
    """A deep copy of ``model`` with every ``nn.Conv2d``/``nn.Linear`` wrapped in a ``QATLayer``.

    The original model is left untouched. Observers start empty: run ``calibrate`` before
    evaluating (PTQ) or before fine-tuning (QAT). ``dtype`` (default: keep the model's) casts the
    copy, e.g. ``torch.float64`` so that fake-quant training does not depend on the CPU's float32
    summation order (scales and zero-points are still computed in float32). Taught in 06_qat.
    """
    _check_model(model)
    bits = check_bits(bits, lo=2, hi=8)
    if act_bits is not None:
        check_bits(act_bits, lo=2, hi=8, name="act_bits")
    check_choice(method, "method", METHODS)
    check_choice(observer, "observer", OBSERVERS)
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"dtype must be a floating-point torch.dtype or None, got {dtype!r}")
    new = copy.deepcopy(model)

    def swap(parent: nn.Module) -> None:
        for name, child in parent.named_children():
            if isinstance(child, (nn.Conv2d, nn.Linear)):
                setattr(parent, name, QATLayer(child, bits, act_bits=act_bits, method=method, observer=observer))
            elif not isinstance(child, QATLayer):
                swap(child)

    swap(new)
    return new if dtype is None else new.to(dtype)


@contextmanager
def _calibrating(model: nn.Module):
    observers = [m for m in model.modules() if isinstance(m, RangeObserver)]
    for obs in observers:
        obs.calibrating = True
    try:
        yield
    finally:
        for obs in observers:
            obs.calibrating = False


@torch.no_grad()
def calibrate(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> nn.Module:
    """Run ``x`` through ``model`` in eval mode with its (enabled) observers recording ranges; returns ``model``.

    BatchNorm statistics do not change (eval mode). ``x`` is cast to the model's float dtype
    (``helpers.models.model_dtype``). Taught in 06_qat.
    """
    _check_model(model)
    check_float_tensor(x, "x")
    batch_size = check_int(batch_size, "batch_size", lo=1)
    x = as_model_dtype(x, model)
    model.eval()
    with _calibrating(model):
        for start in range(0, len(x), batch_size):
            model(x[start : start + batch_size])
    return model


def freeze_observers(model: nn.Module) -> nn.Module:
    """Stop every ``RangeObserver`` in ``model`` (activation ranges become constants); returns ``model``.

    Taught in 06_qat.
    """
    _check_model(model)
    for module in model.modules():
        if isinstance(module, RangeObserver):
            module.freeze()
    return model


def ptq_model(
    model: nn.Module,
    bits: int,
    x_calib: torch.Tensor,
    *,
    act_bits: int | None = None,
    observer: str = "minmax",
    dtype: torch.dtype | None = None,
) -> nn.Module:
    """Post-training quantization with the QAT quantizers: swap, calibrate on ``x_calib``, freeze; eval mode.

    Weights per-channel symmetric min-max, activations per-tensor affine from the calibration
    range: the same fake quantizers a QAT model trains through, so PTQ and QAT compare like with
    like. ``dtype`` as in ``make_qat_model``. Taught in 06_qat.
    """
    qmodel = make_qat_model(model, bits, act_bits=act_bits, method="minmax", observer=observer, dtype=dtype)
    calibrate(qmodel, x_calib)
    return freeze_observers(qmodel).eval()


@torch.no_grad()
def record_layer_inputs(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> dict[str, list[torch.Tensor]]:
    """The inputs of every ``nn.Conv2d``/``nn.Linear`` of a float ``model`` on ``x``, batch by batch (eval mode).

    Keys are the module names, which ``make_qat_model`` keeps for its ``QATLayer``s, so the result
    feeds ``layer_input_ranges`` and ``set_act_ranges``. ``x`` is cast to the model's dtype.
    Taught in 06_qat.
    """
    _check_model(model)
    check_float_tensor(x, "x")
    batch_size = check_int(batch_size, "batch_size", lo=1)
    layers = {n: m for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    if not layers:
        raise ValueError("model must contain at least one nn.Conv2d or nn.Linear")
    if any(isinstance(m, QATLayer) for m in model.modules()):
        raise ValueError("model must be the float model, not a QAT model (record before make_qat_model)")
    inputs: dict[str, list[torch.Tensor]] = {n: [] for n in layers}
    x = as_model_dtype(x, model)
    hooks = [m.register_forward_pre_hook(lambda _m, a, n=n: inputs[n].append(a[0].detach())) for n, m in layers.items()]
    run_hooked(model, x, batch_size, hooks)
    return inputs


def layer_input_ranges(inputs: dict[str, list[torch.Tensor]], method: str, bits: int) -> dict[str, tuple[float, float]]:
    """Each layer's clipping range from lesson 05's observer ``method`` (one of ``CLIP_METHODS``) for ``bits``-bit codes.

    ``inputs`` comes from ``record_layer_inputs``; ``helpers.observers.observer_range`` does the work.
    Taught in 06_qat.
    """
    check_choice(method, "method", CLIP_METHODS)
    bits = check_bits(bits, lo=2, hi=8)
    if not isinstance(inputs, dict) or not inputs:
        raise ValueError("inputs must be a non-empty dict from record_layer_inputs")
    return {n: tuple(float(v) for v in observer_range(method, batches, bits)) for n, batches in inputs.items()}


def set_act_ranges(model: nn.Module, ranges: dict[str, tuple[float, float]]) -> nn.Module:
    """Give every ``QATLayer``'s activation quantizer the range ``ranges[name]``, freeze it, eval mode; returns ``model``.

    Every ``QATLayer`` of ``model`` must have an entry (a ``(lo, hi)`` pair with ``lo <= hi``).
    Taught in 06_qat.
    """
    _check_model(model)
    layers = dict(qat_layers(model))
    if not layers:
        raise ValueError("model has no QATLayer: build it with make_qat_model first")
    if not isinstance(ranges, dict):
        raise TypeError(f"ranges must be a dict of layer name -> (lo, hi), got {type(ranges).__name__}")
    missing = sorted(set(layers) - set(ranges))
    if missing:
        raise ValueError(f"ranges has no entry for the QAT layers {missing}")
    for name, layer in layers.items():
        lo, hi = (check_finite_number(v, f"ranges[{name!r}]") for v in ranges[name])
        if lo > hi:
            raise ValueError(f"ranges[{name!r}] must have lo <= hi, got ({lo}, {hi})")
        if layer.act_quant.method != "minmax":
            raise ValueError(f"set_act_ranges needs method='minmax' quantizers, got {layer.act_quant.method!r}")
        obs = layer.act_quant.observer
        obs.min_val.fill_(lo)
        obs.max_val.fill_(hi)
    return freeze_observers(model).eval()


def _use_running_stats(module: nn.Module, args) -> None:
    module.training = False  # a forward pre-hook: this BatchNorm normalizes with (and keeps) its running statistics


def freeze_bn_stats(model: nn.Module) -> nn.Module:
    """From now on every BatchNorm of ``model`` normalizes with its running statistics and stops updating them.

    Also in train mode, as ``torch.ao.nn.intrinsic.qat.freeze_bn_stats`` does for fused ConvBn
    modules: training then sees the normalization the deployed (folded) model will use, while
    ``gamma``/``beta`` keep learning. Returns ``model``. Taught in 06_qat.
    """
    _check_model(model)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        raise ValueError("model has no BatchNorm layer to freeze")
    for bn in bns:
        if bn.running_mean is None:
            raise ValueError("freeze_bn_stats needs BatchNorm layers with running statistics")
        if not getattr(bn, "_qat_stats_frozen", False):
            bn.register_forward_pre_hook(_use_running_stats)
            bn._qat_stats_frozen = True
        bn.training = False
    return model


@torch.no_grad()
def model_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """``model``'s outputs on ``x`` in eval mode, as float64 (inputs cast to the model's dtype). Taught in 06_qat."""
    _check_model(model)
    check_float_tensor(x, "x")
    batch_size = check_int(batch_size, "batch_size", lo=1)
    x = as_model_dtype(x, model)
    model.eval()
    return torch.cat([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]).double()


def logit_kl(ref_logits: torch.Tensor, logits: torch.Tensor) -> float:
    """Mean over rows of ``KL(softmax(ref) || softmax(logits))`` in nats, computed in float64.

    0 when the two models predict the same distribution; a continuous measure of fidelity to the
    reference (fp32) model that separates methods whose top-1 accuracy ties. Taught in 06_qat.
    """
    check_float_tensor(ref_logits, "ref_logits")
    check_float_tensor(logits, "logits")
    if ref_logits.ndim != 2 or ref_logits.shape != logits.shape:
        raise ValueError(
            f"ref_logits and logits must be 2-D (rows, classes) of the same shape, got "
            f"{tuple(ref_logits.shape)} and {tuple(logits.shape)}"
        )
    log_p = torch.log_softmax(ref_logits.double(), dim=1)
    log_q = torch.log_softmax(logits.double(), dim=1)
    return float((log_p.exp() * (log_p - log_q)).sum(1).mean())


# ---------------------------------------------------------------------------- exercise checkers


def _fq_cases() -> list[tuple]:
    """Inputs on which the classic wrong fake-quant answers fail, with torch's answers."""
    cases = []
    ties = torch.tensor([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.5, -3.5])  # x / s lands exactly on .5
    x_zp = torch.tensor([-1.0, -0.3, 0.0, 0.45, 0.9, 1.6, 2.2])
    x_clip = torch.tensor([-3.0, -1.3, -0.9, 0.2, 1.1, 1.2, 1.8, 4.0])
    for label, x, s, z, qmin, qmax in (
        ("ties", ties * 0.25, 0.25, 0, -8, 7),
        ("zero point", x_zp, 0.1, 3, -8, 7),
        ("clip", x_clip, 0.25, 0, -4, 3),
        ("clip + zero point", x_clip, 0.25, 2, 0, 15),
    ):
        want = torch.fake_quantize_per_tensor_affine(x, s, z, qmin, qmax)
        cases.append(((x.clone(), s, z, qmin, qmax), want, label))
    return cases


_FQ_HINTS = {
    "ties": "torch.round rounds half to even (2.5 -> 2, -2.5 -> -2); floor(v + 0.5) rounds half up",
    "zero point": "the code is round(x / scale) + zero_point, and you subtract zero_point again before multiplying by scale",
    "clip": "clamp the integer code to qmin..qmax (code units), not x to qmin..qmax",
    "clip + zero point": "clamp round(x / scale) + zero_point to qmin..qmax, then (q - zero_point) * scale",
}


def check_fake_quant(fn, *, quiet: bool = False) -> bool:
    """Grade ``fn(x, scale, zero_point, qmin, qmax) -> x_hat`` (fake quantization, forward only).

    The right answers come from ``torch.fake_quantize_per_tensor_affine``. The cases reject
    rounding half up (``floor(v + 0.5)``) on exact ties, clamping ``x`` (or ``x / scale`` before
    rounding) in the wrong units, and forgetting the zero-point (or adding it without removing it).
    Taught in 06_qat.
    """
    hint = "x_hat = (clamp(round(x / scale) + zero_point, qmin, qmax) - zero_point) * scale"
    return grade("fake_quant", fn, _fq_cases(), hint=hint, hints=_FQ_HINTS, compare=close(0, 1e-6), quiet=quiet)


def _ste_cases() -> list[tuple]:
    """Inputs whose STE gradient the classic wrong masks get wrong, with torch's gradient."""
    cases = []
    # codes just inside and just outside each end; x / s in (qmax, qmax + 0.5) rounds back inside
    x = torch.tensor([-4.6, -4.5, -4.4, -4.0, -3.7, 0.1, 2.9, 3.0, 3.3, 3.5, 3.6, 5.0]) * 0.5
    for label, s, z, qmin, qmax in (("edges", 0.5, 0, -4, 3), ("edges + zero point", 0.5, 3, -1, 6)):
        xr = x.clone().requires_grad_()
        (g,) = torch.autograd.grad(torch.fake_quantize_per_tensor_affine(xr, s, z, qmin, qmax).sum(), xr)
        want_fwd = torch.fake_quantize_per_tensor_affine(x, s, z, qmin, qmax)
        cases.append(((x.clone(), s, z, qmin, qmax), (want_fwd, g), label))
    return cases


_STE_HINTS = {
    "edges": (
        "the gradient is 1 where the *rounded* code round(x / s) + z lies in qmin..qmax (ends included) and 0 "
        "where it was clipped; x / s = qmax + 0.4 rounds to qmax and still gets gradient"
    ),
    "edges + zero point": "add the zero point before comparing the code with qmin..qmax",
}


def check_ste(fn, *, quiet: bool = False) -> bool:
    """Grade ``fn(x, scale, zero_point, qmin, qmax)``: forward ``x_hat`` and the STE gradient ``dx_hat.sum()/dx``.

    Both come from ``torch.fake_quantize_per_tensor_affine`` and its autograd. The cases reject the
    classic wrong masks: gradient 1 everywhere (no clipping), the mask taken on the unrounded
    ``x / scale`` (loses the half step past each end), strict inequalities (drops the end codes),
    the mask taken after clamping (always 1) and the mask without the zero-point. Taught in 06_qat.
    """

    def run(x, s, z, qmin, qmax):
        xr = x.clone().requires_grad_()
        out = fn(xr, s, z, qmin, qmax)
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"return a tensor, got {type(out).__name__}")
        if not out.requires_grad:
            return out.detach(), torch.zeros_like(x)  # no gradient at all reaches x
        (g,) = torch.autograd.grad(out.sum(), xr, allow_unused=True)
        return out.detach(), torch.zeros_like(x) if g is None else g

    tol = close(0, 1e-6)

    def compare(got, want):
        for part, g, w in zip(("forward", "gradient"), got, want):
            why = tol(g, w)
            if why is not None:
                return f"{part}: {why}"
        return None

    hint = "return x_hat with the STE gradient: x * m + (x_hat - x * m).detach(), m the mask of codes inside qmin..qmax"
    return grade("STE", fn and run, _ste_cases(), hint=hint, hints=_STE_HINTS, compare=compare, quiet=quiet)


#: The inputs of lesson 06's exercise on the LSQ step gradient (step 1, codes -4..3, gradient scale 1).
STEP_GRAD_X = (0.3, 1.6, 2.5, -5.0, 9.0)


def check_step_grad(value, *, quiet: bool = False) -> bool:
    """Grade a number: ``dL/ds`` of ``L = sum(x_hat)`` for LSQ at ``x = STEP_GRAD_X``, step 1, codes -4..3, g = 1.

    The answer comes from torch's learnable fake-quant kernel
    (``torch._fake_quantize_learnable_per_tensor_affine``). ``STEP_GRAD_X`` holds a tie (2.5 rounds to
    2) and one value clipped at each end, so these are rejected: ``v - round(v)`` (sign flipped),
    clipped values contributing 0 or ``x / s``, round half up, and ``qmax`` for both ends.
    Taught in 06_qat.
    """
    x = torch.tensor(STEP_GRAD_X)
    step = torch.tensor([1.0], requires_grad=True)
    torch._fake_quantize_learnable_per_tensor_affine(x, step, torch.tensor([0.0]), -4, 3, 1.0).sum().backward()
    want = float(step.grad)

    def fn():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"the answer must be a number, got {type(value).__name__}")
        return float(value)

    hint = (
        "inside the range each value adds round(v) - v (v = x / s, round half to even); "
        "a value clipped below adds qmin, one clipped above adds qmax"
    )
    return grade(
        "LSQ step gradient", None if value is None else fn, [((), want)], hint=hint, compare=close(0, 1e-5), quiet=quiet
    )


_STE_X_LIM = 2.0


def ste_view(bits: int = 3, clip: float = 1.0, n: int = 801) -> dict[str, object]:
    """Forward staircase and STE gradient mask of a ``bits``-bit signed grid clipped at ``[-clip, clip]``.

    Returns ``x`` (``n`` points on [-2, 2]), ``x_hat`` (``fake_quant_ste(x)``), ``mask`` (the
    gradient autograd really returns: 1 where the STE passes it, 0 where the code is clipped),
    ``scale``, ``zero_point``, ``qmin``, ``qmax``, ``bits``, ``clip`` and ``readout`` (text). Drawn
    by ``helpers.plotting.qat.ste_figure``. Taught in 06_qat.
    """
    bits = check_bits(bits, lo=2, hi=8)
    clip = check_finite_number(clip, "clip")
    if clip <= 0:
        raise ValueError(f"clip must be > 0, got {clip}")
    n = check_int(n, "n", lo=2)
    qmin, qmax = qrange(bits, signed=True)
    scale, zero_point = affine_qparams(-clip, clip, bits)
    x = torch.linspace(-_STE_X_LIM, _STE_X_LIM, n, requires_grad=True)
    x_hat = fake_quant_ste(x, scale, zero_point, qmin, qmax)
    x_hat.sum().backward()
    mask = x.grad.detach()
    lo = (qmin - int(zero_point)) * float(scale)
    hi = (qmax - int(zero_point)) * float(scale)
    readout = (
        f"bits={bits}  levels={qmax - qmin + 1}  scale={float(scale):.4g}  zero_point={int(zero_point)}\n"
        f"grid spans [{lo:.4g}, {hi:.4g}]; gradient passes on {100 * float(mask.mean()):.1f}% of x in [-2, 2], 0 outside"
    )
    return {
        "x": x.detach(),
        "x_hat": x_hat.detach(),
        "mask": mask,
        "scale": float(scale),
        "zero_point": int(zero_point),
        "qmin": qmin,
        "qmax": qmax,
        "bits": bits,
        "clip": clip,
        "readout": readout,
    }


def ste_grid_view(bits_list=(2, 3, 4), clips=(0.5, 1.5)) -> list[list[dict[str, object]]]:
    """``ste_view`` for every bit width (outer list) and clip (inner list). Taught in 06_qat."""
    bits_list, clips = list(bits_list), list(clips)
    if not bits_list or not clips:
        raise ValueError("bits_list and clips must be non-empty")
    return [[ste_view(b, c) for c in clips] for b in bits_list]
