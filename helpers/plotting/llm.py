"""Figures for 09_llm: grids of one weight group, salient channels, SmoothQuant's channel maxima,
one layer under a quantization method, and perplexity against bits.

Pure functions: arrays in, ``matplotlib.figure.Figure`` out; nothing here quantizes or runs a
model. Taught in 09_llm.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from matplotlib.figure import Figure

from helpers.plotting import COLORS, new_figure

__all__ = ["group_grids", "salient_channels", "channel_max", "layer_panel", "layer_grid", "perplexity_vs_bits"]

_METHOD_COLORS = {"rtn": "#4C72B0", "gptq": "#DD8452", "awq": "#55A868", "hqq": "#C44E52", "smoothquant": "#8172B3"}


def _vec(t, name: str) -> torch.Tensor:
    t = torch.as_tensor(t).detach().double().reshape(-1)
    if t.numel() == 0:
        raise ValueError(f"{name} must not be empty")
    return t


def group_grids(w: torch.Tensor, grids: Mapping[str, torch.Tensor]) -> Figure:
    """One group of weights (dots) and each grid's dequantized values (steps), one panel per grid.

    ``grids`` maps a label to the group's ``w_hat``. Taught in 09_llm.
    """
    w = _vec(w, "w")
    if not grids:
        raise ValueError("grids must hold at least one labelled w_hat")
    fig, axes = new_figure(4.0 * len(grids), 3.2, ncols=len(grids), sharey=True)
    axes = [axes] if len(grids) == 1 else list(axes)
    idx = torch.arange(w.numel())
    for ax, (label, w_hat) in zip(axes, grids.items(), strict=True):
        w_hat = _vec(w_hat, label)
        for level in torch.unique(w_hat):
            ax.axhline(float(level), color=COLORS["grid"], lw=0.6, alpha=0.6)
        ax.axhline(0.0, color="black", lw=0.8, ls=":")
        ax.plot(idx, w, "o", ms=4, color=COLORS["x"], label="w")
        ax.plot(idx, w_hat, "_", ms=10, mew=2, color=COLORS["x_hat"], label="w_hat")
        exact0 = int((w_hat == 0).sum())
        ax.set_title(f"{label}\nMSE {float(((w - w_hat) ** 2).mean()):.2e}, {exact0} values at exactly 0", fontsize=9)
        ax.set_xlabel("column in the group")
    axes[0].set_ylabel("weight")
    axes[0].legend(fontsize=8, loc="upper right")
    return fig


def salient_channels(x_mean: torch.Tensor, err_rtn: torch.Tensor, err_awq: torch.Tensor, top: int = 10) -> Figure:
    """Mean ``|x|`` per input channel (left) and the per-channel output error ``mean|x_j|·‖ΔW_j‖`` (right).

    The ``top`` channels by activation are marked. Taught in 09_llm.
    """
    x_mean, err_rtn, err_awq = _vec(x_mean, "x_mean"), _vec(err_rtn, "err_rtn"), _vec(err_awq, "err_awq")
    if not x_mean.shape == err_rtn.shape == err_awq.shape:
        raise ValueError("x_mean, err_rtn and err_awq must have one value per input channel")
    order = torch.argsort(x_mean, descending=True)[:top]
    fig, (a0, a1) = new_figure(10, 3.3, ncols=2)
    a0.plot(x_mean, lw=0.7, color=COLORS["x"])
    a0.plot(order, x_mean[order], "o", color=COLORS["err"], ms=4, label=f"top {top}")
    a0.set_yscale("log")
    a0.set_xlabel("input channel")
    a0.set_ylabel("mean |x|")
    a0.legend(fontsize=8)
    a0.set_title("salient channels of the real activations", fontsize=9)
    c_rtn, c_awq = x_mean * err_rtn, x_mean * err_awq
    a1.plot(c_rtn, lw=0.6, color=_METHOD_COLORS["rtn"], label=f"RTN (sum {float(c_rtn.sum()):.3g})")
    a1.plot(c_awq, lw=0.6, color=_METHOD_COLORS["awq"], label=f"AWQ (sum {float(c_awq.sum()):.3g})", alpha=0.8)
    a1.set_yscale("log")
    a1.set_xlabel("input channel")
    a1.set_ylabel("mean|x_j| · ‖W_j − Ŵ_j‖")
    a1.legend(fontsize=8)
    a1.set_title("error each channel sends to the output", fontsize=9)
    return fig


def channel_max(before: Mapping[str, torch.Tensor], after: Mapping[str, torch.Tensor], top: int = 5) -> Figure:
    """Per-channel max ``|·|`` of activations and weights before and after smoothing (log scale).

    ``before``/``after`` map ``"activation"`` and ``"weight"`` to per-input-channel maxima.
    The ``top`` activation outlier channels (before) are marked in every panel. Taught in 09_llm.
    """
    for d, name in ((before, "before"), (after, "after")):
        if set(d) != {"activation", "weight"}:
            raise ValueError(f"{name} must map 'activation' and 'weight' to per-channel maxima")
    a_b = _vec(before["activation"], "activation")
    order = torch.argsort(a_b, descending=True)[:top]
    fig, axes = new_figure(10, 4.6, nrows=2, ncols=2, sharex=True)
    for col, (label, d) in enumerate((("before smoothing", before), ("after smoothing", after))):
        for row, kind in enumerate(("activation", "weight")):
            v = _vec(d[kind], kind)
            ax = axes[row, col]
            ax.plot(v, lw=0.6, color=COLORS["x"] if kind == "activation" else COLORS["quant"])
            ax.plot(order, v[order], "o", ms=4, color=COLORS["err"])
            ax.set_yscale("log")
            ratio = float(v.max() / v.median())
            ax.set_title(f"{kind} max per channel, {label}: max/median {ratio:.0f}", fontsize=9)
            if row == 1:
                ax.set_xlabel("input channel")
    return fig


def layer_panel(view: Mapping, title: str = "") -> Figure:
    """The widget's picture of one quantized layer: per-channel mean ``|x|`` and weight error.

    ``view`` is :func:`helpers.llm.layer_view`'s dict. Taught in 09_llm.
    """
    x_mean, err = _vec(view["x_mean"], "x_mean"), _vec(view["channel_error"], "channel_error")
    fig, ax = new_figure(8, 3.0)
    ax.plot(err, lw=0.6, color=COLORS["err"], label="‖W_j − Ŵ_j‖ (weight error per input channel)")
    ax.set_yscale("log")
    ax.set_xlabel("input channel")
    ax.set_ylabel("weight error")
    ax2 = ax.twinx()
    ax2.plot(x_mean, lw=0.6, color=COLORS["x"], alpha=0.6, label="mean |x_j|")
    ax2.set_yscale("log")
    ax2.set_ylabel("mean |x|", color=COLORS["x"])
    ax.set_title(f"{title}  output error {view['output_error']:.4f}", fontsize=9)
    ax.legend(fontsize=8, loc="lower left")
    return fig


def layer_grid(views: Mapping[str, Mapping]) -> Figure:
    """Small multiples: one :func:`layer_panel`-style panel per labelled view, errors on a shared axis.

    Taught in 09_llm.
    """
    if not views:
        raise ValueError("views must hold at least one labelled layer view")
    n = len(views)
    fig, axes = new_figure(3.4 * n, 3.0, ncols=n, sharey=True)
    axes = [axes] if n == 1 else list(axes)
    for ax, (label, view) in zip(axes, views.items(), strict=True):
        x_mean, err = _vec(view["x_mean"], "x_mean"), _vec(view["channel_error"], "channel_error")
        ax.scatter(x_mean, err, s=3, color=COLORS["err"], alpha=0.5)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("mean |x_j|")
        ax.set_title(f"{label}\noutput error {view['output_error']:.4f}", fontsize=9)
    axes[0].set_ylabel("‖W_j − Ŵ_j‖")
    return fig


def perplexity_vs_bits(
    table: Mapping[str, Mapping[int, float]], reference: float, groups: Sequence[str] = ()
) -> Figure:
    """Perplexity against bits, one line per labelled series (e.g. ``"gptq g32"``), log scale.

    Taught in 09_llm.
    """
    if not table:
        raise ValueError("table must hold at least one series")
    fig, ax = new_figure(7, 3.6)
    for label, series in table.items():
        bits = sorted(series)
        method = label.split()[0]
        ls = "-" if label.endswith("32") else "--"
        ax.plot(bits, [series[b] for b in bits], ls, marker="o", ms=4, label=label, color=_METHOD_COLORS.get(method))
    ax.axhline(reference, color="black", lw=0.8, ls=":", label="reference (released Q4_1)")
    ax.set_yscale("log")
    ax.set_xlabel("bits per weight code")
    ax.set_ylabel("perplexity")
    ax.invert_xaxis()
    ax.legend(fontsize=7, ncols=2)
    return fig
