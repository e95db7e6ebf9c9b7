"""Observers and calibration: how a static quantizer picks each activation's clipping range.

Taught in 05_static. Every observer here maps calibration activations to a clipping range
``(x_min, x_max)``; ``observer_qparams`` turns that range into ``(scale, zero_point)`` with
``helpers.affine.affine_qparams`` (the same float32 arithmetic as torch.ao's observers).

* ``minmax_range``           the extremes seen (torch ``MinMaxObserver``);
* ``moving_average_range``   ``min <- min + c (batch_min - min)`` per batch (``MovingAverageMinMaxObserver``);
* ``histogram_range``        2048-bin histogram + greedy L2-error search (``HistogramObserver``'s algorithm);
* ``percentile_range``       drop the ``100 - p`` % tails;
* ``mse_range``              the shrunken min-max range whose fake-quantization MSE is smallest;
* ``kl_range``               TensorRT's entropy calibration: the threshold minimising KL(P || Q), zero bin handled;
* ``batch_mode_range``       the mode of per-batch min-max scales over N calibration batches.

``collect_activations`` records each named module's outputs with ``register_forward_hook``;
``RangeObserver`` plugs a precomputed range into torch's eager ``prepare``/``convert``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from helpers._validate import check_bits, check_choice, check_float_tensor, check_int, check_min_max
from helpers.affine import affine_qparams, qrange

__all__ = [
    "METHODS",
    "minmax_range",
    "moving_average_range",
    "histogram_range",
    "percentile_range",
    "mse_range",
    "kl_range",
    "batch_mode_range",
    "batch_scale_counts",
    "observer_range",
    "observer_qparams",
    "collect_activations",
    "activation_stats",
    "RangeObserver",
]

METHODS = ("minmax", "moving_average", "histogram", "percentile", "mse", "kl", "batch_mode")


def _as_batches(data: torch.Tensor | Sequence[torch.Tensor], name: str = "batches") -> list[torch.Tensor]:
    """Validate calibration data: one tensor or a non-empty sequence of non-empty finite float tensors."""
    if isinstance(data, torch.Tensor):
        data = [data]
    if not isinstance(data, (list, tuple)):
        raise TypeError(f"{name} must be a tensor or a list of tensors, got {type(data).__name__}")
    if len(data) == 0:
        raise ValueError(f"{name} must hold at least one calibration batch (got none: was the model calibrated?)")
    for i, b in enumerate(data):
        check_float_tensor(b, f"{name}[{i}]")
    return list(data)


def _flat(data: torch.Tensor | Sequence[torch.Tensor], name: str = "x") -> torch.Tensor:
    batches = _as_batches(data, name)
    return torch.cat([b.detach().reshape(-1).float() for b in batches])


def minmax_range(x: torch.Tensor | Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Clipping range ``(min x, max x)`` over all calibration values (torch ``MinMaxObserver``).

    Taught in 05_static.
    """
    lo, hi = torch.aminmax(_flat(x))
    return lo, hi


def moving_average_range(
    batches: torch.Tensor | Sequence[torch.Tensor], averaging_constant: float = 0.01
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exponential moving average of per-batch extremes: ``m <- m + c (m_batch - m)``, first batch taken as is.

    Equals torch ``MovingAverageMinMaxObserver(averaging_constant=c)`` fed the same batches.
    Taught in 05_static.
    """
    batches = _as_batches(batches)
    if not isinstance(averaging_constant, float) or not 0.0 < averaging_constant <= 1.0:
        raise ValueError(f"averaging_constant must be a float in (0, 1], got {averaging_constant!r}")
    lo = hi = None
    for b in batches:  # a loop over batches: the recursion is sequential by definition
        b_lo, b_hi = torch.aminmax(b.detach().float())
        if lo is None:
            lo, hi = b_lo, b_hi
        else:
            lo = lo + averaging_constant * (b_lo - lo)
            hi = hi + averaging_constant * (b_hi - hi)
    return lo, hi


def _hist_l2_error(
    hist: torch.Tensor, bin_width: float, start: int, end: int, dst_nbins: int
) -> float:  # fmt: skip
    """L2 error of quantizing a histogram's mass with range [start, end] bins into ``dst_nbins`` levels.

    Each source bin's mass is taken as uniform; its squared distance to the nearest destination
    bin centre is integrated exactly (``density * (b^3 - a^3) / 3``), as in torch/caffe2.
    """
    bins = hist.numel()
    dst_w = bin_width * (end - start + 1) / dst_nbins
    if dst_w == 0.0:
        return 0.0
    f64 = torch.float64  # float64 throughout: the sum (and so the search) must not depend on the CPU's order
    src = torch.arange(bins, dtype=f64)
    begin = (src - start) * bin_width
    stop = begin + bin_width
    dst_begin = torch.clamp(torch.div(begin, dst_w, rounding_mode="floor"), 0, dst_nbins - 1)
    dst_end = torch.clamp(torch.div(stop, dst_w, rounding_mode="floor"), 0, dst_nbins - 1)
    density = hist.to(f64) / bin_width

    def norm(a, b):
        return density * ((b * b * b - a * a * a) / 3)

    half = torch.tensor(dst_w / 2, dtype=f64)
    total = norm(begin - (dst_begin + 0.5) * dst_w, torch.full((bins,), dst_w / 2, dtype=f64))
    total = total + (dst_end - dst_begin - 1) * norm(-half, half)
    total = total + norm(-half, stop - (dst_end * dst_w + dst_w / 2))
    return total.sum().item()


def histogram_range(
    x: torch.Tensor | Sequence[torch.Tensor], bins: int = 2048, dst_nbins: int = 256
) -> tuple[torch.Tensor, torch.Tensor]:
    """Histogram observer: a ``bins``-bin histogram of all values, then a greedy search over [start, end] bins.

    Each step drops the next 1e-5 quantile of mass from the heavier tail and keeps going while the
    L2 quantization error into ``dst_nbins`` levels keeps falling (torch ``HistogramObserver``'s
    algorithm, with all calibration data in one histogram). Taught in 05_static.
    """
    bins = check_int(bins, "bins", lo=2, hi=2**16)
    dst_nbins = check_int(dst_nbins, "dst_nbins", lo=2, hi=2**16)
    flat = _flat(x)
    lo, hi = torch.aminmax(flat)
    if float(lo) == float(hi):  # a constant tensor: every bin has width 0 and the search cannot move the range
        return lo, hi  # (the same (lo, lo) the loop would return after stepping through all 1e5 quantiles)
    hist = torch.histc(flat, bins, min=lo.item(), max=hi.item())
    bin_width_t = (hi - lo) / bins
    bin_width = hi.item() - lo.item()
    bin_width /= bins
    total = torch.sum(hist).item()
    csum = torch.cumsum(hist, dim=0)
    step, alpha, beta = 1e-5, 0.0, 1.0
    start, end = 0, bins - 1
    norm_min = float("inf")
    while alpha < beta:  # greedy search: one step per iteration, early exit when the error rises
        next_alpha, next_beta = alpha + step, beta - step
        # first bin >= start whose cumulative mass reaches next_alpha (torch walks there bin by bin)
        l_idx = int(torch.searchsorted(csum, torch.tensor([next_alpha * total], dtype=csum.dtype), right=False))
        left = min(max(l_idx, start), end)
        r_idx = int(torch.searchsorted(csum, torch.tensor([next_beta * total], dtype=csum.dtype), right=True)) - 1
        right = max(min(r_idx, end), start)
        next_start, next_end = start, end
        if (left - start) > (end - right):
            next_start, alpha = left, next_alpha
        else:
            next_end, beta = right, next_beta
        if next_start == start and next_end == end:
            continue
        err = _hist_l2_error(hist, bin_width, next_start, next_end, dst_nbins)
        if err > norm_min:
            break
        norm_min, start, end = err, next_start, next_end
    return lo + bin_width_t * start, lo + bin_width_t * (end + 1)


def _quantile(sorted_x: torch.Tensor, q: float) -> torch.Tensor:
    """Linear-interpolated quantile of sorted values (torch.quantile's default), any size."""
    pos = q * (sorted_x.numel() - 1)
    i = int(pos)
    j = min(i + 1, sorted_x.numel() - 1)
    frac = pos - i
    return sorted_x[i] + frac * (sorted_x[j] - sorted_x[i])


def percentile_range(
    x: torch.Tensor | Sequence[torch.Tensor], percentile: float = 99.99
) -> tuple[torch.Tensor, torch.Tensor]:
    """Clipping range ``(q_{1-p}, q_p)``: the ``(100 - p)``-th and ``p``-th percentiles of the values.

    ``percentile=100`` gives the min-max range. Taught in 05_static.
    """
    if isinstance(percentile, bool) or not isinstance(percentile, (int, float)) or not 50.0 < percentile <= 100.0:
        raise ValueError(f"percentile must be a number in (50, 100], got {percentile!r}")
    xs = torch.sort(_flat(x)).values
    return _quantile(xs, 1.0 - percentile / 100.0), _quantile(xs, percentile / 100.0)


def mse_range(
    x: torch.Tensor | Sequence[torch.Tensor],
    bits: int = 8,
    *,
    signed: bool = False,
    n_grid: int = 64,
    max_samples: int = 2**16,
) -> tuple[torch.Tensor, torch.Tensor]:
    """MSE-optimal clipping: the range ``a (min, max)``, ``a`` in ``{1/n, ..., 1}``, minimising ``mean((x_hat - x)^2)``.

    ``x_hat`` is the affine fake-quantization at ``bits`` with that range. The search scores a fixed
    strided subsample of at most ``max_samples`` values (all of them when fewer); ``a = 1`` is a
    candidate, so the result is never worse than min-max on the scored values. Taught in 05_static.
    """
    bits = check_bits(bits)
    n_grid = check_int(n_grid, "n_grid", lo=1, hi=10_000)
    max_samples = check_int(max_samples, "max_samples", lo=1)
    flat = _flat(x)
    lo, hi = torch.aminmax(flat)
    sample = flat[:: max(1, flat.numel() // max_samples)] if flat.numel() > max_samples else flat
    qmin, qmax = qrange(bits, signed)
    alphas = torch.arange(1, n_grid + 1, dtype=torch.float32) / n_grid
    c_lo, c_hi = lo * alphas, hi * alphas
    scale, zp = affine_qparams(c_lo, c_hi, bits, signed=signed)  # one (scale, zp) per candidate
    s, z = scale[:, None], zp.float()[:, None]
    x_hat = torch.clamp(torch.round(sample[None, :] * (1.0 / s)), qmin - z, qmax - z) * s  # (n_grid, S)
    err = ((x_hat - sample[None, :]).double() ** 2).mean(1)
    # last minimum: ties go to the widest range, so a = 1 wins whenever clipping does not help
    best_k = n_grid - 1 - int(torch.argmin(torch.flip(err, [0])))
    best = (c_lo[best_k], c_hi[best_k])
    return best


def kl_range(
    x: torch.Tensor | Sequence[torch.Tensor], bits: int = 8, bins: int = 2048, *, stride: int = 4
) -> tuple[torch.Tensor, torch.Tensor]:
    """TensorRT-style entropy calibration: the threshold ``t`` minimising ``KL(P || Q)`` of the |x| histogram.

    The ``bins``-bin histogram of ``|x|`` over ``[0, max|x|]`` first gets its zero bin replaced by its
    neighbour's count (post-ReLU data is dominated by exact zeros, which every threshold represents
    exactly). For a cut at bin ``i``, ``P`` is the first ``i`` bins with the clipped tail added to the
    last kept bin; ``Q`` merges those ``i`` bins into the quantization levels (``2^bits`` for
    non-negative data, ``2^(bits-1)`` per side otherwise) with fractional grouping (bin ``j`` goes to
    level ``floor(j * levels / i)``) and spreads each level's mass back over its non-empty bins only.
    Cuts ``i = levels, levels + stride, ..., bins`` are scored (TensorRT tries every cut: ``stride=1``);
    ties go to the widest cut and ``t`` is the cut's bin edge ``i * max|x| / bins``. Returns ``(0, t)``
    for non-negative data, else ``(-t, t)``. Taught in 05_static.
    """
    bits = check_bits(bits, lo=2, hi=12)
    bins = check_int(bins, "bins", lo=16, hi=2**16)
    stride = check_int(stride, "stride", lo=1, hi=bins)
    flat = _flat(x)
    nonneg = bool(flat.min() >= 0)
    levels = 2**bits if nonneg else 2 ** (bits - 1)
    amax = flat.abs().max()
    if float(amax) == 0.0 or bins <= levels:
        return (torch.zeros(()), amax) if nonneg else (-amax, amax)
    f64 = torch.float64  # bin indices and KL in float64/integers: the same threshold on every CPU code path
    idx = torch.clamp((flat.abs().double() * (bins / amax.double())).floor().long(), max=bins - 1)
    hist = torch.bincount(idx, minlength=bins).to(f64)
    hist[0] = hist[1]  # the zero bin: exact zeros are never a quantization error, so they must not steer the cut
    total = hist.sum()
    cuts = torch.arange(levels, bins + 1, stride)  # one row per candidate cut, one column per bin
    cols = torch.arange(bins)
    kept = cols[None, :] < cuts[:, None]
    h = torch.where(kept, hist[None, :], torch.zeros((), dtype=f64))
    tail = total - h.sum(1)  # integer counts: exact in float64
    p = h.clone()
    p[torch.arange(len(cuts)), cuts - 1] += tail  # the clipped mass goes to the last kept bin
    nz = kept & (hist[None, :] != 0)  # non-empty kept bins: Q is spread over these only
    group = torch.where(kept, (cols[None, :] * levels) // cuts[:, None], levels)  # fractional merge; dropped -> spare
    q_mass = torch.zeros(len(cuts), levels + 1, dtype=f64).scatter_add_(1, group, h)
    q_count = torch.zeros(len(cuts), levels + 1, dtype=f64).scatter_add_(1, group, nz.to(f64))
    q = torch.where(nz, q_mass.gather(1, group) / q_count.gather(1, group).clamp(min=1), 0.0)
    p = p / total
    q = q / q.sum(1, keepdim=True).clamp(min=1e-300)  # an all-empty Q stays 0 and scores inf below
    pos = p > 0
    terms = torch.where(pos, p * torch.log(torch.where(pos, p, 1.0) / torch.where(q > 0, q, 1.0)), 0.0)
    kl = torch.where((pos & (q == 0)).any(1), torch.tensor(float("inf"), dtype=f64), terms.sum(1))
    best = len(cuts) - 1 - int(torch.argmin(torch.flip(kl, [0])))  # last minimum: ties go to the widest cut
    best_i = int(cuts[best])
    t = (amax.double() * best_i / bins).float() if best_i < bins else amax
    t = torch.minimum(t, amax)
    return (torch.zeros(()), t) if nonneg else (-t, t)


def _rounded_batch_scales(
    batches: Sequence[torch.Tensor], bits: int, significant: int
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Per batch: the (min, max) range (N, 2) and its min-max scale rounded to ``significant`` digits."""
    ranges = torch.stack([torch.stack(torch.aminmax(b.detach().float())) for b in batches])  # (N, 2)
    lo, hi = ranges[:, 0].clamp(max=0), ranges[:, 1].clamp(min=0)
    scale = ((hi - lo) / (2**bits - 1)).double()
    mag = torch.floor(torch.log10(scale.clamp(min=1e-30)))
    rounded = torch.round(scale / 10**mag * 10 ** (significant - 1)) * 10 ** (mag - significant + 1)
    return ranges, rounded


def batch_scale_counts(
    batches: torch.Tensor | Sequence[torch.Tensor], bits: int = 8, *, significant: int = 2
) -> list[tuple[float, int]]:
    """How often each per-batch scale occurs: ``[(scale, count), ...]``, commonest first (ties: smaller scale).

    The tally behind ``batch_mode_range``: each batch's min-max scale at ``bits``, rounded to
    ``significant`` digits. With one input per batch it is the seminar's count over N inputs.
    Taught in 05_static.
    """
    batches = _as_batches(batches)
    bits = check_bits(bits)
    significant = check_int(significant, "significant", lo=1, hi=8)
    _, rounded = _rounded_batch_scales(batches, bits, significant)
    values, counts = torch.unique(rounded, return_counts=True)  # ascending scale
    order = sorted(range(len(values)), key=lambda i: (-int(counts[i]), float(values[i])))
    return [(float(values[i]), int(counts[i])) for i in order]


def batch_mode_range(
    batches: torch.Tensor | Sequence[torch.Tensor], bits: int = 8, *, significant: int = 2
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mode of per-batch scales: each batch's min-max scale, rounded to ``significant`` digits; keep the commonest.

    The seminar's static method: calibrate N batches (one input each in the seminar's notes),
    compute a scale per batch and use the most frequent one (ties: the smaller scale). Returns the
    mean range of the batches with the modal scale. With one batch it is min-max. Taught in 05_static.
    """
    batches = _as_batches(batches)
    bits = check_bits(bits)
    significant = check_int(significant, "significant", lo=1, hi=8)
    ranges, rounded = _rounded_batch_scales(batches, bits, significant)
    values, counts = torch.unique(rounded, return_counts=True)  # sorted ascending: ties -> smaller scale
    modal = values[torch.argmax(counts)]
    pick = rounded == modal
    lo_hi = ranges[pick].double().mean(0).float()  # mean in float64: independent of the CPU's summation order
    return lo_hi[0], lo_hi[1]


def observer_range(
    method: str, batches: torch.Tensor | Sequence[torch.Tensor], bits: int = 8, **kwargs
) -> tuple[torch.Tensor, torch.Tensor]:
    """The clipping range of ``method`` (one of ``METHODS``) on the calibration ``batches``.

    ``kwargs`` go to the method (e.g. ``percentile=99.9``). Taught in 05_static.
    """
    check_choice(method, "method", METHODS)
    bits = check_bits(bits)
    if method == "minmax":
        return minmax_range(batches, **kwargs)
    if method == "moving_average":
        return moving_average_range(batches, **kwargs)
    if method == "histogram":
        return histogram_range(batches, dst_nbins=2**bits, **kwargs)
    if method == "percentile":
        return percentile_range(batches, **kwargs)
    if method == "mse":
        return mse_range(batches, bits, **kwargs)
    if method == "kl":
        return kl_range(batches, bits, **kwargs)
    return batch_mode_range(batches, bits, **kwargs)


def observer_qparams(
    method: str, batches: torch.Tensor | Sequence[torch.Tensor], bits: int = 8, *, signed: bool = False, **kwargs
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scale, zero_point)`` of an affine ``bits``-bit activation code from ``method``'s clipping range.

    Unsigned by default (``quint8`` activations: codes ``0..2^bits-1``). Taught in 05_static.
    """
    lo, hi = observer_range(method, batches, bits, **kwargs)
    return affine_qparams(lo, hi, bits, signed=signed)


def run_hooked(model: nn.Module, x: torch.Tensor, batch_size: int, handles: Sequence) -> None:
    """Run ``model`` in eval mode on ``x`` in batches of ``batch_size``, then remove the hook ``handles``.

    The hooks (registered by the caller, who keeps what they record) are removed and the model's
    train/eval mode restored even when a forward raises. Shared by ``collect_activations`` here and
    ``helpers.qat.record_layer_inputs``; arguments are checked by those callers.
    """
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(x), batch_size):
            model(x[start : start + batch_size])
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)


@torch.no_grad()
def collect_activations(
    model: nn.Module,
    x: torch.Tensor,
    names: Sequence[str],
    *,
    batch_size: int = 64,
    dtype: torch.dtype | None = torch.float64,
) -> dict[str, list[torch.Tensor]]:
    """Outputs of the named submodules, batch by batch, recorded with ``register_forward_hook``.

    Runs ``model`` (in eval mode) on ``x`` in batches of ``batch_size``; returns
    ``{name: [output of batch 0, batch 1, ...]}``. The hooks are removed afterwards, even on error.
    With ``dtype`` (default float64) the forward runs on a ``dtype`` copy of the model and every
    output is rounded back to ``x.dtype``: the activations are then the correctly rounded ones, the
    same on every CPU, while an fp32 forward depends on the conv kernel's summation order (which
    moves calibration ranges in their last bits). ``dtype=None`` runs ``model`` itself as is.
    Raises ``ValueError`` for an unknown name, an empty ``x`` and NaN/inf in an activation.
    Taught in 05_static.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    check_float_tensor(x, "x")
    batch_size = check_int(batch_size, "batch_size", lo=1)
    if dtype is not None and (not isinstance(dtype, torch.dtype) or not dtype.is_floating_point):
        raise TypeError(f"dtype must be a floating torch.dtype or None, got {dtype!r}")
    out_dtype = x.dtype
    if dtype is not None:
        import copy

        model, x = copy.deepcopy(model).to(dtype), x.to(dtype)
    if isinstance(names, str) or not names:
        raise ValueError("names must be a non-empty list of submodule names")
    modules = dict(model.named_modules())
    unknown = [n for n in names if n not in modules]
    if unknown:
        known = [n for n in modules if n][:12]
        raise ValueError(f"names holds unknown module(s) {unknown}; some known names: {known}")
    records: dict[str, list[torch.Tensor]] = {n: [] for n in names}

    def hook_for(name):
        def hook(_module, _inputs, output):
            out = output.detach()
            records[name].append(out.clone() if dtype is None else out.to(out_dtype, copy=True))

        return hook

    run_hooked(model, x, batch_size, [modules[n].register_forward_hook(hook_for(n)) for n in names])
    for n, batches in records.items():
        for b in batches:
            if not bool(torch.isfinite(b).all()):
                raise ValueError(f"activations of {n!r} contain NaN or inf: calibrate on finite inputs")
    return records


def activation_stats(acts: dict[str, list[torch.Tensor]]) -> dict[str, dict[str, float]]:
    """Per layer: ``min``, ``max``, ``mean``, ``std``, ``p99.99`` and the share of exact zeros.

    Taught in 05_static.
    """
    if not isinstance(acts, dict) or not acts:
        raise ValueError("acts must be a non-empty dict {name: [batches]} from collect_activations")
    out = {}
    for name, batches in acts.items():
        flat = _flat(batches, f"acts[{name!r}]")
        lo, hi = percentile_range(flat, 99.99)
        flat64 = flat.double()  # moments in float64: independent of the CPU's summation order
        out[name] = {
            "min": float(flat.min()),
            "max": float(flat.max()),
            "mean": float(flat64.mean()),
            "std": float(flat64.std()),
            "p99.99": float(hi),
            "zeros": float((flat == 0).double().mean()),
        }
    return out


class RangeObserver(torch.ao.quantization.observer.UniformQuantizationObserverBase):
    """A torch.ao observer that reports a fixed, precomputed clipping range ``(x_min, x_max)``.

    Lets a range chosen by any helper here drive torch's own eager ``prepare``/``convert``:
    ``RangeObserver.with_args(x_min=..., x_max=..., quant_min=0, quant_max=2**bits - 1)``.
    Taught in 05_static.
    """

    def __init__(
        self,
        x_min: float = 0.0,
        x_max: float = 1.0,
        dtype: torch.dtype = torch.quint8,
        qscheme: torch.qscheme = torch.per_tensor_affine,
        quant_min: int | None = None,
        quant_max: int | None = None,
        **kwargs,
    ) -> None:
        check_min_max(x_min, x_max)
        super().__init__(dtype=dtype, qscheme=qscheme, quant_min=quant_min, quant_max=quant_max, **kwargs)
        self.register_buffer("min_val", torch.tensor(float(x_min)))
        self.register_buffer("max_val", torch.tensor(float(x_max)))

    def forward(self, x_orig: torch.Tensor) -> torch.Tensor:
        return x_orig

    @torch.jit.export
    def calculate_qparams(self):
        return self._calculate_qparams(self.min_val, self.max_val)
