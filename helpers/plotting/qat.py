"""Figures for 06_qat: the STE staircase with its gradient mask, PTQ vs QAT accuracy, training curves.

Pure functions: data in, ``matplotlib.figure.Figure`` out. Taught in 06_qat.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from helpers._validate import check_bits, check_finite_number
from helpers.plotting import COLORS, new_figure

__all__ = ["ste_figure", "ste_grid_figure", "accuracy_vs_bits", "accuracy_curves"]

_X_LIM = 2.0


def _plot_ste(ax_fwd, ax_bwd, c: dict, title: str | None = None) -> None:
    x, x_hat, mask = c["x"].numpy(), c["x_hat"].numpy(), c["mask"].numpy()
    ax_fwd.plot(x, x, color=COLORS["x"], lw=1, ls="--", label="x (identity)")
    ax_fwd.plot(x, x_hat, color=COLORS["x_hat"], lw=1.8, label="x_hat = fake_quant(x)")
    lo = (c["qmin"] - c["zero_point"]) * c["scale"]
    hi = (c["qmax"] - c["zero_point"]) * c["scale"]
    for ax in (ax_fwd, ax_bwd):
        ax.axvspan(lo - c["scale"] / 2, hi + c["scale"] / 2, color=COLORS["clip"], alpha=0.08, lw=0)
        ax.set_xlim(-_X_LIM, _X_LIM)
    ax_fwd.set_ylabel("forward")
    ax_fwd.set_ylim(-_X_LIM, _X_LIM)
    ax_bwd.fill_between(x, 0, mask, step="mid", color=COLORS["grid"], alpha=0.5)
    ax_bwd.plot(x, mask, color=COLORS["grid"], lw=1.5, label="STE: dx_hat/dx")
    ax_bwd.plot(x, 0 * x, color=COLORS["err"], lw=1, ls=":", label="true d round / dx (0 a.e.)")
    ax_bwd.set_ylim(-0.15, 1.25)
    ax_bwd.set_yticks([0, 1])
    ax_bwd.set_ylabel("backward")
    ax_bwd.set_xlabel("x")
    if title:
        ax_fwd.set_title(title, fontsize=10)


def ste_figure(view: Mapping[str, object]) -> Figure:
    """Forward staircase above the backward STE mask of one ``helpers.qat.ste_view``. Taught in 06_qat."""
    fig, (ax_fwd, ax_bwd) = new_figure(7.5, 4.2, nrows=2, sharex=True, height_ratios=[2, 1])
    _plot_ste(ax_fwd, ax_bwd, view, title=f"{view['bits']}-bit grid clipped to [-{view['clip']:g}, {view['clip']:g}]")
    ax_fwd.legend(loc="upper left", fontsize=8)
    ax_bwd.legend(loc="upper left", fontsize=8)
    return fig


def ste_grid_figure(views: Sequence[Sequence[Mapping[str, object]]]) -> Figure:
    """Small multiples of STE views (``helpers.qat.ste_grid_view``): one column per bit width, a forward and a backward row per clip.

    Taught in 06_qat.
    """
    if not views or not views[0]:
        raise ValueError("views must be a non-empty grid (one list of views per bit width)")
    ncols, nclips = len(views), len(views[0])
    fig, axes = new_figure(2.6 * ncols, 2.2 * nclips, nrows=2 * nclips, ncols=ncols, sharex=True, squeeze=False)
    for j, column in enumerate(views):
        for i, v in enumerate(column):
            _plot_ste(axes[2 * i, j], axes[2 * i + 1, j], v, title=f"{v['bits']} bits, clip {v['clip']:g}")
    return fig


def accuracy_vs_bits(
    bits: Sequence[int],
    results: Mapping[str, Sequence[float]],
    fp32: float,
) -> Figure:
    """Test accuracy vs bit width, one line per method (e.g. PTQ, QAT), fp32 as a horizontal line.

    Taught in 06_qat.
    """
    bits = [check_bits(b) for b in bits]
    fp32 = check_finite_number(fp32, "fp32")
    if not results:
        raise ValueError("results must hold at least one method -> accuracies")
    palette = [COLORS["quant"], COLORS["grid"], COLORS["clip"], COLORS["err"]]
    fig, ax = new_figure(7.0, 3.4)
    ax.axhline(fp32, color=COLORS["fp32"], ls="--", lw=1.2, label=f"fp32 {fp32:.2f}%")
    pos = list(range(len(bits)))  # evenly spaced, in the order given (e.g. 8, 4, 3, 2)
    for k, (name, accs) in enumerate(results.items()):
        if len(accs) != len(bits):
            raise ValueError(f"results[{name!r}] must have {len(bits)} accuracies (one per bit width), got {len(accs)}")
        ax.plot(pos, accs, "o-", color=palette[k % len(palette)], label=name)
        offset = (0, 7) if k % 2 else (0, -14)
        for p, a in zip(pos, accs):
            ax.annotate(
                f"{a:.1f}",
                (p, a),
                textcoords="offset points",
                xytext=offset,
                ha="center",
                fontsize=8,
                color=palette[k % len(palette)],
            )
    ax.set_xticks(pos, [str(b) for b in bits])
    ax.set_xlim(-0.3, len(bits) - 0.7)
    lo = min(min(a) for a in results.values())
    ax.set_ylim(lo - 6, 103.5)
    ax.set_yticks([t for t in ax.get_yticks() if t <= 100])
    ax.set_xlabel("bits (weights and activations)")
    ax.set_ylabel("test accuracy (%)")
    ax.legend(loc="lower left", fontsize=9)
    ax.grid(alpha=0.3)
    return fig


def accuracy_curves(
    panels: Mapping[str, Mapping[str, Sequence[float]]],
    fp32: float | None = None,
) -> Figure:
    """Accuracy per epoch: one panel per entry of ``panels`` (title -> {label: accuracies}).

    Curves are plotted against epoch 1..N; a curve whose label ends in ``"(epoch 0 = PTQ)"`` starts
    at epoch 0. ``fp32`` draws the reference line in every panel. Taught in 06_qat.
    """
    if not panels:
        raise ValueError("panels must hold at least one title -> curves mapping")
    palette = [COLORS["fp32"], COLORS["quant"], COLORS["grid"], COLORS["clip"], COLORS["err"]]
    fig, axes = new_figure(4.2 * len(panels), 3.4, ncols=len(panels), squeeze=False)
    for ax, (title, curves) in zip(axes[0], panels.items()):
        for k, (label, accs) in enumerate(curves.items()):
            start = 0 if label.endswith("(epoch 0 = PTQ)") else 1
            ax.plot(
                range(start, start + len(accs)), list(accs), "o-", ms=3, color=palette[k % len(palette)], label=label
            )
        if fp32 is not None:
            ax.axhline(check_finite_number(fp32, "fp32"), color="gray", ls="--", lw=1, label="fp32 checkpoint")
        ax.set_title(title, fontsize=10)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    return fig
