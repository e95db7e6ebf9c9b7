"""Pictures for 10_block_formats: byte layouts, error histograms, block-size sweeps, KV-cache channels.

Arrays in, ``Figure`` out: nothing here quantizes or runs a model (``helpers.block_formats`` does).
Taught in 10_block_formats.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from helpers.plotting import COLORS, new_figure

__all__ = [
    "FIELD_COLORS",
    "plot_block_bytes",
    "plot_error_view",
    "plot_error_grid",
    "plot_block_sweep",
    "plot_kv_channels",
    "plot_kv_perplexity",
]

#: One colour per kind of byte field: scales, minimums, packed scales, element codes.
FIELD_COLORS = ("#C44E52", "#8172B3", "#DD8452", "#4C72B0")


def _field_color(name: str, index: int, count: int) -> str:
    if index == count - 1:
        return FIELD_COLORS[3]  # the element codes always come last
    if "min" in name or name.startswith("fp16 m"):
        return FIELD_COLORS[1]
    if "6-bit" in name:
        return FIELD_COLORS[2]
    return FIELD_COLORS[0]


def plot_block_bytes(units: Mapping[str, tuple[np.ndarray, Sequence[tuple[str, int]]]], per_line: int = 36) -> Figure:
    """One panel per format: the bytes of one storage unit as hex boxes, coloured by field.

    ``units`` maps a title to ``(bytes, fields)``: a 1-d ``uint8`` array and the layout's
    ``[(field name, byte count), ...]`` in file order (their counts must add up to the bytes).
    Taught in 10_block_formats.
    """
    if not isinstance(units, Mapping) or not units:
        raise ValueError("units must be a non-empty mapping title -> (bytes, fields)")
    rows = []
    for title, (data, fields) in units.items():
        data = np.asarray(data)
        if data.dtype != np.uint8 or data.ndim != 1:
            raise TypeError(f"units[{title!r}] bytes must be a 1-d uint8 array")
        if sum(n for _, n in fields) != data.size:
            raise ValueError(
                f"units[{title!r}]: the fields add up to {sum(n for _, n in fields)} bytes, not {data.size}"
            )
        rows.append((title, data, list(fields), -(-data.size // per_line)))
    lines = sum(r[3] + 1.2 for r in rows)
    fig = Figure(figsize=(10.5, 0.32 * lines + 0.3), layout="constrained", dpi=100)
    ax = fig.add_subplot()
    y = 0.0
    for title, data, fields, nlines in rows:
        ax.text(0, y + 0.15, f"{title}: {data.size} bytes", fontsize=9, fontweight="bold", va="bottom")
        y -= 0.05
        start = 0
        for k, (name, n) in enumerate(fields):
            color = _field_color(name, k, len(fields))
            for i in range(start, start + n):
                col, line = i % per_line, i // per_line
                ax.add_patch(Rectangle((col, y - line - 1), 0.95, 0.9, facecolor=color, alpha=0.8, linewidth=0))
                ax.text(
                    col + 0.47,
                    y - line - 0.55,
                    f"{data[i]:02x}",
                    ha="center",
                    va="center",
                    fontsize=6.5,
                    color="white",
                    family="monospace",
                )
            start += n
        legend_x = 0.0
        for k, (name, n) in enumerate(fields):
            label = f"■ {name} ({n} B)"
            ax.text(
                legend_x, y - nlines - 0.25, label, color=_field_color(name, k, len(fields)), fontsize=7.5, va="top"
            )
            legend_x += 0.6 + 0.2 * len(label)
        y -= nlines + 1.2
    ax.set_xlim(-0.2, per_line + 0.2)
    ax.set_ylim(y + 0.2, 0.9)
    ax.axis("off")
    return fig


def _message_figure(message: str, title: str = "") -> Figure:
    fig, ax = new_figure(7.0, 2.2)
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True, fontsize=11)
    ax.set_title(title)
    ax.axis("off")
    return fig


def _hist(ax, view: Mapping, title: str) -> None:
    err = view["err"].detach().float().numpy() if isinstance(view["err"], torch.Tensor) else np.asarray(view["err"])
    x = view["x"].detach().float().numpy() if isinstance(view["x"], torch.Tensor) else np.asarray(view["x"])
    scale = float(np.abs(x).max()) or 1.0
    lim = max(float(np.abs(err).max()), 1e-30)
    ax.hist(err, bins=np.linspace(-lim, lim, 81), color=COLORS["err"], alpha=0.85, log=True)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("err = x_hat - x")
    ax.text(
        0.02,
        0.97,
        f"{view['bits_per_weight']:.4g} bits/weight\nSQNR {view['sqnr_db']:.1f} dB\nmax|err|/max|x| {lim / scale:.3f}",
        transform=ax.transAxes,
        va="top",
        fontsize=8,
    )


def plot_error_view(view: Mapping, title: str = "") -> Figure:
    """Histogram of one weight's quantization error (log counts) from ``helpers.block_formats.error_view``.

    A view that could not be computed (``err`` is ``None``) draws its ``message`` instead.
    Taught in 10_block_formats.
    """
    if not isinstance(view, Mapping) or "err" not in view:
        raise TypeError("view must be the dict error_view returns")
    if view["err"] is None:
        return _message_figure(view.get("message") or "nothing to draw", title)
    fig, ax = new_figure(7.0, 3.0)
    _hist(ax, view, title + (f"\n{view['message']}" if view.get("message") else ""))
    ax.set_ylabel("count (log)")
    return fig


def plot_error_grid(views: Mapping[str, Mapping], ncols: int = 4) -> Figure:
    """Small multiples of :func:`plot_error_view`: one error histogram per ``title -> view``.

    Taught in 10_block_formats.
    """
    if not isinstance(views, Mapping) or not views:
        raise ValueError("views must be a non-empty mapping title -> error_view dict")
    n = len(views)
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig, axes = new_figure(2.6 * ncols, 2.3 * nrows, nrows=nrows, ncols=ncols, squeeze=False, sharey=True)
    for ax, (title, view) in zip(axes.flat, views.items()):
        if view["err"] is None:
            ax.text(0.5, 0.5, view["message"], ha="center", va="center", fontsize=8, wrap=True)
            ax.set_title(title, fontsize=9)
            ax.axis("off")
        else:
            _hist(ax, view, title)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    return fig


def plot_block_sweep(results: Mapping[str, Mapping[int, tuple[float, float]]], title: str = "") -> Figure:
    """MSE against bits per weight for each format as its block size changes (log-log).

    ``results[fmt][block] = (bits_per_weight, mse)``; each point is labelled with its block size.
    Taught in 10_block_formats.
    """
    if not isinstance(results, Mapping) or not results:
        raise ValueError("results must be a non-empty mapping fmt -> {block: (bits_per_weight, mse)}")
    fig, ax = new_figure(7.0, 3.6)
    for fmt, points in results.items():
        if not points:
            raise ValueError(f"results[{fmt!r}] is empty")
        blocks = sorted(points)
        bpw = [points[b][0] for b in blocks]
        err = [points[b][1] for b in blocks]
        (line,) = ax.plot(bpw, err, "o-", label=fmt)
        for b, xb, yb in zip(blocks, bpw, err):
            ax.annotate(str(b), (xb, yb), textcoords="offset points", xytext=(3, 3), fontsize=7, color=line.get_color())
    ax.set_yscale("log")
    ax.set_xlabel("bits per weight (element + scale)")
    ax.set_ylabel("MSE")
    ax.set_title(title or "smaller blocks: more bits for scales, less error")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def plot_kv_channels(keys: torch.Tensor, values: torch.Tensor, title: str = "") -> Figure:
    """Per-channel max |.| of cached keys and values (one attention head): keys have outlier channels.

    ``keys``/``values`` are ``(tokens, head_dim)``. Taught in 10_block_formats.
    """
    for name, t in (("keys", keys), ("values", values)):
        if not isinstance(t, torch.Tensor) or t.ndim != 2:
            raise TypeError(f"{name} must be a 2-d tensor (tokens, head_dim)")
    fig, axes = new_figure(9.0, 3.0, ncols=2)
    for ax, name, t, color in (
        (axes[0], "keys (after RoPE)", keys, COLORS["x"]),
        (axes[1], "values", values, COLORS["x_hat"]),
    ):
        a = t.detach().double().abs()
        ax.bar(np.arange(a.shape[1]), a.amax(0).numpy(), color=color, width=1.0)
        ax.plot(np.arange(a.shape[1]), a.median(0).values.numpy(), "k.", ms=2, label="median |.| per channel")
        ax.set_title(f"{title} {name}".strip(), fontsize=9)
        ax.set_xlabel("channel (head_dim)")
        ax.legend(fontsize=7)
    axes[0].set_ylabel("max |.| over tokens")
    return fig


def plot_kv_perplexity(bits: Sequence[int], curves: Mapping[str, Sequence[float]], reference: float) -> Figure:
    """Perplexity against cache bits for each quantization axis, with the full-precision line.

    Taught in 10_block_formats.
    """
    if not isinstance(curves, Mapping) or not curves:
        raise ValueError("curves must be a non-empty mapping label -> perplexities")
    fig, ax = new_figure(7.0, 3.4)
    for label, ppl in curves.items():
        if len(ppl) != len(bits):
            raise ValueError(f"curves[{label!r}] has {len(ppl)} values for {len(bits)} bit widths")
        ax.plot(list(bits), list(ppl), "o-", label=label)
    ax.axhline(reference, color="gray", ls="--", lw=1, label="full-precision cache")
    ax.set_yscale("log")
    ax.set_xticks(list(bits))
    ax.set_xlabel("bits per cached value")
    ax.set_ylabel("perplexity (log)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig
