"""Post-training dynamic quantization from scratch: weight-only int8 and dynamic int8 Linear layers.

* ``WeightOnlyInt8Linear`` (W8A32): weights stored as int8 codes with one symmetric scale per
  output channel, dequantized on the fly; activations stay float32.
* ``DynamicInt8Linear`` (W8A8, dynamic): the activation range is taken from each input at run
  time (per tensor, or per token), activations and weights are multiplied as integers with an
  int32 accumulator (``torch._int_mm`` where the shapes allow it), and one float rescale
  ``y = acc * (scale_x * scale_w) + bias`` turns the result back into float32.

With the defaults it reproduces ``torch.ao.quantization.quantize_dynamic``'s
``DynamicQuantizedLinear``: quint8 activations with a zero point, qint8 symmetric weights, and
on the x86/fbgemm engine *7-bit* activations (``reduce_range=True``, codes 0..127), which keeps
the u8 x s8 pair products of fbgemm's AVX2 kernels from overflowing 16 bits.

Around the layers: a swapper that replaces ``nn.Linear`` modules by name, a per-layer
sensitivity analysis (quantize one layer at a time, measure the sentence-embedding cosine), and
a mixed-precision builder that keeps the named sensitive layers in float.

Taught in 04_dynamic.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from helpers._validate import (
    check_bits,
    check_choice,
    check_float32_tensor,
    check_float_tensor,
    check_int,
    check_tensor,
)
from helpers.affine import affine_qparams, calc_qparams, fake_quantize, qrange, quantize
from helpers.kernels import _row_major, int8_matmul

__all__ = [
    "WEIGHT_GRANULARITIES",
    "ACT_GRANULARITIES",
    "default_reduce_range",
    "quantize_weight_int8",
    "dynamic_act_qparams",
    "int8_matmul",
    "WeightOnlyInt8Linear",
    "DynamicInt8Linear",
    "Float32Island",
    "float64_model",
    "linear_names",
    "swap_linears",
    "linear_weight_state",
    "capture_linear_inputs",
    "outlier_ratio",
    "fake_quant_layer",
    "layer_view",
    "layer_grid_view",
    "outliers_view",
    "layer_sensitivity",
    "mixed_precision",
    "smallest_keep_set",
    "torch_per_token_linear",
    "check_per_token_linear",
    "check_act_qparams",
    "LATENCY_BATCH_SIZES",
    "minilm_batch",
    "latency_sweep",
]

#: Batch sizes (sentences per call) at which lesson 04 and its benchmark time MiniLM.
LATENCY_BATCH_SIZES = (1, 4, 16)

WEIGHT_GRANULARITIES = ("tensor", "channel")
ACT_GRANULARITIES = ("tensor", "token")
KINDS = ("dynamic", "weight_only")
BACKENDS = ("torch", "reference")


def default_reduce_range(engine: str | None = None) -> bool:
    """Whether PyTorch's dynamic Linear uses 7-bit activations on ``engine`` (default: the current one).

    x86 and fbgemm use ``reduce_range=True`` (activation codes 0..127); qnnpack and onednn use
    the full 0..255. Taught in 04_dynamic.
    """
    if engine is None:
        engine = torch.backends.quantized.engine
    if not isinstance(engine, str):
        raise TypeError(f"engine must be a string such as 'x86' or 'qnnpack', got {type(engine).__name__}")
    return engine in ("x86", "fbgemm")


def quantize_weight_int8(w: torch.Tensor, granularity: str = "channel") -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 codes of a weight matrix: ``q = clamp(round(w / scale), -128, 127)``, ``scale = max|w| / 127.5``.

    ``granularity="channel"`` gives one scale per output row (shape ``(out, 1)``), ``"tensor"`` one
    scale (shape ``(1, 1)``). The scale rule is ``MinMaxObserver``'s symmetric one, so the codes equal
    those of ``quantize_dynamic`` with ``per_channel_dynamic_qconfig`` / ``default_dynamic_qconfig``.
    Returns ``(q int8, scale float32)``. Taught in 04_dynamic.
    """
    check_float32_tensor(w, "w", kernel="torch's dynamic int8 Linear weights")
    check_float_tensor(w, "w")
    if w.ndim != 2:
        raise ValueError(f"w must be a 2-d weight matrix (out_features, in_features), got shape {tuple(w.shape)}")
    check_choice(granularity, "granularity", WEIGHT_GRANULARITIES)
    axis = 0 if granularity == "channel" else None
    scale, zero_point = calc_qparams(w.detach(), 8, signed=True, symmetric=True, axis=axis)
    q = quantize(w.detach(), scale, zero_point, -128, 127, axis=axis)
    return q, scale.reshape(-1, 1)


def dynamic_act_qparams(
    x: torch.Tensor, granularity: str = "tensor", *, symmetric: bool = False, reduce_range: bool = False
) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """Run-time activation qparams of a 2-d input ``x`` (rows = tokens): ``(scale, zero_point, qmin, qmax)``.

    Affine (default, as torch.ao): unsigned codes 0..255, or 0..127 with ``reduce_range``;
    ``scale = (max - min) / (qmax - qmin)`` over the range widened to include 0. Symmetric (as
    torchao's dynamic int8): signed codes -128..127, ``scale = max|x| / 127.5``, zero point 0.
    ``granularity="tensor"`` gives shape ``(1, 1)``, ``"token"`` one row each, shape ``(rows, 1)``.
    Taught in 04_dynamic.
    """
    check_float_tensor(x, "x")
    if x.ndim != 2:
        raise ValueError(f"x must be 2-d (tokens, features), got shape {tuple(x.shape)}")
    check_choice(granularity, "granularity", ACT_GRANULARITIES)
    if not isinstance(symmetric, bool) or not isinstance(reduce_range, bool):
        raise TypeError("symmetric and reduce_range must be True or False")
    bits = 7 if reduce_range else 8
    signed = symmetric
    if granularity == "tensor":
        lo, hi = torch.aminmax(x.detach().float())
    else:
        lo, hi = torch.aminmax(x.detach().float(), dim=1)
    qmin, qmax = qrange(bits, signed=signed)
    if not symmetric:
        lo, hi = _small_scale_cutoff(lo, hi, qmax - qmin)
    scale, zero_point = affine_qparams(lo, hi, bits, signed=signed, symmetric=symmetric)
    return scale.reshape(-1, 1), zero_point.reshape(-1, 1), qmin, qmax


#: fbgemm/PyTorch's ``ChooseQuantizationParams`` never lets a dynamic activation scale fall below this.
SMALL_SCALE_THRESHOLD = 6.1e-5


def _small_scale_cutoff(lo: torch.Tensor, hi: torch.Tensor, levels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Widen ranges whose scale ``(hi - lo) / levels`` would be below ``SMALL_SCALE_THRESHOLD``, as fbgemm does.

    A range touching 0 on one side is stretched on the other; otherwise both ends are scaled up
    by the same factor. Without this, a near-constant input (e.g. one token of tiny values)
    gets a finer grid here than in torch's kernel and the outputs differ by up to a code.
    """
    lo = torch.clamp(lo, max=0.0)
    hi = torch.clamp(hi, min=0.0)
    scale = (hi.double() - lo.double()) / levels
    small = scale < SMALL_SCALE_THRESHOLD
    if not bool(small.any()):
        return lo, hi
    span = SMALL_SCALE_THRESHOLD * levels
    amplifier = SMALL_SCALE_THRESHOLD / scale.clamp(min=1e-300)
    new_lo = torch.where(hi == 0, torch.full_like(lo, -span), torch.where(lo == 0, lo, (lo * amplifier).float()))
    new_hi = torch.where(lo == 0, torch.full_like(hi, span), torch.where(hi == 0, hi, (hi * amplifier).float()))
    return torch.where(small, new_lo, lo), torch.where(small, new_hi, hi)


def _check_linear(module: nn.Module, name: str = "linear") -> nn.Linear:
    if not isinstance(module, nn.Linear):
        raise TypeError(
            f"{name} must be a torch.nn.Linear, got {type(module).__name__} "
            "(only Linear layers are dynamically quantized; Conv2d, Embedding, ... stay float)"
        )
    return module


def _check_input(x: torch.Tensor, in_features: int) -> None:
    check_tensor(x, "x", allow_empty=True)
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got dtype {x.dtype}")
    if x.ndim == 0 or x.shape[-1] != in_features:
        raise ValueError(f"x must have last dimension in_features={in_features}, got shape {tuple(x.shape)}")
    if x.numel() == 0:
        raise ValueError(f"x must be a non-empty batch, got shape {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("x must contain only finite values (no NaN or inf): its range sets the activation scale")


def _check_codes(q: object, scale: object, bias: object) -> None:
    """The stored parts of an int8 layer: int8 codes ``(out, in)``, positive finite float scales ``(out, 1)``
    or ``(1, 1)``, and a finite float bias ``(out,)`` or ``None``."""
    check_tensor(q, "q")
    if q.dtype != torch.int8 or q.ndim != 2:
        raise TypeError(
            f"q must be a 2-d torch.int8 tensor of weight codes, got dtype {q.dtype} and shape {tuple(q.shape)}"
        )
    check_float_tensor(scale, "scale")
    out = q.shape[0]
    if tuple(scale.shape) not in ((out, 1), (1, 1)):
        raise ValueError(
            f"scale must have shape ({out}, 1) (per channel) or (1, 1) (per tensor), got {tuple(scale.shape)}"
        )
    if not bool((scale > 0).all()):
        raise ValueError("scale must be > 0 everywhere")
    if bias is not None:
        check_float_tensor(bias, "bias")
        if tuple(bias.shape) != (out,):
            raise ValueError(f"bias must be None or have shape ({out},), got {tuple(bias.shape)}")


class WeightOnlyInt8Linear(nn.Module):
    """W8A32 Linear: ``y = x @ (q * scale).T + bias`` with int8 ``q`` and per-channel (or per-tensor) scales.

    The weight lives in memory as int8 codes (4x smaller than float32) and is dequantized on the
    fly in each forward; the matmul itself is float32. Taught in 04_dynamic.
    """

    def __init__(self, q: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        _check_codes(q, scale, bias)
        self.in_features, self.out_features = q.shape[1], q.shape[0]
        self.register_buffer("qweight", q)
        self.register_buffer("scale", scale.float())
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())

    @classmethod
    def from_float(cls, linear: nn.Linear, granularity: str = "channel") -> WeightOnlyInt8Linear:
        """Quantize the weights of ``linear`` (symmetric int8, ``granularity`` 'channel' or 'tensor')."""
        _check_linear(linear)
        q, scale = quantize_weight_int8(linear.weight.float(), granularity)  # torch's from_float casts too
        return cls(q, scale, linear.bias)

    def dequantized_weight(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``w_hat = q * scale`` in float32 (or float64, where every product is exact)."""
        return self.qweight.to(dtype) * self.scale.to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, self.in_features)
        dtype = torch.float64 if x.dtype == torch.float64 else torch.float32  # a float64 model stays float64
        bias = None if self.bias is None else self.bias.to(dtype)
        return nn.functional.linear(x.to(dtype), self.dequantized_weight(dtype), bias)

    def extra_repr(self) -> str:
        per = "channel" if self.scale.numel() > 1 else "tensor"
        return f"in_features={self.in_features}, out_features={self.out_features}, weights=int8 per-{per}"


class DynamicInt8Linear(nn.Module):
    """Dynamic W8A8 Linear: quantize ``x`` with its own range, int8 x int8 -> int32, one rescale.

    ``acc = (q_x - offset) @ q_w.T + (offset - zp_x) * rowsum(q_w)`` (exact in int32; ``offset`` is
    128 for unsigned codes so they fit int8, else 0), then ``y = acc * (scale_x * scale_w) + bias``.
    ``reduce_range=None`` picks what the reference library does: for affine activations the current
    torch engine's choice (7-bit on x86/fbgemm), for symmetric ones torchao's (full 8 bits).
    Taught in 04_dynamic.
    """

    def __init__(
        self,
        q: torch.Tensor,
        scale: torch.Tensor,
        bias: torch.Tensor | None,
        *,
        act_granularity: str = "tensor",
        act_symmetric: bool = False,
        reduce_range: bool | None = None,
    ) -> None:
        super().__init__()
        _check_codes(q, scale, bias)
        check_choice(act_granularity, "act_granularity", ACT_GRANULARITIES)
        if not isinstance(act_symmetric, bool):
            raise TypeError(f"act_symmetric must be True or False, got {act_symmetric!r}")
        if reduce_range is None:  # torch.ao's choice for affine activations, torchao's (False) for symmetric
            reduce_range = False if act_symmetric else default_reduce_range()
        if not isinstance(reduce_range, bool):
            raise TypeError(f"reduce_range must be True, False or None, got {reduce_range!r}")
        self.in_features, self.out_features = q.shape[1], q.shape[0]
        self.act_granularity, self.act_symmetric, self.reduce_range = act_granularity, act_symmetric, reduce_range
        self.register_buffer("qweight", q)
        self.register_buffer("scale", scale.float())
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())
        self.register_buffer("qweight_t", _row_major(q.t()), persistent=False)
        self.register_buffer("row_sum", q.to(torch.int32).sum(dim=1), persistent=False)

    @classmethod
    def from_float(
        cls,
        linear: nn.Linear,
        weight_granularity: str = "tensor",
        act_granularity: str = "tensor",
        act_symmetric: bool = False,
        reduce_range: bool | None = None,
    ) -> DynamicInt8Linear:
        """Quantize ``linear``'s weights now; activations are quantized at every call."""
        _check_linear(linear)
        q, scale = quantize_weight_int8(linear.weight.float(), weight_granularity)  # torch's from_float casts too
        return cls(
            q,
            scale,
            linear.bias,
            act_granularity=act_granularity,
            act_symmetric=act_symmetric,
            reduce_range=reduce_range,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        acc, rescale = self.accumulate(x)
        y = acc.float() * rescale
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features)

    def accumulate(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The integer part of ``forward``: ``(acc, rescale)`` with ``y = acc * rescale + bias``.

        ``acc`` (rows, out_features) int32 is ``sum_k (q_x - zp_x) q_w`` — exact integers, the same
        on every CPU; ``rescale = scale_x * scale_w`` (float32, shape broadcastable to ``acc``).
        """
        _check_input(x, self.in_features)
        x2 = x.reshape(-1, self.in_features).float()
        scale_x, zp_x, qmin, qmax = dynamic_act_qparams(
            x2, self.act_granularity, symmetric=self.act_symmetric, reduce_range=self.reduce_range
        )
        axis = None if self.act_granularity == "tensor" else 0
        q_x = quantize(x2, scale_x.reshape(-1), zp_x.reshape(-1), qmin, qmax, axis=axis)
        offset = 128 if qmin >= 0 else 0
        acc = int8_matmul((q_x.to(torch.int32) - offset).to(torch.int8), self.qweight_t)
        acc = (acc + (offset - zp_x) * self.row_sum).to(torch.int32)  # zero-point correction, exact
        return acc, scale_x * self.scale.reshape(1, -1)

    def extra_repr(self) -> str:
        per = "channel" if self.scale.numel() > 1 else "tensor"
        act = f"{'int8 symmetric' if self.act_symmetric else ('uint7' if self.reduce_range else 'uint8') + ' affine'}"
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, weights=int8 per-{per}, "
            f"activations={act} per-{self.act_granularity} (dynamic)"
        )


class Float32Island(nn.Module):
    """A float32-only layer inside a float64 model: ``inner`` gets the float32 cast of its inputs.

    Floating-point tensor arguments are cast to float32; a floating-point output is cast back to the
    dtype of the first floating-point argument. The layer's own arithmetic (an int8 kernel and its
    float32 rescale, or torch.ao's dynamic int8 Linear that accepts float32 only) is exactly what it
    does in a float32 model; only the float around it is wider. Built by :func:`float64_model`;
    also used by ``helpers.bnb.torch_dynamic_int8``. Taught in 04_dynamic.
    """

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        if not isinstance(inner, nn.Module):
            raise TypeError(f"inner must be an nn.Module, got {type(inner).__name__}")
        self.inner = inner

    def forward(self, *args, **kwargs):
        floats = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor) and a.is_floating_point()]
        dtype = floats[0].dtype if floats else None

        def to32(t):
            return t.float() if isinstance(t, torch.Tensor) and t.is_floating_point() else t

        out = self.inner(*(to32(a) for a in args), **{k: to32(v) for k, v in kwargs.items()})
        if dtype is not None and isinstance(out, torch.Tensor) and out.is_floating_point():
            return out.to(dtype)
        return out


def _plain(t: torch.Tensor | None) -> bool:
    return t is None or type(t) in (torch.Tensor, nn.Parameter)


def _float64_capable(module: nn.Module) -> bool:
    """Quantized layers that compute correctly on float64 inputs: weight-only int8 (dequantize, float matmul)."""
    if isinstance(module, WeightOnlyInt8Linear):
        return True
    weight = module._parameters.get("weight")
    # torchao's weight-only Int8Tensor multiplies the int8 codes in the activation's dtype
    return (
        type(weight).__name__ == "Int8Tensor"
        and getattr(weight, "act_quant_kwargs", 0) is None
        and getattr(weight, "act_pre_scale", 0) is None
    )


_CODE_DTYPES = (torch.int8, torch.uint8, torch.int16, torch.int32)


def _needs_float32(module: nn.Module) -> bool:
    """Layers whose kernels take float32 only: our dynamic int8 layer, torch.ao's quantized modules, any layer
    holding integer or tensor-subclass weights (torchao dynamic, bitsandbytes) that is not float64-capable."""
    if isinstance(module, DynamicInt8Linear) or type(module).__module__.startswith("torch.ao.nn.quantized"):
        return True
    params = [t for t in module._parameters.values() if t is not None]
    buffers = [t for t in module._buffers.values() if t is not None]
    odd = any(not _plain(t) or not t.is_floating_point() for t in params) or any(
        not _plain(t) or t.dtype in _CODE_DTYPES
        for t in buffers  # int64 index buffers (position ids) are fine
    )
    return odd and not _float64_capable(module)


def float64_model(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose float arithmetic runs in float64, its int8 layers as they are.

    Float parameters and buffers become float64, so LayerNorm, softmax, GELU, attention and every
    Linear left in float compute in float64: a float64 result rounded to float32 is the same on
    every CPU, while a float32 sum depends on the kernel's summation order, which quantization then
    amplifies (a last-bit change moves an activation range, a code, a ranking). Layers whose kernels
    take float32 only (torch.ao's dynamic Linear, ``DynamicInt8Linear``, torchao's dynamic int8) are
    wrapped in :class:`Float32Island`: they see the exact float32 cast of their input, as in a
    float32 model. Weight-only int8 layers dequantize in float64. Taught in 04_dynamic.
    """
    _check_model(model)
    target = copy.deepcopy(model)

    def convert(module: nn.Module) -> None:
        for name, child in list(module._modules.items()):
            if child is None or isinstance(child, Float32Island):
                continue
            if _needs_float32(child):
                module._modules[name] = Float32Island(child)
            else:
                convert(child)
        if _float64_capable(module):
            return
        for p in module._parameters.values():
            if p is not None and _plain(p) and p.is_floating_point():
                p.data = p.data.double()
        for name, b in module._buffers.items():
            if b is not None and _plain(b) and b.is_floating_point():
                module._buffers[name] = b.double()

    if _needs_float32(target):
        target = Float32Island(target)
    else:
        convert(target)
    target._float64_arithmetic = True  # embed(..., float64=True) uses it as it is
    return target


def _check_model(model: object) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return model


def _is_plain_linear(module: nn.Module) -> bool:
    # MultiheadAttention's out_proj reads .weight directly, so it must stay a real Linear.
    return isinstance(module, nn.Linear) and not isinstance(module, nn.modules.linear.NonDynamicallyQuantizableLinear)


def linear_names(model: nn.Module) -> list[str]:
    """Qualified names of the swappable ``nn.Linear`` modules of ``model``, in module order. Taught in 04_dynamic."""
    _check_model(model)
    return [name for name, module in model.named_modules() if _is_plain_linear(module)]


def _check_names(model: nn.Module, names: Iterable[str] | None, arg: str) -> list[str] | None:
    if names is None:
        return None
    if isinstance(names, str) or not isinstance(names, Iterable):
        raise TypeError(f"{arg} must be a list of module names (or None), got {type(names).__name__}")
    names = list(names)
    modules = dict(model.named_modules())
    for name in names:
        if name not in modules:
            raise ValueError(f"{arg} names {name!r}, which is not a module of the model")
        if not _is_plain_linear(modules[name]):
            raise TypeError(
                f"{arg} names {name!r}, a {type(modules[name]).__name__}: only nn.Linear modules can be "
                "swapped for dynamic int8 layers"
            )
    return names


def _layer_factory(kind: str, **layer_kwargs) -> Callable[[nn.Linear], nn.Module]:
    check_choice(kind, "kind", KINDS)
    if kind == "weight_only":
        return lambda linear: WeightOnlyInt8Linear.from_float(linear, **layer_kwargs)
    return lambda linear: DynamicInt8Linear.from_float(linear, **layer_kwargs)


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def swap_linears(
    model: nn.Module,
    kind: str = "dynamic",
    *,
    include: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
    inplace: bool = False,
    **layer_kwargs,
) -> nn.Module:
    """``model`` with its ``nn.Linear`` modules replaced by ``DynamicInt8Linear`` or ``WeightOnlyInt8Linear``.

    ``include`` (names; default every Linear) minus ``exclude`` are swapped; naming a module that
    is not an ``nn.Linear`` (a Conv2d, an Embedding) raises ``TypeError`` instead of being silently
    skipped. ``layer_kwargs`` go to the layer's ``from_float``. Works on a deep copy unless
    ``inplace``. Taught in 04_dynamic.
    """
    _check_model(model)
    include = _check_names(model, include, "include")
    exclude = set(_check_names(model, exclude, "exclude") or [])
    make = _layer_factory(kind, **layer_kwargs)
    target = model if inplace else copy.deepcopy(model)
    names = include if include is not None else linear_names(target)
    for name in names:
        if name not in exclude:
            _set_submodule(target, name, make(target.get_submodule(name)))
    return target


def linear_weight_state(model: nn.Module) -> dict[str, object]:
    """The weights of every Linear-like layer of ``model`` as a state dict, for measuring their serialized bytes.

    float ``nn.Linear`` -> ``weight``; torch.ao ``DynamicQuantizedLinear`` -> its quantized
    ``weight()`` (int8 codes plus scale(s)); the course's int8 layers -> ``qweight`` and ``scale``.
    Biases are left out. Taught in 04_dynamic.
    """
    _check_model(model)
    from torch.ao.nn.quantized.dynamic import Linear as TorchDynamicLinear

    state: dict[str, object] = {}
    for name, module in model.named_modules():
        if isinstance(module, (WeightOnlyInt8Linear, DynamicInt8Linear)):
            state[f"{name}.qweight"] = module.qweight
            state[f"{name}.scale"] = module.scale
        elif isinstance(module, TorchDynamicLinear):
            state[f"{name}.weight"] = module.weight()
        elif isinstance(module, nn.Linear):
            state[f"{name}.weight"] = module.weight.detach()
    if not state:
        raise ValueError("model has no Linear layers to measure")
    return state


def _tokenize(tokenizer, sentences: Sequence[str], max_length: int = 128) -> dict:
    if isinstance(sentences, str) or not isinstance(sentences, (list, tuple)) or not sentences:
        raise ValueError("sentences must be a non-empty list of strings")
    return tokenizer(list(sentences), padding=True, truncation=True, max_length=max_length, return_tensors="pt")


@torch.no_grad()
def capture_linear_inputs(
    model: nn.Module,
    tokenizer,
    sentences: Sequence[str],
    names: Iterable[str] | None = None,
    *,
    float64: bool = False,
) -> dict[str, torch.Tensor]:
    """Inputs seen by the named Linear layers on ``sentences``: ``name -> (real tokens, in_features)`` float32.

    Forward pre-hooks record each layer's input; padding positions are dropped with the
    attention mask, so the statistics are those of real tokens. ``float64=True`` runs the model's
    float arithmetic in float64 (:func:`float64_model`) and returns the float32 casts of the inputs,
    which are the same on every CPU. Taught in 04_dynamic.
    """
    _check_model(model)
    names = _check_names(model, names, "names") if names is not None else linear_names(model)
    if _check_float64(float64):
        model = float64_model(model)
    batch = _tokenize(tokenizer, sentences)
    mask = batch["attention_mask"].bool()
    seen: dict[str, torch.Tensor] = {}
    hooks = []
    for name in names:

        def hook(_module, args, name=name):
            seen[name] = args[0].detach().float()[mask]

        hooks.append(model.get_submodule(name).register_forward_pre_hook(hook))
    try:
        model(**batch)
    finally:
        for h in hooks:
            h.remove()
    return seen


def outlier_ratio(x: torch.Tensor) -> float:
    """``max|x| / median|x|``: how far the largest activation sits beyond a typical one. Taught in 04_dynamic."""
    check_float_tensor(x, "x")
    a = x.detach().abs().float().flatten()
    median = float(a.median())
    if median == 0.0:
        raise ValueError("x has median |x| = 0, so the ratio max/median is undefined")
    return float(a.max()) / median


def fake_quant_layer(
    w: torch.Tensor,
    x: torch.Tensor,
    bits: int = 8,
    weight_granularity: str = "channel",
    act_granularity: str = "tensor",
    reduce_range: bool = False,
) -> dict[str, object]:
    """One Linear layer at ``bits``: fake-quantized weights (symmetric) and dynamic activations (affine).

    Activations get one range per tensor or one per token (row of ``x``, ``act_granularity``), and
    ``bits - 1`` bits with ``reduce_range`` (torch's x86 choice: 0..127 at 8 bits).
    Returns ``w_hat``, ``x_hat``, the activation ``scale``/``zero_point`` (per token: those of the
    token with the widest range), ``act_scales`` (every token's, or the one), ``act_bits``,
    ``qmin``/``qmax``, the weight ``w_scale`` (one per row, or one), and
    ``rel_err = ||x_hat @ w_hat.T - x @ w.T|| / ||x @ w.T||`` (bias left out: it is not quantized).
    Taught in 04_dynamic.
    """
    check_float_tensor(w, "w")
    check_float_tensor(x, "x")
    check_bits(bits, 2, 8)
    check_choice(weight_granularity, "weight_granularity", WEIGHT_GRANULARITIES)
    check_choice(act_granularity, "act_granularity", ACT_GRANULARITIES)
    if not isinstance(reduce_range, bool):
        raise TypeError(f"reduce_range must be True or False, got {reduce_range!r}")
    if w.ndim != 2 or x.ndim != 2 or x.shape[1] != w.shape[1]:
        raise ValueError(
            f"w must be (out, in) and x (tokens, in) with the same in, got {tuple(w.shape)} and {tuple(x.shape)}"
        )
    axis = 0 if weight_granularity == "channel" else None
    w_scale, w_zp = calc_qparams(w.float(), bits, signed=True, symmetric=True, axis=axis)
    wq_min, wq_max = qrange(bits, signed=True)
    w_hat = fake_quantize(w.float(), w_scale, w_zp, wq_min, wq_max, axis=axis)
    act_bits = bits - 1 if reduce_range else bits
    x_axis = 0 if act_granularity == "token" else None
    scales, zero_points = calc_qparams(x.float(), act_bits, signed=False, axis=x_axis)
    qmin, qmax = qrange(act_bits, signed=False)
    x_hat = fake_quantize(x.float(), scales, zero_points, qmin, qmax, axis=x_axis)
    widest = int(scales.reshape(-1).argmax())
    y = x.float() @ w.float().T
    y_hat = x_hat @ w_hat.T
    rel_err = float(torch.linalg.vector_norm(y_hat - y) / torch.linalg.vector_norm(y).clamp(min=1e-30))
    return {
        "w_hat": w_hat,
        "x_hat": x_hat,
        "w_scale": w_scale,
        "scale": float(scales.reshape(-1)[widest]),
        "zero_point": int(zero_points.reshape(-1)[widest]),
        "act_scales": scales.reshape(-1),
        "act_bits": act_bits,
        "qmin": qmin,
        "qmax": qmax,
        "y": y,
        "y_hat": y_hat,
        "rel_err": rel_err,
    }


def _ratio_or_inf(x: torch.Tensor) -> float:
    """:func:`outlier_ratio`, or ``inf`` when half the values are 0 (post-ReLU inputs): a view must not fail on them."""
    a = x.detach().abs().float().flatten()
    median = float(a.median())
    return float(a.max()) / median if median > 0 else float("inf")


def _levels(qmin: int, qmax: int, zero_point: int, scale: float) -> np.ndarray:
    return (np.arange(qmin, qmax + 1) - zero_point) * scale


def layer_view(
    w: torch.Tensor,
    x: torch.Tensor,
    bits: int = 8,
    weight_granularity: str = "channel",
    name: str = "layer",
    act_granularity: str = "tensor",
    reduce_range: bool = False,
) -> dict[str, object]:
    """What the layer explorer shows for one Linear layer at ``bits``: :func:`fake_quant_layer` plus the pictures' data.

    Adds ``w`` and ``x`` (float32, flattened numpy), ``w_levels`` (the widest row's grid when
    per channel, the tensor's grid when per tensor), ``x_levels`` (the dynamic activation grid; per
    token, the widest token's), ``err`` (flattened ``y_hat - y``), ``outlier_ratio`` of ``x`` (``inf``
    when its median is 0, as after a ReLU), ``bits``, ``weight_granularity``, ``act_granularity``,
    ``reduce_range``, ``name`` and ``readout`` (text). Drawn by ``helpers.plotting.dynamic.layer_figure``.
    Taught in 04_dynamic.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a string, got {type(name).__name__}")
    res = fake_quant_layer(w, x, bits, weight_granularity, act_granularity, reduce_range)
    wq_min, wq_max = qrange(bits, signed=True)
    if act_granularity == "token":
        scales = res["act_scales"]
        act = (
            f"per-token scales {float(scales.min()):.4g}..{float(scales.max()):.4g} over {scales.numel()} tokens "
            f"(widest token: zero point {res['zero_point']})"
        )
    else:
        act = f"activation scale {res['scale']:.4g}, zero point {res['zero_point']}"
    readout = (
        f"{name}: {bits}-bit weights (per-{weight_granularity}) and {res['act_bits']}-bit dynamic activations "
        f"(per-{act_granularity}, codes {res['qmin']}..{res['qmax']}{', reduce_range' if reduce_range else ''}); "
        f"{act}; relative output error ||y_hat - y|| / ||y|| = {res['rel_err']:.3%}"
    )
    return {
        **res,
        "w": w.detach().float().flatten().numpy(),
        "x": x.detach().float().flatten().numpy(),
        "w_levels": _levels(wq_min, wq_max, 0, float(res["w_scale"].max())),
        "x_levels": _levels(res["qmin"], res["qmax"], res["zero_point"], res["scale"]),
        "err": (res["y_hat"] - res["y"]).flatten().numpy(),
        "outlier_ratio": _ratio_or_inf(x),
        "bits": bits,
        "weight_granularity": weight_granularity,
        "act_granularity": act_granularity,
        "reduce_range": reduce_range,
        "name": name,
        "readout": readout,
    }


def layer_grid_view(
    layers: Mapping[str, tuple[torch.Tensor, torch.Tensor]], bits_list: Sequence[int] = (8, 6, 4)
) -> dict[str, object]:
    """Small multiples: for each layer (name -> ``(w, x)``) and each bit width, its input grid and output error.

    Weights per channel, activations dynamic per tensor, as in :func:`fake_quant_layer`. Returns
    ``bits_list`` and ``rows``: one dict per layer with ``name``, ``x`` (flattened numpy) and
    ``cells`` (per bit width: ``bits``, ``x_levels``, ``rel_err``). Drawn by
    ``helpers.plotting.dynamic.layer_grid_figure``. Taught in 04_dynamic.
    """
    if not isinstance(layers, Mapping) or not layers:
        raise ValueError("layers must be a non-empty mapping name -> (w, x)")
    bits_list = list(bits_list)
    if not bits_list:
        raise ValueError("bits_list must hold at least one bit width")
    rows = []
    for name, (w, x) in layers.items():
        cells = []
        for bits in bits_list:
            res = fake_quant_layer(w, x, bits, "channel")
            cells.append(
                {
                    "bits": bits,
                    "x_levels": _levels(res["qmin"], res["qmax"], res["zero_point"], res["scale"]),
                    "rel_err": res["rel_err"],
                }
            )
        rows.append({"name": name, "x": x.detach().float().flatten().numpy(), "cells": cells})
    return {"bits_list": bits_list, "rows": rows}


def outliers_view(inputs: Mapping[str, torch.Tensor]) -> dict[str, dict[str, object]]:
    """Each layer's captured inputs (name -> tensor) as ``{"x": flattened numpy, "ratio": outlier_ratio}``.

    Drawn by ``helpers.plotting.dynamic.outlier_histograms``. Taught in 04_dynamic.
    """
    if not isinstance(inputs, Mapping) or not inputs:
        raise ValueError("inputs must be a non-empty mapping name -> input tensor")
    out = {}
    for name, x in inputs.items():
        check_float_tensor(x, "inputs[" + repr(name) + "]")
        out[name] = {"x": x.detach().float().flatten().numpy(), "ratio": _ratio_or_inf(x)}
    return out


def _mean_cosine(
    model: nn.Module, tokenizer, sentences: Sequence[str], ref: torch.Tensor, float64: bool = False
) -> float:
    from helpers.language import cosine_to_reference, embed

    return float(cosine_to_reference(embed(model, tokenizer, list(sentences), float64=float64), ref).mean())


def _check_sentences(sentences: object) -> list[str]:
    if isinstance(sentences, str) or not isinstance(sentences, (list, tuple)) or not sentences:
        raise TypeError(f"sentences must be a non-empty list of strings, got {type(sentences).__name__}")
    if not all(isinstance(t, str) for t in sentences):
        raise TypeError("sentences must be a non-empty list of strings (found a non-string entry)")
    return list(sentences)


def _check_float64(float64: object) -> bool:
    if not isinstance(float64, bool):
        raise TypeError(f"float64 must be True or False, got {float64!r}")
    return float64


@torch.no_grad()
def layer_sensitivity(
    model: nn.Module,
    tokenizer,
    sentences: Sequence[str],
    ref: torch.Tensor,
    names: Iterable[str] | None = None,
    kind: str = "dynamic",
    *,
    float64: bool = False,
    **layer_kwargs,
) -> dict[str, float]:
    """Mean embedding cosine to ``ref`` when only one layer is quantized: ``name -> cosine``, one entry per layer.

    Each named Linear in turn is swapped for the course's int8 layer (``kind`` and
    ``layer_kwargs`` as in ``swap_linears``), the sentences are embedded, and the original layer
    is put back, so the model is unchanged afterwards. ``1 - cosine`` is the layer's sensitivity.
    ``float64=True`` runs everything but the int8 layer in float64 (:func:`float64_model`), so the
    cosines do not depend on the CPU's float32 summation order. Taught in 04_dynamic.
    """
    _check_model(model)
    sentences = _check_sentences(sentences)
    check_float_tensor(ref, "ref")
    if ref.ndim != 2 or ref.shape[0] != len(sentences):
        raise ValueError(f"ref must be the (len(sentences), hidden) fp32 embeddings, got shape {tuple(ref.shape)}")
    names = _check_names(model, names, "names") if names is not None else linear_names(model)
    make = _layer_factory(kind, **layer_kwargs)
    work = float64_model(model) if _check_float64(float64) else model  # a float64 copy, made once
    out: dict[str, float] = {}
    for name in names:
        original = work.get_submodule(name)
        layer = make(model.get_submodule(name))  # quantized from the float32 weights
        if float64:
            layer = float64_model(layer)
        _set_submodule(work, name, layer)
        try:
            out[name] = _mean_cosine(work, tokenizer, sentences, ref, float64)
        finally:
            _set_submodule(work, name, original)
    return out


def mixed_precision(
    model: nn.Module,
    keep_float: Iterable[str] = (),
    *,
    backend: str = "torch",
    per_channel: bool = True,
) -> nn.Module:
    """A dynamic-int8 copy of ``model`` in which the Linear layers named in ``keep_float`` stay float32.

    ``backend="torch"`` uses ``torch.ao.quantization.quantize_dynamic`` (fbgemm kernels, the
    fast path) with a per-layer qconfig spec; ``"reference"`` uses this module's
    ``DynamicInt8Linear``. ``per_channel`` picks per-channel (else per-tensor) weight scales.
    Taught in 04_dynamic.
    """
    _check_model(model)
    keep = set(_check_names(model, keep_float, "keep_float") or [])
    check_choice(backend, "backend", BACKENDS)
    if not isinstance(per_channel, bool):
        raise TypeError(f"per_channel must be True or False, got {per_channel!r}")
    todo = [n for n in linear_names(model) if n not in keep]
    if backend == "reference":
        granularity = "channel" if per_channel else "tensor"
        return swap_linears(model, "dynamic", include=todo, weight_granularity=granularity)
    from torch.ao import quantization as tq

    qconfig = tq.per_channel_dynamic_qconfig if per_channel else tq.default_dynamic_qconfig
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return tq.quantize_dynamic(copy.deepcopy(model), {n: qconfig for n in todo}, dtype=torch.qint8)


def smallest_keep_set(
    model: nn.Module,
    tokenizer,
    sentences: Sequence[str],
    ref: torch.Tensor,
    ranked: Sequence[str],
    target: float = 0.99,
    steps: Iterable[int] = (0, 2, 4, 6, 8, 10, 12),
    *,
    float64: bool = False,
    **mixed_kwargs,
) -> tuple[list[str], list[tuple[int, float]]]:
    """Keep the ``k`` most sensitive layers float for growing ``k`` until the mean cosine reaches ``target``.

    ``ranked`` lists layer names, most sensitive first. Returns ``(keep_float, trace)`` where
    ``trace`` holds ``(k, mean cosine)`` for every ``k`` tried; ``keep_float`` is ``ranked[:k]`` for
    the first ``k`` that reached ``target`` (or the last ``k`` tried if none did). ``float64=True``
    embeds with the float parts in float64 (:func:`float64_model`). Taught in 04_dynamic.
    """
    _check_model(model)
    _check_float64(float64)
    sentences = _check_sentences(sentences)
    check_float_tensor(ref, "ref")
    if isinstance(target, bool) or not isinstance(target, (int, float)) or not 0.0 < target <= 1.0:
        raise ValueError(f"target must be a cosine in (0, 1], got {target!r}")
    if ranked is None:
        raise TypeError("ranked must be a list of Linear module names, most sensitive first, got None")
    ranked = _check_names(model, ranked, "ranked")
    steps = [check_int(k, "steps", lo=0, hi=len(ranked)) for k in steps]
    if not steps:
        raise ValueError("steps must list at least one k")
    trace: list[tuple[int, float]] = []
    for k in steps:
        cos = _mean_cosine(mixed_precision(model, ranked[:k], **mixed_kwargs), tokenizer, sentences, ref, float64)
        trace.append((k, cos))
        if cos >= target:
            break
    return ranked[: trace[-1][0]], trace


def torch_per_token_linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Dynamic per-token int8 Linear from torch's own observers and quantize ops: ``(y float32, acc int32)``.

    Weights: ``PerChannelMinMaxObserver`` (qint8, per-channel symmetric) and ``torch.quantize_per_channel``
    along the output rows. Activations: the same observer with quint8 per-channel *affine* along the
    rows of ``x`` (one scale and zero point per token, codes 0..255), ``torch.quantize_per_channel``.
    ``acc = (q_x - z_x) @ q_w.T`` in int64 (exact), returned as int32; ``y = acc * (s_x s_w) + b`` in float32.
    The answer key of the lesson's exercise (:func:`check_per_token_linear`). Taught in 04_dynamic.
    """
    from torch.ao.quantization.observer import PerChannelMinMaxObserver

    check_float_tensor(x, "x")
    check_float_tensor(w, "w")
    check_float_tensor(b, "b")
    if x.ndim != 2 or w.ndim != 2 or x.shape[1] != w.shape[1] or tuple(b.shape) != (w.shape[0],):
        raise ValueError(
            f"x must be (tokens, in), w (out, in) and b (out,), got {tuple(x.shape)}, {tuple(w.shape)}, {tuple(b.shape)}"
        )
    x, w, b = x.detach().float(), w.detach().float(), b.detach().float()
    w_obs = PerChannelMinMaxObserver(ch_axis=0, dtype=torch.qint8, qscheme=torch.per_channel_symmetric)
    w_obs(w)
    s_w, z_w = w_obs.calculate_qparams()
    x_obs = PerChannelMinMaxObserver(ch_axis=0, dtype=torch.quint8, qscheme=torch.per_channel_affine)
    x_obs(x)
    s_x, z_x = x_obs.calculate_qparams()
    with warnings.catch_warnings():  # torch deprecates quantized tensors; the ops are the reference here
        warnings.simplefilter("ignore", UserWarning)
        q_w = torch.quantize_per_channel(w, s_w, z_w, 0, torch.qint8).int_repr()
        q_x = torch.quantize_per_channel(x, s_x, z_x, 0, torch.quint8).int_repr()
    acc = ((q_x.long() - z_x.long()[:, None]) @ q_w.long().T).to(torch.int32)
    y = acc.float() * (s_x.float()[:, None] * s_w.float()[None, :]) + b
    return y, acc


def _per_token_cases() -> list[tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, torch.Tensor], str]]:
    gen = torch.Generator().manual_seed(4)
    cases = []
    # one all-positive token (after a GELU): affine 0..255 has twice the levels of symmetric int8
    x = torch.rand(1, 16, generator=gen) * 3.0 + 0.05
    w, b = torch.randn(3, 16, generator=gen), torch.zeros(3)
    cases.append(((x, w, b), "positive token"))
    # rows of very different ranges, most straddling 0: per-tensor scales and a missing zero point show up
    x = torch.randn(5, 24, generator=gen) * torch.tensor([[1.0], [10.0], [0.1], [3.0], [50.0]])
    x[2] += 0.3  # an all-positive row next to mixed ones
    w, b = torch.randn(6, 24, generator=gen) * 0.2, torch.randn(6, generator=gen)
    cases.append(((x, w, b), "token ranges"))
    # long all-positive dot products: the int32 sums pass 2^24, where float32 can no longer count by one
    x = torch.rand(4, 4096, generator=gen) + 0.5
    w, b = torch.rand(8, 4096, generator=gen) + 0.5, torch.zeros(8)
    cases.append(((x, w, b), "long sums"))
    return [(args, torch_per_token_linear(*args), label) for args, label in cases]


def _compare_y_acc(got: object, want: tuple[torch.Tensor, torch.Tensor]) -> str | None:
    from helpers.exercises import close, same

    if not isinstance(got, tuple) or len(got) != 2:
        return f"expected a tuple (y, acc), got {type(got).__name__}"
    y, acc = got
    why = same(acc, want[1])
    if why:
        return f"acc: {why}"
    tol = 1e-5 * float(want[0].abs().max())  # float32 rounding of the rescale, relative to max |y|
    why = close(rtol=1e-5, atol=tol)(y, want[0])
    return f"y: {why}" if why else None


def check_per_token_linear(fn: Callable | None, *, quiet: bool = False) -> bool:
    """Grade a learner's ``fn(x, w, b) -> (y, acc)``: dynamic per-token affine uint8 activations, per-channel int8 weights.

    The answers come from torch's observers and quantize ops (:func:`torch_per_token_linear`); the
    cases reject per-tensor activation scales, symmetric (zero point 0) activations, a missing
    zero-point correction and float32 accumulation. Prints one line (unless ``quiet``), returns
    whether every case agrees. Taught in 04_dynamic.
    """
    from helpers.exercises import grade

    return grade(
        "per-token dynamic int8 Linear",
        fn,
        _per_token_cases(),
        hint=(
            "per row of x: scale = (max - min) / 255 over the range widened to include 0, zero point "
            "round(-min / scale); q_x = clamp(round(x / scale) + z, 0, 255); weights symmetric per output row "
            "(max|w| / 127.5); acc = (q_x - z) @ q_w.T in int32; y = acc * s_x s_w + b"
        ),
        hints={
            "token ranges": "each row (token) needs its own scale and zero point, and acc must subtract the zero point",
            "positive token": "activations are affine 0..255 with a zero point, not symmetric int8",
            "long sums": "accumulate in integers (int32/int64), not float32: these sums pass 2^24",
        },
        compare=_compare_y_acc,
        quiet=quiet,
    )


def _act_qparams_cases() -> list[tuple[tuple[torch.Tensor, bool], tuple[float, int], str]]:
    gen = torch.Generator().manual_seed(7)
    mixed = torch.randn(6, 10, generator=gen) * 2.0 + 0.7  # straddles 0, unequal ends
    positive = torch.rand(5, 8, generator=gen) * 3.0 + 0.5  # after a GELU: min > 0, the range must still hold 0
    negative = -(torch.rand(4, 8, generator=gen) * 5.0 + 1.0)
    ties = torch.tensor([[-1.0, 0.5, 3.0], [2.0, -0.25, 1.0]])  # -min / scale = 63.75: round, do not truncate
    cases = []
    for label, x in (("zero point", ties), ("mixed", mixed), ("positive", positive), ("negative", negative)):
        for reduce_range in (False, True):
            # torch.ao's observer is the answer key: it equals torch.quantize_per_tensor_dynamic under the x86 and
            # fbgemm engines (tests/test_dynamic.py) and, unlike that op under qnnpack, honours reduce_range everywhere
            from torch.ao.quantization.observer import MinMaxObserver

            obs = MinMaxObserver(dtype=torch.quint8, reduce_range=reduce_range)
            obs(x)
            scale, zero_point = obs.calculate_qparams()
            want = (float(scale), int(zero_point))
            cases.append(((x, reduce_range), want, f"{label}{', reduce_range' if reduce_range else ''}"))
    return cases


def _compare_qparams(got: object, want: tuple[float, int]) -> str | None:
    if not isinstance(got, tuple) or len(got) != 2:
        return f"expected a tuple (scale, zero_point), got {type(got).__name__}"
    scale, zero_point = got
    if isinstance(scale, torch.Tensor) and scale.numel() == 1:
        scale = scale.item()
    if isinstance(zero_point, torch.Tensor) and zero_point.numel() == 1 and not zero_point.is_floating_point():
        zero_point = int(zero_point)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)):
        return f"scale: expected a number, got {type(scale).__name__}"
    if abs(scale - want[0]) > 1e-6 * want[0]:  # torch divides in float64 and rounds once to float32
        return f"scale {scale!r} (expected {want[0]!r})"
    if isinstance(zero_point, bool) or not isinstance(zero_point, int):
        return f"zero_point: expected an int, got {type(zero_point).__name__} {zero_point!r}"
    if zero_point != want[1]:
        return f"zero_point {zero_point} (expected {want[1]})"
    return None


def check_act_qparams(fn: Callable | None, *, quiet: bool = False) -> bool:
    """Grade a learner's ``fn(x, reduce_range) -> (scale, zero_point)``: torch.ao's dynamic per-tensor activation qparams.

    The answers are those of ``torch.quantize_per_tensor_dynamic(x, torch.quint8, reduce_range)`` under the
    x86/fbgemm engines (the activation quantization inside ``DynamicQuantizedLinear``), taken from torch.ao's
    ``MinMaxObserver``, which gives the same qparams on every engine (qnnpack's op ignores ``reduce_range``).
    The cases reject ignoring ``reduce_range``
    (0..255 always), a range that does not include 0 (all-positive or all-negative inputs) and a
    zero point that is truncated or left as a float. Prints one line (unless ``quiet``). Taught in 04_dynamic.
    """
    from helpers.exercises import grade

    return grade(
        "dynamic activation qparams",
        fn,
        _act_qparams_cases(),
        hint=(
            "codes 0..255, or 0..127 with reduce_range; widen [min, max] to include 0; "
            "scale = (max - min) / (qmax - qmin); zero_point = round(qmin - min / scale), an int in qmin..qmax"
        ),
        hints={
            "zero point": "the zero point is round(qmin - min / scale) (nearest, not truncated), as an int",
            "zero point, reduce_range": "reduce_range keeps 7 bits: qmax = 127",
            "mixed, reduce_range": "reduce_range keeps 7 bits: qmax = 127",
            "positive": "the range must include 0 (min = min(x.min(), 0)), so 0 is exactly representable",
            "negative": "the range must include 0 (max = max(x.max(), 0))",
        },
        compare=_compare_qparams,
        quiet=quiet,
    )


def minilm_batch(tokenizer, sentences: Sequence[str], batch_size: int, seq_len: int | None = None) -> dict:
    """Tokenized batch of ``batch_size`` sentences taken in order (cycling) from ``sentences``.

    Padded to the longest sentence in the batch, or to exactly ``seq_len`` tokens when given.
    Taught in 04_dynamic.
    """
    batch_size = check_int(batch_size, "batch_size", lo=1)
    if isinstance(sentences, str) or not isinstance(sentences, (list, tuple)) or not sentences:
        raise ValueError("sentences must be a non-empty list of strings")
    chosen = [sentences[i % len(sentences)] for i in range(batch_size)]
    if seq_len is None:
        return tokenizer(chosen, padding=True, truncation=True, max_length=128, return_tensors="pt")
    seq_len = check_int(seq_len, "seq_len", lo=2, hi=512)
    return tokenizer(chosen, padding="max_length", truncation=True, max_length=seq_len, return_tensors="pt")


def latency_sweep(
    models: dict[str, nn.Module],
    batches: dict[int, dict],
    *,
    warmup: int = 2,
    repeats: int = 5,
    threads: int = 2,
) -> dict[str, dict[int, object]]:
    """Median latency of every model at every batch: ``variant -> batch size -> Timing``.

    For each batch, every model is warmed up ``warmup`` times, then the models are timed in
    round-robin (one call each, ``repeats`` rounds), so a burst of load on a shared machine hits
    all variants alike; each Timing holds the median of its ``repeats`` calls. Taught in 04_dynamic.
    """
    import statistics

    from helpers.measure import Timing, measure_latency

    if not isinstance(models, dict) or not models:
        raise ValueError("models must be a non-empty dict name -> model")
    for name, model in models.items():
        if not isinstance(model, nn.Module):
            raise TypeError(f"models[{name!r}] must be an nn.Module, got {type(model).__name__}")
    if not isinstance(batches, dict) or not batches:
        raise ValueError("batches must be a non-empty dict batch size -> tokenized batch")
    warmup = check_int(warmup, "warmup", lo=0)
    repeats = check_int(repeats, "repeats", lo=1)
    out: dict[str, dict[int, object]] = {name: {} for name in models}
    for size, batch in batches.items():
        calls = {name: (lambda model=model, batch=batch: model(**batch)) for name, model in models.items()}
        samples: dict[str, list[float]] = {name: [] for name in models}
        for fn in calls.values():
            if warmup:
                measure_latency(fn, warmup=warmup - 1, repeats=1, threads=threads)
        for _ in range(repeats):
            for name, fn in calls.items():
                samples[name].append(measure_latency(fn, warmup=0, repeats=1, threads=threads).median_ms)
        for name, ms in samples.items():
            out[name][size] = Timing(statistics.median(ms), min(ms), max(ms), repeats, warmup, threads)
    return out
