"""Figures for 01_float_bits: coloured bit boxes, ULP spacing vs magnitude, weights against format ranges.

Pure functions: data in, ``matplotlib.figure.Figure`` out. Taught in 01_float_bits.
"""

from __future__ import annotations

import math

import torch
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from helpers._validate import check_choice, check_float_tensor
from helpers.formats import FORMATS, FloatBits, decode, float_bits, format_info, ulp, value_from_bits
from helpers.plotting import COLORS, new_figure

__all__ = ["draw_bit_boxes", "draw_float_bits", "plot_bit_patterns", "plot_ulp_spacing", "plot_magnitudes_vs_range"]

_FORMAT_COLORS = {
    "fp32": "#4C72B0",
    "fp16": "#DD8452",
    "bf16": "#55A868",
    "fp8_e4m3": "#C44E52",
    "fp8_e5m2": "#8172B3",
}


def _fmt_number(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "-inf" if v < 0 else "inf"
    return f"{v:.10g}"


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


def _describe(rec: FloatBits) -> str:
    info = format_info(rec.fmt)
    s = "-" if rec.sign == "1" else "+"
    if rec.kind == "normal":
        frac = int(rec.mantissa, 2)
        return f"{s}(1 + {frac}/2^{info.man_bits}) x 2^({rec.biased_exponent} - {info.bias}) = {_fmt_number(rec.value)}"
    if rec.kind == "subnormal":
        frac = int(rec.mantissa, 2)
        return f"{s}({frac}/2^{info.man_bits}) x 2^({info.emin}) = {_fmt_number(rec.value)}  (subnormal)"
    if rec.kind == "zero":
        return f"{s}0 (zero)"
    return f"{s}inf" if rec.kind == "inf" else "NaN"


def _neighbours(rec: FloatBits) -> tuple[float, float, bool] | None:
    """``(lower, upper, upper_exists)``: the representable values just below and above ``rec.value``.

    None for inf/NaN. At ±max the missing outer neighbour is replaced by one more gap (``upper_exists``
    or, for negative values, the lower one is then not a real value and is drawn without a tick).
    """
    if not math.isfinite(rec.value):
        return None
    info = format_info(rec.fmt)
    mag = rec.code & (2 ** (info.bits - 1) - 1)
    smaller = float(decode(torch.tensor([mag - 1]), rec.fmt)[0]) if mag > 0 else -info.smallest_subnormal
    larger = float(decode(torch.tensor([mag + 1]), rec.fmt)[0])
    exists = math.isfinite(larger)
    if not exists:
        larger = abs(rec.value) + (abs(rec.value) - smaller)
    if rec.sign == "0":
        return smaller, larger, exists
    return -larger, -smaller, exists


def draw_float_bits(value: float, fmt: str, bits: str = "") -> tuple[Figure, str]:
    """Bit boxes of ``value`` in ``fmt`` (or of the pattern ``bits`` when it has the format's length), a number line, a readout.

    The number line marks the typed ``value`` (x), the stored value (x_hat) and its two
    representable neighbours; the readout gives the decoding and ``err = x_hat - x``.
    Used by ``helpers.widgets.float_bits``. Taught in 01_float_bits.
    """
    check_choice(fmt, "fmt", FORMATS)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"value must be a real number, got {type(value).__name__}")
    if not isinstance(bits, str):
        raise TypeError(f"bits must be a str of '0'/'1', got {type(bits).__name__}")
    info = format_info(fmt)
    typed = float_bits(value, fmt)
    digits = bits.replace(" ", "").replace("_", "")
    note = ""
    if digits and len(digits) == info.bits and not set(digits) - {"0", "1"}:
        rec = value_from_bits(digits, fmt)
        if rec.code != typed.code:
            note = "  (bits flipped by hand)"
    else:
        rec = typed
        if digits:
            note = f"  (ignored bits {bits!r}: need {info.bits} binary digits)"
    err = rec.value - value if math.isfinite(rec.value) and math.isfinite(value) else math.nan
    rel = abs(err) / abs(value) if value != 0 and math.isfinite(err) else math.nan

    fig, (ax_bits, ax_line) = new_figure(8.5, 3.2, nrows=2, gridspec_kw={"height_ratios": [1.3, 1]})
    draw_bit_boxes(ax_bits, rec, label=f"{fmt}: {_describe(rec)}", fontsize=11 if info.bits <= 16 else 9)
    nb = _neighbours(rec)
    if nb is None or not math.isfinite(value):
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
        ax_line.plot([rec.value], [0], "o", color=COLORS["x_hat"], ms=8, label=f"x_hat = {_fmt_number(rec.value)}")
        if lo - (hi - lo) <= value <= hi + (hi - lo):
            ax_line.plot([value], [0], "x", color=COLORS["x"], ms=10, mew=2, label=f"x = {_fmt_number(value)}")
        ax_line.set_xlim(lo - 0.25 * (hi - lo), hi + 0.25 * (hi - lo))
        ax_line.set_yticks([])
        ax_line.ticklabel_format(axis="x", useOffset=False, style="plain")
        ax_line.legend(loc="upper right", fontsize=8, ncols=2, frameon=False)
        ax_line.set_title("neighbouring representable values", fontsize=9)
    readout = (
        f"{fmt} bits: {rec.sign} {rec.exponent} {rec.mantissa}  ({rec.kind}){note}\n"
        f"x = {_fmt_number(value)}   x_hat = {_fmt_number(rec.value)}   "
        f"err = x_hat - x = {_fmt_number(err)}   |err|/|x| = {rel:.3g}"
    )
    return fig, readout


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
        draw_bit_boxes(ax, rec, label=f"{rec.fmt}: {_describe(rec)}", fontsize=9)
        ax.set_xlim(-0.2, longest + 0.2)
    return fig


def plot_ulp_spacing(
    fmts: tuple[str, ...] | list[str] = FORMATS,
    xlim: tuple[float, float] = (1e-9, 1e6),
    points: int = 1500,
) -> Figure:
    """ULP (gap to the next value) vs magnitude ``|x|`` on log axes for each format, over ``xlim``.

    Left: absolute spacing ``ulp(x)`` (a staircase: constant within a binade ``[2^k, 2^(k+1))``,
    doubling at each power of two, flat in the subnormal range). Right: relative spacing
    ``ulp(x) / |x|``, a sawtooth between ``eps`` and ``eps/2`` for normals that rises in the
    subnormal range. Each curve stops at the format's max (fp32 and bf16 run past the window).
    """
    if isinstance(fmts, str) or not fmts:
        raise ValueError("fmts must be a non-empty list of format names")
    for f in fmts:
        check_choice(f, "fmts", FORMATS)
    if not (isinstance(xlim, (tuple, list)) and len(xlim) == 2 and 0 < xlim[0] < xlim[1]):
        raise ValueError(f"xlim must be a pair (lo, hi) with 0 < lo < hi, got {xlim!r}")
    fig, (ax_abs, ax_rel) = new_figure(9, 3.4, ncols=2)
    grid = torch.logspace(math.log10(xlim[0]), math.log10(xlim[1]), points, dtype=torch.float64)
    for f in fmts:
        info = format_info(f)
        x = grid[(grid >= info.smallest_subnormal) & (grid <= info.max)].to(torch.float32)
        u = ulp(x, f)
        xd = x.to(torch.float64)
        ax_abs.plot(xd, u, color=_FORMAT_COLORS[f], label=f, lw=1.5)
        ax_rel.plot(xd, u / xd, color=_FORMAT_COLORS[f], label=f, lw=1.2)
    for ax in (ax_abs, ax_rel):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(*xlim)
        ax.set_xlabel("|x|")
        ax.grid(True, which="major", alpha=0.3)
    ax_abs.set_ylabel("ulp(x): gap to next value")
    ax_rel.set_ylabel("ulp(x) / |x|")
    ax_abs.set_title("absolute spacing", fontsize=10)
    ax_rel.set_title("relative spacing (precision)", fontsize=10)
    ax_abs.legend(fontsize=8, loc="upper left")
    return fig


def plot_magnitudes_vs_range(
    x: torch.Tensor, fmts: tuple[str, ...] | list[str] = FORMATS, *, title: str = ""
) -> Figure:
    """Histogram of ``log10|x|`` (nonzero entries) with each format's smallest subnormal, smallest normal and max.

    Shows at a glance which values of a real tensor (e.g. a model's weights) would underflow to
    zero, become subnormal, or overflow in each format.
    """
    check_float_tensor(x, "x")
    if isinstance(fmts, str) or not fmts:
        raise ValueError("fmts must be a non-empty list of format names")
    for f in fmts:
        check_choice(f, "fmts", FORMATS)
    a = x.detach().abs().flatten().to(torch.float64)
    a = a[a > 0]
    fig, axes = new_figure(9, 0.65 * len(fmts) + 0.8, nrows=len(fmts), sharex=True, squeeze=False)
    logs = torch.log10(a)
    lo = min(float(logs.min()), math.log10(min(format_info(f).smallest_subnormal for f in fmts if f != "fp32")))
    lo = max(lo, float(logs.min()) - 2)
    hi = max(float(logs.max()), math.log10(min(format_info(f).max for f in fmts))) + 0.5
    bins = torch.linspace(lo, hi, 80)
    counts = torch.histc(logs, bins=79, min=lo, max=hi)
    for ax, f in zip(axes[:, 0], fmts):
        info = format_info(f)
        ax.stairs(counts, bins, fill=True, color=COLORS["x"], alpha=0.6)
        for v, style, name in (
            (info.smallest_subnormal, ":", "smallest subnormal"),
            (info.smallest_normal, "--", "smallest normal"),
            (info.max, "-", "max"),
        ):
            if lo <= math.log10(v) <= hi:
                ax.axvline(math.log10(v), color=COLORS["err"], ls=style, lw=1.3, label=name)
        ax.set_ylabel(f, rotation=0, ha="right", va="center", fontsize=9)
        ax.set_yticks([])
        ax.set_xlim(lo, hi)
    handles = [
        Line2D([], [], color=COLORS["err"], ls=style, label=name)
        for style, name in ((":", "smallest subnormal"), ("--", "smallest normal"), ("-", "max"))
    ]
    axes[0, 0].legend(handles=handles, fontsize=7, loc="upper left", ncols=3, frameon=False)
    axes[-1, 0].set_xlabel("log10 |x|")
    if title:
        axes[0, 0].set_title(title, fontsize=10)
    return fig
