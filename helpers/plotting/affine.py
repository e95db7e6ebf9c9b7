"""Figures of lesson 02 (affine vs scale quantization): pure functions, data in, Figure out.

Taught in 02_affine_vs_scale.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from matplotlib.figure import Figure

from helpers._validate import check_choice, check_finite_number, check_float_tensor, check_int
from helpers.affine import affine_qparams, fake_quantize, mse, qrange, sqnr_db
from helpers.plotting import COLORS, new_figure

__all__ = [
    "DISTRIBUTIONS",
    "SCHEMES",
    "sample_distribution",
    "clip_range",
    "quant_view",
    "playground",
    "small_multiples",
    "clip_sweep_figure",
    "sqnr_bits_figure",
    "accuracy_bits_figure",
]

DISTRIBUTIONS = ("normal", "uniform", "relu", "heavy-tailed")
SCHEMES = ("affine", "symmetric")


def sample_distribution(name: str, n: int = 8192, seed: int = 0) -> torch.Tensor:
    """``n`` float32 samples of a named test distribution, seeded (same call, same numbers).

    ``normal``: N(0, 1); ``uniform``: U(-1, 1); ``relu``: max(N(0, 1), 0) — half the values
    exactly 0, like activations after a ReLU; ``heavy-tailed``: Laplace(0, 1/sqrt(2)) (unit
    variance) with 0.2 % of the values replaced by outliers of size 8–12. Taught in 02_affine_vs_scale.
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
    Taught in 02_affine_vs_scale.
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
    """Everything the playground draws: grid, ``x_hat``, error and metrics for one setting.

    Returns a dict with ``x_min, x_max, scale, zero_point, qmin, qmax, levels`` (the float value of
    every code), ``x_hat``, ``mse``, ``sqnr_db`` and ``clipped`` (fraction of values outside the grid).
    Taught in 02_affine_vs_scale.
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


def _draw_grid(ax, levels: torch.Tensor, *, max_lines: int = 64) -> None:
    """Quantization levels as thin vertical lines (every k-th one when there are too many)."""
    step = max(1, len(levels) // max_lines)
    for v in levels[::step].tolist():
        ax.axvline(v, color=COLORS["grid"], lw=0.6, alpha=0.7)
    if 0.0 in levels.tolist():
        ax.axvline(0.0, color=COLORS["grid"], lw=1.6)


def playground(bits: int = 4, clip: float = 1.0, scheme: str = "affine", distribution: str = "normal"):
    """The widget's picture: histogram of ``x`` with the grid, and ``err = x_hat - x`` against ``x``.

    Returns ``(Figure, readout)``; the readout gives scale, zero_point, MSE, SQNR and the clipped
    fraction. Taught in 02_affine_vs_scale.
    """
    check_choice(distribution, "distribution", DISTRIBUTIONS)
    x = sample_distribution(distribution, 8192, seed=0)
    v = quant_view(x, bits, clip, scheme)
    fig, (ax_h, ax_e) = new_figure(8.5, 3.4, ncols=2)
    ax_h.hist(x.numpy(), bins=120, color=COLORS["x"], alpha=0.8, histtype="stepfilled")
    _draw_grid(ax_h, v["levels"])
    for edge in (v["levels"][0].item(), v["levels"][-1].item()):
        ax_h.axvline(edge, color=COLORS["clip"], lw=2, ls="--")
    ax_h.set_yscale("log")
    ax_h.set_xlabel("x")
    ax_h.set_ylabel("count (log)")
    ax_h.set_title(f"{distribution}: {bits}-bit {scheme} grid ({v['qmax'] - v['qmin'] + 1} levels)", fontsize=10)
    lo, hi = float(x.min()), float(x.max())
    pad = 0.02 * (hi - lo)
    dense = torch.linspace(lo - pad, hi + pad, 4001)
    dense_hat = fake_quantize(dense, v["scale"], v["zero_point"], v["qmin"], v["qmax"])
    ax_e.plot(dense.numpy(), (dense_hat - dense).numpy(), color=COLORS["err"], lw=0.8)
    for edge in (v["levels"][0].item(), v["levels"][-1].item()):
        ax_e.axvline(edge, color=COLORS["clip"], lw=1.5, ls="--")
    ax_e.axhline(v["scale"] / 2, color="gray", ls=":", lw=1)
    ax_e.axhline(-v["scale"] / 2, color="gray", ls=":", lw=1)
    ax_e.set_xlabel("x")
    ax_e.set_ylabel("err = x_hat - x")
    ax_e.set_title(f"error (dotted: ±scale/2); MSE {v['mse']:.3g}, SQNR {v['sqnr_db']:.1f} dB", fontsize=10)
    readout = (
        f"bits={bits}  scheme={scheme}  clip={clip:.2f}  distribution={distribution}\n"
        f"range [{v['x_min']:.4g}, {v['x_max']:.4g}]  scale={v['scale']:.4g}  zero_point={v['zero_point']}\n"
        f"MSE={v['mse']:.4g}  SQNR={v['sqnr_db']:.2f} dB  clipped={100 * v['clipped']:.2f}%"
    )
    return fig, readout


def small_multiples(
    bits: int = 3, schemes: Sequence[str] = SCHEMES, distributions: Sequence[str] = DISTRIBUTIONS
) -> Figure:
    """Static grid of histograms with their quantization grid: rows = schemes, columns = distributions.

    Each panel's title gives the SQNR, so the figure reads without a kernel. Taught in 02_affine_vs_scale.
    """
    for s in schemes:
        check_choice(s, "schemes", SCHEMES)
    for d in distributions:
        check_choice(d, "distributions", DISTRIBUTIONS)
    if not schemes or not distributions:
        raise ValueError("schemes and distributions must be non-empty")
    fig, axes = new_figure(
        2.2 * len(distributions), 1.9 * len(schemes), nrows=len(schemes), ncols=len(distributions), squeeze=False
    )
    for j, dist in enumerate(distributions):
        x = sample_distribution(dist, 8192, seed=0)
        for i, scheme in enumerate(schemes):
            v = quant_view(x, bits, 1.0, scheme)
            ax = axes[i][j]
            ax.hist(x.numpy(), bins=80, color=COLORS["x"], alpha=0.8, histtype="stepfilled")
            _draw_grid(ax, v["levels"])
            ax.set_yscale("log")
            ax.set_yticks([])
            ax.set_yticks([], minor=True)
            ax.set_title(f"{scheme}, {dist}\nSQNR {v['sqnr_db']:.1f} dB", fontsize=8)
            ax.tick_params(labelsize=7)
    fig.suptitle(f"{bits}-bit min-max grids (green lines) over four input distributions", fontsize=10)
    return fig


def _check_series(xs: Sequence[float], series: Mapping[str, Sequence[float]], name: str) -> None:
    if len(xs) == 0:
        raise ValueError(f"{name} must be non-empty")
    if not isinstance(series, Mapping) or not series:
        raise ValueError("series must be a non-empty mapping of label -> values")
    for label, ys in series.items():
        if len(ys) != len(xs):
            raise ValueError(f"series[{label!r}] has {len(ys)} values, {name} has {len(xs)}")


def clip_sweep_figure(clips: Sequence[float], parts: Mapping[str, Sequence[float]], title: str = "") -> Figure:
    """MSE against the clipping range (log y): typically ``total``, ``rounding`` and ``clipping`` curves.

    Taught in 02_affine_vs_scale.
    """
    _check_series(clips, parts, "clips")
    fig, ax = new_figure(7.5, 3.4)
    colors = {"total": "black", "rounding": COLORS["grid"], "clipping": COLORS["clip"]}
    for label, ys in parts.items():
        ax.plot(list(clips), list(ys), marker=".", label=label, color=colors.get(label))
    ax.set_yscale("log")
    ax.set_xlabel("clip range (fraction of max |x|)")
    ax.set_ylabel("MSE")
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    return fig


def sqnr_bits_figure(bits: Sequence[int], sqnr: Mapping[str, Sequence[float]]) -> Figure:
    """Measured SQNR (dB) against bits for each data set, with the 6.02·b dB rule as a dashed line.

    Taught in 02_affine_vs_scale.
    """
    _check_series(bits, sqnr, "bits")
    fig, ax = new_figure(7.0, 3.4)
    for label, ys in sqnr.items():
        ax.plot(list(bits), list(ys), marker="o", label=label)
    ax.plot(list(bits), [6.02 * b for b in bits], ls="--", color="gray", label="6.02·b")
    ax.set_xlabel("bits")
    ax.set_ylabel("SQNR (dB)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def accuracy_bits_figure(bits: Sequence[int], accuracy: Mapping[str, Sequence[float]], fp32: float) -> Figure:
    """Test accuracy (%) against weight bits for each granularity, with the fp32 accuracy as a line.

    Taught in 02_affine_vs_scale.
    """
    _check_series(bits, accuracy, "bits")
    fp32 = check_finite_number(fp32, "fp32")
    fig, ax = new_figure(7.0, 3.2)
    for label, ys in accuracy.items():
        ax.plot(list(bits), list(ys), marker="o", label=label)
    ax.axhline(fp32, color="gray", ls="--", label=f"fp32 ({fp32:.2f}%)")
    ax.set_xlabel("weight bits")
    ax.set_ylabel("test accuracy (%)")
    ax.invert_xaxis()
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig
