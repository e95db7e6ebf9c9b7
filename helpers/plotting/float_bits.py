"""Figures for 01_float_bits: coloured bit boxes, ULP spacing vs magnitude, weights against format ranges.

Pure functions: data in, ``matplotlib.figure.Figure`` out. The data comes from ``helpers.float_bits``
(``float_bits`` records and the ``*_view`` dicts); nothing here rounds or decodes a number.
Taught in 01_float_bits.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from helpers.float_bits import FloatBits
from helpers.plotting import COLORS, new_figure

__all__ = ["draw_bit_boxes", "plot_float_bits", "plot_bit_patterns", "plot_ulp_spacing", "plot_magnitudes_vs_range"]

_FORMAT_COLORS = {
    "fp32": "#4C72B0",
    "fp16": "#DD8452",
    "bf16": "#55A868",
    "fp8_e4m3": "#C44E52",
    "fp8_e5m2": "#8172B3",
}


def _check_view(view: object, keys: tuple[str, ...], maker: str) -> None:
    if not isinstance(view, Mapping):
        raise TypeError(f"view must be the dict {maker} returns, got {type(view).__name__}")
    missing = [k for k in keys if k not in view]
    if missing:
        raise ValueError(f"view must be the dict {maker} returns; missing keys {missing}")


def draw_bit_boxes(ax, rec: FloatBits, *, label: str | None = None, fontsize: float = 11) -> None:
    """Draw the bits of ``rec`` as boxes coloured by field (sign, exponent, mantissa) on ``ax``."""
    if not isinstance(rec, FloatBits):
        raise TypeError(f"rec must be a FloatBits record, got {type(rec).__name__}")
    fields = [("sign", rec.sign), ("exponent", rec.exponent), ("mantissa", rec.mantissa)]
    n = len(rec.bits)
    i = 0
    for field, digits in fields:
        start = i
        for d in digits:
            ax.add_patch(Rectangle((i, 0), 1, 1, facecolor=COLORS[field], alpha=0.85 if d == "1" else 0.25))
            ax.text(i + 0.5, 0.5, d, ha="center", va="center", fontsize=fontsize, family="monospace")
            i += 1
        ax.text((start + i) / 2, -0.25, field, ha="center", va="top", fontsize=max(fontsize - 3, 6))
    ax.set_xlim(-0.2, n + 0.2)
    ax.set_ylim(-0.8, 1.4)
    ax.set_aspect("auto")
    ax.axis("off")
    if label is not None:
        ax.text(0, 1.15, label, ha="left", va="bottom", fontsize=max(fontsize - 1, 6))


def plot_float_bits(view: Mapping) -> Figure:
    """Bit boxes of ``view["rec"]`` above a number line, from ``helpers.float_bits.float_bits_view``.

    The number line marks the typed value (x), the stored value (x_hat) and its two representable
    neighbours. Used by ``helpers.widgets.float_bits``. Taught in 01_float_bits.
    """
    _check_view(
        view, ("rec", "x", "neighbours", "title", "x_label", "x_hat_label"), "helpers.float_bits.float_bits_view"
    )
    rec, value = view["rec"], view["x"]
    fig, (ax_bits, ax_line) = new_figure(8.5, 3.2, nrows=2, gridspec_kw={"height_ratios": [1.3, 1]})
    draw_bit_boxes(ax_bits, rec, label=view["title"], fontsize=11 if len(rec.bits) <= 16 else 9)
    nb = view["neighbours"]
    if nb is None:
        ax_line.axis("off")
        ax_line.text(0.5, 0.5, f"{rec.kind}: no number line", ha="center", va="center", transform=ax_line.transAxes)
    else:
        lo, hi, outer_exists = nb
        ax_line.axhline(0, color="0.6", lw=1)
        ticks = [lo, rec.value, hi]
        if not outer_exists:  # at +-max: the outer neighbour would overflow
            ticks = [rec.value, hi] if rec.sign == "1" else [lo, rec.value]
        for v in ticks:
            ax_line.plot([v], [0], "|", ms=18, color=COLORS["grid"], mew=2)
        ax_line.plot([rec.value], [0], "o", color=COLORS["x_hat"], ms=8, label=f"x_hat = {view['x_hat_label']}")
        if lo - (hi - lo) <= value <= hi + (hi - lo):
            ax_line.plot([value], [0], "x", color=COLORS["x"], ms=10, mew=2, label=f"x = {view['x_label']}")
        ax_line.set_xlim(lo - 0.25 * (hi - lo), hi + 0.25 * (hi - lo))
        ax_line.set_yticks([])
        ax_line.ticklabel_format(axis="x", useOffset=False, style="plain")
        ax_line.legend(loc="upper right", fontsize=8, ncols=2, frameon=False)
        ax_line.set_title("neighbouring representable values", fontsize=9)
    return fig


def plot_bit_patterns(records: list[FloatBits], *, width: float = 8.5) -> Figure:
    """One row of coloured bit boxes per record, labelled with its decoding (static small multiples)."""
    if not isinstance(records, (list, tuple)) or not records:
        raise ValueError("records must be a non-empty list of FloatBits")
    for i, rec in enumerate(records):
        if not isinstance(rec, FloatBits):
            raise TypeError(f"records[{i}] must be a FloatBits record, got {type(rec).__name__}")
    fig, axes = new_figure(width, 0.75 * len(records) + 0.2, nrows=len(records), squeeze=False)
    longest = max(len(r.bits) for r in records)
    for ax, rec in zip(axes[:, 0], records):
        draw_bit_boxes(ax, rec, label=f"{rec.fmt}: {rec.decoding}", fontsize=9)
        ax.set_xlim(-0.2, longest + 0.2)
    return fig


def plot_ulp_spacing(view: Mapping) -> Figure:
    """ULP (gap to the next value) vs magnitude ``|x|`` on log axes for each format, from ``helpers.float_bits.ulp_view``.

    Left: absolute spacing ``ulp(x)`` (a staircase: constant within a binade ``[2^k, 2^(k+1))``,
    doubling at each power of two, flat in the subnormal range). Right: relative spacing
    ``ulp(x) / |x|``, a sawtooth between ``eps`` and ``eps/2`` for normals that rises in the
    subnormal range. Each curve stops at the format's max (fp32 and bf16 run past the window).
    """
    _check_view(view, ("xlim", "curves"), "helpers.float_bits.ulp_view")
    fig, (ax_abs, ax_rel) = new_figure(9, 3.4, ncols=2)
    for f, (xd, u) in view["curves"].items():
        ax_abs.plot(xd, u, color=_FORMAT_COLORS.get(f), label=f, lw=1.5)
        ax_rel.plot(xd, u / xd, color=_FORMAT_COLORS.get(f), label=f, lw=1.2)
    for ax in (ax_abs, ax_rel):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(*view["xlim"])
        ax.set_xlabel("|x|")
        ax.grid(True, which="major", alpha=0.3)
    ax_abs.set_ylabel("ulp(x): gap to next value")
    ax_rel.set_ylabel("ulp(x) / |x|")
    ax_abs.set_title("absolute spacing", fontsize=10)
    ax_rel.set_title("relative spacing (precision)", fontsize=10)
    ax_abs.legend(fontsize=8, loc="upper left")
    return fig


_LIMIT_STYLES = ((":", "smallest subnormal"), ("--", "smallest normal"), ("-", "max"))


def plot_magnitudes_vs_range(view: Mapping, *, title: str = "") -> Figure:
    """Histogram of ``log10|x|`` with each format's smallest subnormal, smallest normal and max, one row per format.

    ``view`` is ``helpers.float_bits.magnitudes_view(x, fmts)``. Shows at a glance which values of a
    real tensor (e.g. a model's weights) would underflow to zero, become subnormal, or overflow.
    """
    _check_view(view, ("edges", "counts", "lo", "hi", "limits"), "helpers.float_bits.magnitudes_view")
    limits = view["limits"]
    lo, hi = view["lo"], view["hi"]
    fig, axes = new_figure(9, 0.65 * len(limits) + 0.8, nrows=len(limits), sharex=True, squeeze=False)
    for ax, (f, lim) in zip(axes[:, 0], limits.items()):
        ax.stairs(view["counts"], view["edges"], fill=True, color=COLORS["x"], alpha=0.6)
        for style, name in _LIMIT_STYLES:
            v = math.log10(lim[name])
            if lo <= v <= hi:
                ax.axvline(v, color=COLORS["err"], ls=style, lw=1.3, label=name)
        ax.set_ylabel(f, rotation=0, ha="right", va="center", fontsize=9)
        ax.set_yticks([])
        ax.set_xlim(lo, hi)
    handles = [Line2D([], [], color=COLORS["err"], ls=style, label=name) for style, name in _LIMIT_STYLES]
    axes[0, 0].legend(handles=handles, fontsize=7, loc="upper left", ncols=3, frameon=False)
    axes[-1, 0].set_xlabel("log10 |x|")
    if title:
        axes[0, 0].set_title(title, fontsize=10)
    return fig
