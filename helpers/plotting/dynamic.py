"""Figures for dynamic quantization: a layer's weights/activations on the int grid, sensitivity, outliers, latency.

Pure functions: tensors and numbers in, ``matplotlib.figure.Figure`` out. Taught in 04_ptdq.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from helpers._validate import check_choice, check_float_tensor
from helpers.dynamic import WEIGHT_GRANULARITIES, fake_quant_layer, outlier_ratio
from helpers.plotting import COLORS, new_figure

__all__ = ["layer_view", "layer_grid", "sensitivity_plot", "outlier_histograms", "latency_plot", "short_name"]

_MAX_TICKS = 64  # draw every grid level up to this many, else every k-th one


def short_name(name: str) -> str:
    """``encoder.layer.3.output.dense`` -> ``L3 output.dense`` (for axis labels). Taught in 04_ptdq."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a string, got {type(name).__name__}")
    parts = name.split(".")
    if len(parts) > 3 and parts[0] == "encoder" and parts[1] == "layer":
        rest = ".".join(p for p in parts[3:] if p != "self")
        return f"L{parts[2]} {rest}"
    return name


def _grid_ticks(ax, levels: np.ndarray, lo: float, hi: float) -> None:
    levels = levels[(levels >= lo) & (levels <= hi)]
    step = max(1, int(np.ceil(len(levels) / _MAX_TICKS)))
    shown = levels[::step]
    ax.vlines(shown, 0, 0.08, transform=ax.get_xaxis_transform(), color=COLORS["grid"], lw=0.8)
    if step > 1:
        ax.text(0.99, 0.1, f"grid: every {step}th level", transform=ax.transAxes, ha="right", fontsize=7)


def _check_layer(w: torch.Tensor, x: torch.Tensor) -> None:
    check_float_tensor(w, "w")
    check_float_tensor(x, "x")


def layer_view(
    w: torch.Tensor, x: torch.Tensor, bits: int = 8, weight_granularity: str = "channel", name: str = "layer"
) -> tuple[Figure, str]:
    """Three panels for one Linear layer at ``bits``: weight histogram, input histogram (both with the int grid), output error.

    Weights: symmetric, per channel (the grid of the widest row is drawn) or per tensor.
    Activations: dynamic per-tensor affine on this input. Returns ``(figure, readout text)``.
    Taught in 04_ptdq.
    """
    _check_layer(w, x)
    check_choice(weight_granularity, "weight_granularity", WEIGHT_GRANULARITIES)
    res = fake_quant_layer(w, x, bits, weight_granularity)
    fig, (ax_w, ax_x, ax_e) = new_figure(9.0, 3.2, ncols=3)
    wn = w.detach().float().flatten().numpy()
    ax_w.hist(wn, bins=120, color=COLORS["x"], log=True)
    w_scale = res["w_scale"].flatten()
    widest = float(w_scale.max())
    qmin_w, qmax_w = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    _grid_ticks(ax_w, np.arange(qmin_w, qmax_w + 1) * widest, float(wn.min()), float(wn.max()))
    which = "widest row's grid" if weight_granularity == "channel" else "per-tensor grid"
    ax_w.set_title(f"weights ({which})", fontsize=9)
    ax_w.set_xlabel("w")

    xn = x.detach().float().flatten().numpy()
    ax_x.hist(xn, bins=160, color=COLORS["x"], log=True)
    levels = (np.arange(res["qmin"], res["qmax"] + 1) - res["zero_point"]) * res["scale"]
    _grid_ticks(ax_x, levels, float(xn.min()), float(xn.max()))
    ax_x.set_title(f"inputs x (max/median |x| = {outlier_ratio(x):.0f})", fontsize=9)
    ax_x.set_xlabel("x")

    err = (res["y_hat"] - res["y"]).flatten().numpy()
    ax_e.hist(err, bins=120, color=COLORS["err"], log=True)
    ax_e.set_title(f"output error, rel {res['rel_err']:.2%}", fontsize=9)
    ax_e.set_xlabel("err = y_hat - y")
    fig.suptitle(f"{short_name(name)} at {bits} bits", fontsize=10)
    readout = (
        f"{name}: {bits}-bit weights (per-{weight_granularity}) and {bits}-bit dynamic activations; "
        f"activation scale {res['scale']:.4g}, zero point {res['zero_point']}; "
        f"relative output error ||y_hat - y|| / ||y|| = {res['rel_err']:.3%}"
    )
    return fig, readout


def layer_grid(layers: Mapping[str, tuple[torch.Tensor, torch.Tensor]], bits_list: Sequence[int] = (8, 6, 4)) -> Figure:
    """Small multiples: one row per layer, one column per bit width, each the input histogram with its grid and the output error.

    Taught in 04_ptdq.
    """
    if not isinstance(layers, Mapping) or not layers:
        raise ValueError("layers must be a non-empty mapping name -> (w, x)")
    bits_list = list(bits_list)
    if not bits_list:
        raise ValueError("bits_list must hold at least one bit width")
    nrows, ncols = len(layers), len(bits_list)
    fig, axes = new_figure(2.8 * ncols, 2.0 * nrows + 0.4, nrows=nrows, ncols=ncols, squeeze=False)
    for r, (name, (w, x)) in enumerate(layers.items()):
        _check_layer(w, x)
        xn = x.detach().float().flatten().numpy()
        for c, bits in enumerate(bits_list):
            res = fake_quant_layer(w, x, bits, "channel")
            ax = axes[r, c]
            ax.hist(xn, bins=120, color=COLORS["x"], log=True)
            levels = (np.arange(res["qmin"], res["qmax"] + 1) - res["zero_point"]) * res["scale"]
            _grid_ticks(ax, levels, float(xn.min()), float(xn.max()))
            ax.set_title(f"{short_name(name)}, {bits} bits: err {res['rel_err']:.1%}", fontsize=8)
            ax.tick_params(labelsize=7)
    fig.suptitle("layer inputs on the dynamic int grid (green ticks) and relative output error", fontsize=9)
    return fig


def sensitivity_plot(sensitivity: Mapping[str, float], keep_float: Sequence[str] = ()) -> Figure:
    """Bar chart of ``1 - cosine`` per layer when only that layer is quantized; layers kept float are highlighted.

    Taught in 04_ptdq.
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


def outlier_histograms(inputs: Mapping[str, torch.Tensor]) -> Figure:
    """Histograms (log counts) of the inputs of a few layers, titled with ``max/median |x|``. Taught in 04_ptdq."""
    if not isinstance(inputs, Mapping) or not inputs:
        raise ValueError("inputs must be a non-empty mapping name -> input tensor")
    fig, axes = new_figure(4.0 * len(inputs), 3.0, ncols=len(inputs), squeeze=False)
    for ax, (name, x) in zip(axes[0], inputs.items()):
        check_float_tensor(x, "inputs[" + repr(name) + "]")
        xn = x.detach().float().flatten().numpy()
        ax.hist(xn, bins=200, color=COLORS["x"], log=True)
        ax.set_title(f"{short_name(name)}: max/median |x| = {outlier_ratio(x):.0f}", fontsize=9)
        ax.set_xlabel("x")
    axes[0, 0].set_ylabel("count (log)")
    return fig


def latency_plot(batch_sizes: Sequence[int], ratios: Mapping[str, Sequence[float]]) -> Figure:
    """Speed-up over fp32 (``fp32 median / variant median``) per batch size, one line per variant. Taught in 04_ptdq."""
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
