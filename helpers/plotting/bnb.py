"""Figures for 07_bnb: outlier features, threshold and block-size sweeps, loss curves.

Pure functions: arrays in, ``matplotlib.figure.Figure`` out. Taught in 07_bnb.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from matplotlib.figure import Figure

from helpers._validate import check_float_tensor
from helpers.plotting import COLORS, new_figure

__all__ = [
    "plot_feature_absmax",
    "plot_threshold_sweep",
    "plot_blocksize_sweep",
    "plot_loss_curves",
    "threshold_blocksize_figure",
]


def column_bars(
    ax, values: torch.Tensor, highlight: torch.Tensor, labels: tuple[str | None, str | None] = (None, None)
) -> None:
    """One thin vertical line per column, from the axis floor to ``values[j]``; ``highlight`` columns in red.

    ``vlines`` draws 1,536 columns far faster than ``bar`` (one artist instead of one rectangle each).
    """
    v = values.detach().float().flatten()
    idx = torch.arange(v.numel())
    floor = float(v[v > 0].min()) / 2 if bool((v > 0).any()) else 1e-3
    for mask, colour, label in ((~highlight, COLORS["x"], labels[0]), (highlight, COLORS["err"], labels[1])):
        if bool(mask.any()):
            ax.vlines(
                idx[mask].numpy(), floor, v[mask].clamp(min=floor).numpy(), color=colour, linewidth=0.8, label=label
            )


def plot_feature_absmax(col_absmax: torch.Tensor, threshold: float = 6.0, title: str = "") -> Figure:
    """Bar plot of ``max |x|`` per hidden feature, the columns at or above ``threshold`` highlighted."""
    check_float_tensor(col_absmax, "col_absmax")
    v = col_absmax.detach().float().flatten()
    fig, ax = new_figure(8, 3.2)
    out = v >= threshold
    column_bars(ax, v, out, ("feature", f"|x| >= {threshold:g}"))
    if threshold > 0:
        ax.axhline(threshold, color=COLORS["clip"], ls="--", lw=1, label=f"threshold {threshold:g}")
    ax.set_yscale("log")
    ax.set_xlabel("hidden feature (column of x)")
    ax.set_ylabel("max |x| over tokens")
    ax.set_title(title or f"{int(out.sum())} of {v.numel()} columns reach the threshold")
    ax.legend(loc="upper right", fontsize=8)
    return fig


def plot_threshold_sweep(
    thresholds: Sequence[float], rel_err: Sequence[float], outlier_frac: Sequence[float], title: str = ""
) -> Figure:
    """Relative output error of LLM.int8 (left axis) and fraction of float columns (right axis) vs threshold."""
    if not (len(thresholds) == len(rel_err) == len(outlier_frac)) or not thresholds:
        raise ValueError("thresholds, rel_err and outlier_frac must be non-empty and the same length")
    fig, ax = new_figure(7.5, 3.2)
    ax.plot(thresholds, rel_err, "o-", color=COLORS["err"], label="relative output error")
    ax.set_xlabel("threshold (0 = no decomposition)")
    ax.set_ylabel("||y_int8 - y|| / ||y||", color=COLORS["err"])
    ax.set_yscale("log")
    ax2 = ax.twinx()
    ax2.plot(thresholds, [100 * f for f in outlier_frac], "s--", color=COLORS["grid"], label="float columns")
    ax2.set_ylabel("columns in float (%)", color=COLORS["grid"])
    ax.set_title(title or "LLM.int8 threshold sweep")
    return fig


def plot_blocksize_sweep(blocksizes: Sequence[int], errors: Mapping[str, Sequence[float]], title: str = "") -> Figure:
    """Weight MSE vs block size (log-log), one line per method in ``errors``."""
    if not blocksizes or not errors:
        raise ValueError("blocksizes and errors must be non-empty")
    fig, ax = new_figure(7.0, 3.2)
    palette = [COLORS["quant"], COLORS["x"], COLORS["grid"], COLORS["clip"], COLORS["err"]]
    for i, (label, ys) in enumerate(errors.items()):
        if len(ys) != len(blocksizes):
            raise ValueError(f"errors[{label!r}] must have one value per block size")
        ax.plot(blocksizes, ys, "o-", color=palette[i % len(palette)], label=label)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("block size (values sharing one absmax)")
    ax.set_ylabel("MSE")
    ax.set_title(title or "smaller blocks: outliers stay local")
    ax.legend(fontsize=8)
    return fig


def plot_loss_curves(curves: Mapping[str, Sequence[float]], title: str = "") -> Figure:
    """Training loss per step, one line per optimizer."""
    if not curves:
        raise ValueError("curves must be a non-empty mapping label -> losses")
    fig, ax = new_figure(7.0, 3.2)
    palette = [COLORS["fp32"], COLORS["quant"], COLORS["grid"], COLORS["clip"]]
    for i, (label, ys) in enumerate(curves.items()):
        ax.plot(range(1, len(ys) + 1), list(ys), color=palette[i % len(palette)], label=label, lw=1.2, alpha=0.9)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title(title or "32-bit vs 8-bit Adam")
    ax.legend()
    return fig


def threshold_blocksize_figure(view: Mapping[str, object]) -> Figure:
    """Feature absmax of a layer's inputs with the threshold, and its weights' per-block absmax (``helpers.bnb.threshold_blocksize_view``).

    Taught in 07_bnb.
    """
    col, out, threshold, name = view["col_absmax"], view["outliers"], view["threshold"], view["name"]
    fig, (ax1, ax2) = new_figure(9, 3.2, ncols=2)
    column_bars(ax1, col, out)
    if threshold > 0:
        ax1.axhline(threshold, color=COLORS["clip"], ls="--", lw=1)
    ax1.set_yscale("log")
    ax1.set_xlabel("input feature")
    ax1.set_ylabel("max |x|")
    ax1.set_title(f"{name}: {int(out.sum())} float columns (threshold {threshold:g})", fontsize=9)
    blocks = view["block_absmax"]
    ax2.hist(blocks.numpy(), bins=40, color=COLORS["quant"])
    ax2.set_xlabel("absmax of a weight block")
    ax2.set_ylabel("blocks")
    ax2.set_title(f"{blocks.numel()} blocks of {view['blocksize']} weights", fontsize=9)
    return fig
