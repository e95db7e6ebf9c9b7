"""Figures for dynamic quantization: a layer's weights/activations on the int grid, sensitivity, outliers, latency.

Pure functions: the views of ``helpers.dynamic`` (arrays and numbers) in, ``matplotlib.figure.Figure`` out. Taught in 04_dynamic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from helpers.plotting import COLORS, new_figure

__all__ = ["layer_figure", "layer_grid_figure", "sensitivity_plot", "outlier_histograms", "latency_plot", "short_name"]

_MAX_TICKS = 64  # draw every grid level up to this many, else every k-th one


def short_name(name: str) -> str:
    """``encoder.layer.3.output.dense`` -> ``L3 output.dense`` (for axis labels). Taught in 04_dynamic."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a string, got {type(name).__name__}")
    parts = name.split(".")
    if len(parts) > 3 and parts[0] == "encoder" and parts[1] == "layer":
        rest = ".".join(p for p in parts[3:] if p != "self")
        return f"L{parts[2]} {rest}"
    return name


def _ordinal(n: int) -> str:
    """2 -> "2nd", 3 -> "3rd", 11 -> "11th", 22 -> "22nd"."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _grid_ticks(ax, levels: np.ndarray, lo: float, hi: float) -> None:
    levels = levels[(levels >= lo) & (levels <= hi)]
    step = max(1, int(np.ceil(len(levels) / _MAX_TICKS)))
    shown = levels[::step]
    ax.vlines(shown, 0, 0.08, transform=ax.get_xaxis_transform(), color=COLORS["grid"], lw=0.8)
    if step > 1:
        ax.text(0.99, 0.1, f"grid: every {_ordinal(step)} level", transform=ax.transAxes, ha="right", fontsize=7)


def layer_figure(view: Mapping[str, object]) -> Figure:
    """Three panels for one Linear layer (``helpers.dynamic.layer_view``): weights and inputs on their int grids, output error.

    Taught in 04_dynamic.
    """
    fig, (ax_w, ax_x, ax_e) = new_figure(9.0, 3.2, ncols=3)
    wn, xn = view["w"], view["x"]
    ax_w.hist(wn, bins=120, color=COLORS["x"], log=True)
    _grid_ticks(ax_w, view["w_levels"], float(wn.min()), float(wn.max()))
    which = "widest row's grid" if view["weight_granularity"] == "channel" else "per-tensor grid"
    ax_w.set_title(f"weights ({which})", fontsize=9)
    ax_w.set_xlabel("w")
    ax_x.hist(xn, bins=160, color=COLORS["x"], log=True)
    _grid_ticks(ax_x, view["x_levels"], float(xn.min()), float(xn.max()))
    grid = "widest token's grid, " if view.get("act_granularity") == "token" else ""
    ax_x.set_title(f"inputs x ({grid}max/median |x| = {view['outlier_ratio']:.0f})", fontsize=9)
    ax_x.set_xlabel("x")
    ax_e.hist(view["err"], bins=120, color=COLORS["err"], log=True)
    ax_e.set_title(f"output error, rel {view['rel_err']:.2%}", fontsize=9)
    ax_e.set_xlabel("err = y_hat - y")
    act_bits = view.get("act_bits", view["bits"])
    fig.suptitle(
        f"{short_name(view['name'])}: {view['bits']}-bit weights, {act_bits}-bit activations "
        f"per {view.get('act_granularity', 'tensor')}",
        fontsize=10,
    )
    return fig


def layer_grid_figure(view: Mapping[str, object]) -> Figure:
    """Small multiples (``helpers.dynamic.layer_grid_view``): one row per layer, one column per bit width.

    Each panel is the layer's input histogram with its dynamic int grid, titled with the output error.
    Taught in 04_dynamic.
    """
    rows, bits_list = view["rows"], view["bits_list"]
    nrows, ncols = len(rows), len(bits_list)
    fig, axes = new_figure(2.8 * ncols, 2.0 * nrows + 0.4, nrows=nrows, ncols=ncols, squeeze=False)
    for r, row in enumerate(rows):
        xn = row["x"]
        for c, cell in enumerate(row["cells"]):
            ax = axes[r, c]
            ax.hist(xn, bins=120, color=COLORS["x"], log=True)
            _grid_ticks(ax, cell["x_levels"], float(xn.min()), float(xn.max()))
            ax.set_title(f"{short_name(row['name'])}, {cell['bits']} bits: err {cell['rel_err']:.1%}", fontsize=8)
            ax.tick_params(labelsize=7)
    fig.suptitle("layer inputs on the dynamic int grid (green ticks) and relative output error", fontsize=9)
    return fig


def sensitivity_plot(sensitivity: Mapping[str, float], keep_float: Sequence[str] = ()) -> Figure:
    """Bar chart of ``1 - cosine`` per layer when only that layer is quantized; layers kept float are highlighted.

    Taught in 04_dynamic.
    """
    if not isinstance(sensitivity, Mapping) or not sensitivity:
        raise ValueError("sensitivity must be a non-empty mapping name -> mean cosine")
    names = list(sensitivity)
    loss = np.array([max(1.0 - float(sensitivity[n]), 1e-7) for n in names])
    keep = set(keep_float)
    colors = [COLORS["err"] if n in keep else COLORS["x"] for n in names]
    fig, ax = new_figure(9.0, 3.4)
    ax.bar(range(len(names)), loss, color=colors)
    ax.set_yscale("log")
    ax.set_xticks(range(len(names)), [short_name(n) for n in names], rotation=90, fontsize=6)
    ax.set_ylabel("1 - mean cosine to fp32")
    ax.set_title("one layer quantized at a time (red: kept in float in the mixed variant)", fontsize=9)
    return fig


def outlier_histograms(view: Mapping[str, Mapping[str, object]]) -> Figure:
    """Histograms (log counts) of a few layers' inputs (``helpers.dynamic.outliers_view``), titled with ``max/median |x|``.

    Taught in 04_dynamic.
    """
    if not isinstance(view, Mapping) or not view:
        raise ValueError("view must be a non-empty mapping name -> {x, ratio} (helpers.dynamic.outliers_view)")
    fig, axes = new_figure(4.0 * len(view), 3.0, ncols=len(view), squeeze=False)
    for ax, (name, v) in zip(axes[0], view.items()):
        ax.hist(v["x"], bins=200, color=COLORS["x"], log=True)
        ax.set_title(f"{short_name(name)}: max/median |x| = {v['ratio']:.0f}", fontsize=9)
        ax.set_xlabel("x")
    axes[0, 0].set_ylabel("count (log)")
    return fig


def latency_plot(batch_sizes: Sequence[int], ratios: Mapping[str, Sequence[float]]) -> Figure:
    """Speed-up over fp32 (``fp32 median / variant median``) per batch size, one line per variant. Taught in 04_dynamic."""
    batch_sizes = list(batch_sizes)
    if not batch_sizes or not isinstance(ratios, Mapping) or not ratios:
        raise ValueError("batch_sizes and ratios must be non-empty")
    fig, ax = new_figure(7.0, 3.4)
    for name, values in ratios.items():
        values = list(values)
        if len(values) != len(batch_sizes):
            raise ValueError(f"ratios[{name!r}] has {len(values)} values for {len(batch_sizes)} batch sizes")
        ax.plot(batch_sizes, values, marker="o", label=name)
    ax.axhline(1.0, color="black", lw=0.8, ls="--")
    ax.set_xscale("log", base=2)
    ax.set_xticks(batch_sizes, [str(b) for b in batch_sizes])
    ax.set_xlabel("batch size (sentences)")
    ax.set_ylabel("speed-up vs fp32 (x)")
    ax.legend(fontsize=7)
    return fig
