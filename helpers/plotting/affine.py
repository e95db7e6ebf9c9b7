"""Figures of lesson 02 (affine vs scale quantization): pure functions, data in, Figure out.

The data comes from ``helpers.affine`` (``playground_view``, ``small_multiples_view``) or from a
notebook cell's own sweep; nothing here quantizes. Taught in 02_affine.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from matplotlib.figure import Figure

from helpers._validate import check_finite_number
from helpers.plotting import COLORS, new_figure

__all__ = [
    "playground_figure",
    "small_multiples_figure",
    "clip_sweep_figure",
    "sqnr_bits_figure",
    "accuracy_bits_figure",
]


def _check_view(view: object, keys: tuple[str, ...], maker: str) -> None:
    if not isinstance(view, Mapping):
        raise TypeError(f"view must be the dict {maker} returns, got {type(view).__name__}")
    missing = [k for k in keys if k not in view]
    if missing:
        raise ValueError(f"view must be the dict {maker} returns; missing keys {missing}")


def _draw_grid(ax, levels: torch.Tensor, *, max_lines: int = 64) -> None:
    """Quantization levels as thin vertical lines (every k-th one when there are too many)."""
    step = max(1, len(levels) // max_lines)
    for v in levels[::step].tolist():
        ax.axvline(v, color=COLORS["grid"], lw=0.6, alpha=0.7)
    if 0.0 in levels.tolist():
        ax.axvline(0.0, color=COLORS["grid"], lw=1.6)


_PLAYGROUND_KEYS = ("x", "levels", "dense", "dense_err", "scale", "qmin", "qmax", "mse", "sqnr_db", "bits")


def playground_figure(view: Mapping) -> Figure:
    """The playground's picture: histogram of ``x`` with the grid, and ``err = x_hat - x`` against ``x``.

    ``view`` is ``helpers.affine.playground_view(bits, clip, scheme, distribution)``.
    Taught in 02_affine.
    """
    _check_view(view, _PLAYGROUND_KEYS, "helpers.affine.playground_view")
    v = view
    fig, (ax_h, ax_e) = new_figure(8.5, 3.4, ncols=2)
    ax_h.hist(v["x"].numpy(), bins=120, color=COLORS["x"], alpha=0.8, histtype="stepfilled")
    _draw_grid(ax_h, v["levels"])
    for edge in (v["levels"][0].item(), v["levels"][-1].item()):
        ax_h.axvline(edge, color=COLORS["clip"], lw=2, ls="--")
    ax_h.set_yscale("log")
    ax_h.set_xlabel("x")
    ax_h.set_ylabel("count (log)")
    ax_h.set_title(
        f"{v['distribution']}: {v['bits']}-bit {v['scheme']} grid ({v['qmax'] - v['qmin'] + 1} levels)", fontsize=10
    )
    ax_e.plot(v["dense"].numpy(), v["dense_err"].numpy(), color=COLORS["err"], lw=0.8)
    for edge in (v["levels"][0].item(), v["levels"][-1].item()):
        ax_e.axvline(edge, color=COLORS["clip"], lw=1.5, ls="--")
    ax_e.axhline(v["scale"] / 2, color="gray", ls=":", lw=1)
    ax_e.axhline(-v["scale"] / 2, color="gray", ls=":", lw=1)
    ax_e.set_xlabel("x")
    ax_e.set_ylabel("err = x_hat - x")
    ax_e.set_title(f"error (dotted: ±scale/2); MSE {v['mse']:.3g}, SQNR {v['sqnr_db']:.1f} dB", fontsize=10)
    return fig


def small_multiples_figure(view: Mapping) -> Figure:
    """Static grid of histograms with their quantization grid: rows = schemes, columns = distributions.

    ``view`` is ``helpers.affine.small_multiples_view(bits, schemes, distributions)``. Each panel's
    title gives the SQNR, so the figure reads without a kernel. Taught in 02_affine.
    """
    _check_view(view, ("bits", "schemes", "distributions", "samples", "views"), "helpers.affine.small_multiples_view")
    schemes, distributions = view["schemes"], view["distributions"]
    fig, axes = new_figure(
        2.2 * len(distributions), 1.9 * len(schemes), nrows=len(schemes), ncols=len(distributions), squeeze=False
    )
    for j, dist in enumerate(distributions):
        x = view["samples"][dist]
        for i, scheme in enumerate(schemes):
            v = view["views"][scheme, dist]
            ax = axes[i][j]
            ax.hist(x.numpy(), bins=80, color=COLORS["x"], alpha=0.8, histtype="stepfilled")
            _draw_grid(ax, v["levels"])
            ax.set_yscale("log")
            ax.set_yticks([])
            ax.set_yticks([], minor=True)
            ax.set_title(f"{scheme}, {dist}\nSQNR {v['sqnr_db']:.1f} dB", fontsize=8)
            ax.tick_params(labelsize=7)
    fig.suptitle(f"{view['bits']}-bit min-max grids (green lines) over four input distributions", fontsize=10)
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

    Taught in 02_affine.
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

    Taught in 02_affine.
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

    Taught in 02_affine.
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
