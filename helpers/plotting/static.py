"""Figures of lesson 05_static: activation histograms with each observer's clipping range, ablations.

Pure functions: tensors and numbers in, ``matplotlib.figure.Figure`` out. Taught in 05_static.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from helpers._validate import check_bits, check_float_tensor
from helpers.plotting import COLORS, new_figure

__all__ = ["METHOD_COLORS", "clip_ranges_figure", "observer_figure", "observer_grid_figure", "ablation_figure"]

#: One colour per observer, shared by the figures and the widget.
METHOD_COLORS = {
    "minmax": "#4C72B0",
    "moving_average": "#64B5CD",
    "histogram": "#55A868",
    "percentile": "#DD8452",
    "mse": "#C44E52",
    "kl": "#8172B3",
    "batch_mode": "#937860",
}


def _hist(ax, x: torch.Tensor, bins: int = 80) -> None:
    values = x.detach().reshape(-1).float().numpy()
    ax.hist(values, bins=bins, color=COLORS["x"], alpha=0.6, log=True)


def clip_ranges_figure(
    acts: Mapping[str, torch.Tensor],
    ranges: Mapping[str, Mapping[str, tuple[float, float]]],
    *,
    ncols: int = 3,
    width: float = 9.0,
) -> Figure:
    """Small multiples: each layer's activation histogram (log counts) with every observer's ``x_max`` drawn on it.

    ``acts`` maps layer -> activations; ``ranges`` maps layer -> {method: (x_min, x_max)}. The
    lower ends are drawn only where the data are signed. Taught in 05_static.
    """
    if not acts:
        raise ValueError("acts must be a non-empty mapping layer -> activations")
    names = list(acts)
    missing = [n for n in names if n not in ranges]
    if missing:
        raise ValueError(f"ranges must have an entry for every layer in acts; missing {missing}")
    nrows = -(-len(names) // ncols)
    fig, axes = new_figure(width, 2.3 * nrows, nrows=nrows, ncols=ncols, squeeze=False)
    for k, ax in enumerate(axes.flat):
        if k >= len(names):
            ax.set_visible(False)
            continue
        name = names[k]
        x = check_float_tensor(acts[name], f"acts[{name!r}]")
        _hist(ax, x)
        signed = bool(x.min() < 0)
        for method, (lo, hi) in ranges[name].items():
            color = METHOD_COLORS.get(method, COLORS["clip"])
            ax.axvline(float(hi), color=color, lw=1.4, label=method)
            if signed:
                ax.axvline(float(lo), color=color, lw=1.4)
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(7, len(labels)), fontsize=8, frameon=False)
    return fig


def observer_figure(
    x: torch.Tensor,
    x_min: float,
    x_max: float,
    bits: int,
    *,
    title: str = "",
    readout: str = "",
) -> Figure:
    """One layer: histogram of ``x`` with the clipping range shaded, the ``2^bits`` grid as ticks, clipped mass in red.

    Taught in 05_static.
    """
    x = check_float_tensor(x, "x")
    bits = check_bits(bits, lo=2, hi=8)
    fig, ax = new_figure(8.0, 3.4)
    _hist(ax, x)
    lo, hi = float(x_min), float(x_max)
    ax.axvspan(lo, hi, color=COLORS["clip"], alpha=0.12, label=f"clip range [{lo:.3g}, {hi:.3g}]")
    ax.axvline(lo, color=COLORS["clip"], lw=1.5)
    ax.axvline(hi, color=COLORS["clip"], lw=1.5)
    levels = np.linspace(min(lo, 0.0), max(hi, 0.0), 2**bits)
    if len(levels) <= 64:
        ymin = ax.get_ylim()[0]
        ax.plot(levels, np.full_like(levels, ymin * 1.5), "|", color=COLORS["grid"], ms=9, label=f"{2**bits} levels")
    clipped = x.reshape(-1)[(x.reshape(-1) > hi) | (x.reshape(-1) < lo)]
    if clipped.numel():
        ax.hist(clipped.float().numpy(), bins=20, color=COLORS["err"], alpha=0.9, log=True, label="clipped values")
    ax.set_xlabel("activation value x")
    ax.set_ylabel("count (log)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper right")
    if readout:
        ax.text(0.02, 0.95, readout, transform=ax.transAxes, va="top", fontsize=8, family="monospace")
    return fig


def observer_grid_figure(
    x: torch.Tensor, settings: Sequence[tuple[str, float, float, int]], *, ncols: int = 3
) -> Figure:
    """Small multiples of one layer: for each ``(title, x_min, x_max, bits)`` the histogram with that clip range.

    The static companion of the widget (reads without a kernel). Taught in 05_static.
    """
    x = check_float_tensor(x, "x")
    if not settings:
        raise ValueError("settings must hold at least one (title, x_min, x_max, bits) tuple")
    nrows = -(-len(settings) // ncols)
    fig, axes = new_figure(9.0, 2.4 * nrows, nrows=nrows, ncols=ncols, squeeze=False, sharex=True)
    for k, ax in enumerate(axes.flat):
        if k >= len(settings):
            ax.set_visible(False)
            continue
        title, lo, hi, bits = settings[k]
        bits = check_bits(bits, lo=2, hi=8)
        _hist(ax, x)
        ax.axvspan(float(lo), float(hi), color=COLORS["clip"], alpha=0.15)
        ax.axvline(float(hi), color=COLORS["clip"], lw=1.4)
        clipped = x.reshape(-1)[x.reshape(-1) > float(hi)]
        if clipped.numel():
            ax.hist(clipped.float().numpy(), bins=10, color=COLORS["err"], log=True)
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=7)
    return fig


def ablation_figure(
    panels: Sequence[tuple[str, Sequence[str], Sequence[float]]],
    *,
    baseline: float | None = None,
    ylabel: str = "test accuracy (%)",
) -> Figure:
    """One bar chart per factor: ``panels`` is ``[(title, labels, values), ...]``; ``baseline`` (fp32) as a dashed line.

    Taught in 05_static.
    """
    if not panels:
        raise ValueError("panels must hold at least one (title, labels, values) triple")
    fig, axes = new_figure(9.0, 3.2, ncols=len(panels), squeeze=False)
    lows = [min(v) for _, _, v in panels] + ([baseline] if baseline is not None else [])
    highs = [max(v) for _, _, v in panels] + ([baseline] if baseline is not None else [])
    pad = max(0.5, (max(highs) - min(lows)) * 0.15)
    for ax, (title, labels, values) in zip(axes.flat, panels, strict=True):
        if len(labels) != len(values):
            raise ValueError(f"panel {title!r}: labels and values must have the same length")
        ax.bar(range(len(values)), values, color=COLORS["quant"])
        ax.set_xticks(range(len(values)), labels, rotation=45, ha="right", fontsize=8)
        if baseline is not None:
            ax.axhline(baseline, color=COLORS["fp32"], ls="--", lw=1.2, label="fp32")
        ax.set_ylim(min(lows) - pad, max(highs) + pad / 2)
        ax.set_title(title, fontsize=9)
        ax.tick_params(axis="y", labelsize=8)
    axes.flat[0].set_ylabel(ylabel, fontsize=9)
    if baseline is not None:
        axes.flat[0].legend(fontsize=8, loc="lower left")
    return fig
