"""Plots of the capstone (08_recipes): quality vs size with the Pareto front.

Pure functions: result rows in, ``matplotlib.figure.Figure`` out. Taught in 08_recipes.
"""

from __future__ import annotations

from collections.abc import Sequence

from matplotlib.ticker import FuncFormatter

from helpers.plotting import COLORS, new_figure
from helpers.recipes import Result


def plot_pareto(
    results: Sequence[Result],
    front: Sequence[Result],
    *,
    quality_name: str,
    title: str = "",
    highlight: Result | None = None,
    ax=None,
):
    """Scatter of quality vs size (MB, log scale) with the Pareto ``front`` drawn; ``highlight`` is ringed.

    ``front`` is ``helpers.recipes.pareto_front(results)`` (computed by the caller: this module only
    draws). Pass ``ax`` to draw into an existing Axes (small multiples); otherwise a new Figure is
    made. Returns the Figure. Taught in 08_recipes.
    """
    if not results:
        raise ValueError("results must be a non-empty list of Result rows")
    fig = None
    if ax is None:
        fig, ax = new_figure(7.5, 4.0)
    front = list(front)
    on_front = {(r.model, r.method) for r in front}
    for i, r in enumerate(results, start=1):
        colour = COLORS["quant"] if (r.model, r.method) in on_front else COLORS["x"]
        marker = "*" if r.method == "fp32" or r.fp32 else "o"
        x = r.size_bytes / 1e6
        ax.scatter(
            x, r.quality, s=90 if marker == "*" else 40, color=colour, marker=marker, zorder=3, label=f"{i}. {r.method}"
        )
        ax.annotate(str(i), (x, r.quality), textcoords="offset points", xytext=(4, 3), fontsize=8)
    ax.plot([r.size_bytes / 1e6 for r in front], [r.quality for r in front], color=COLORS["quant"], lw=1.2, zorder=2)
    if highlight is not None:
        ax.scatter(
            highlight.size_bytes / 1e6,
            highlight.quality,
            s=320,
            facecolors="none",
            edgecolors=COLORS["err"],
            linewidths=2,
            zorder=4,
        )
    ax.set_xscale("log")
    plain = FuncFormatter(lambda v, _pos: f"{v:g}")
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_formatter(plain)
    ax.tick_params(axis="x", which="minor", labelsize=7)
    ax.set_xlabel("size (MB, log scale)")
    ax.set_ylabel(quality_name)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    # Numbers on the points, names in the legend beside the axes: labels never overlap.
    ax.legend(
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize=7,
        frameon=False,
        handletextpad=0.2,
        title="orange: Pareto front" + ("\nred ring: pick" if highlight is not None else ""),
        title_fontsize=7,
    )
    return fig if fig is not None else ax.figure
