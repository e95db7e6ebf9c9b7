"""Figures for 03_nonuniform: codebook levels over weight histograms, the image demo, the widget view.

Pure functions: arrays (or ``helpers.nonuniform.codebook_view``'s dict) in, Figure out; nothing
here quantizes. Taught in 03_nonuniform.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from helpers._validate import check_float_tensor
from helpers.plotting import COLORS, new_figure

__all__ = ["levels_over_histograms", "image_grid", "codebook_figure"]


def _hist_with_levels(ax, values: torch.Tensor, levels: torch.Tensor | None, title: str, bins: int = 120) -> None:
    v = values.detach().reshape(-1).float().numpy()
    ax.hist(v, bins=bins, range=(-1.0, 1.0), color=COLORS["x"], alpha=0.75, density=True)
    if levels is not None:
        for lv in levels.detach().float().numpy():
            ax.axvline(float(lv), color=COLORS["grid"], lw=0.9, alpha=0.9)
    ax.set_title(title, fontsize=9)
    ax.set_yticks([])
    ax.set_xlim(-1.05, 1.05)
    ax.tick_params(labelsize=7)


def levels_over_histograms(
    panels: Sequence[tuple[str, torch.Tensor, torch.Tensor | None]],
    ncols: int = 4,
    *,
    width: float = 9.0,
    row_height: float = 1.9,
    log_density: bool = False,
) -> Figure:
    """Small multiples: each panel ``(title, values in [-1, 1], levels)`` is a histogram with the levels as green lines.

    Values are normalised weights (``x / absmax``); ``levels`` may be None (histogram only).
    Taught in 03_nonuniform.
    """
    if not panels:
        raise ValueError("panels must be a non-empty sequence of (title, values, levels)")
    nrows = -(-len(panels) // ncols)
    fig, axes = new_figure(width, row_height * nrows, nrows=nrows, ncols=ncols, squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    for ax, (title, values, levels) in zip(axes.flat, panels):
        check_float_tensor(values, "values")
        _hist_with_levels(ax, values, levels, title)
        if log_density:
            ax.set_yscale("log")
    return fig


def image_grid(
    rows: Sequence[tuple[str, Sequence[np.ndarray]]],
    col_titles: Sequence[str],
    *,
    width: float = 9.0,
    cmaps: Sequence[str] | None = None,
) -> Figure:
    """A grid of grey images: one row per ``(label, images)``, columns titled ``col_titles``.

    Pixel values are shown on a fixed 0..255 scale for images and 0..max for error rows (cmap
    ``"magma"``), so rows compare fairly. Taught in 03_nonuniform.
    """
    if not rows or any(len(imgs) != len(col_titles) for _, imgs in rows):
        raise ValueError("rows must be non-empty and each row must hold one image per column title")
    cmaps = list(cmaps) if cmaps is not None else ["gray"] * len(rows)
    h, w = np.asarray(rows[0][1][0]).shape[:2]
    ncols = len(col_titles)
    fig, axes = new_figure(
        width, width * len(rows) * h / (w * ncols) + 0.5, nrows=len(rows), ncols=ncols, squeeze=False
    )
    for r, ((label, imgs), cmap) in enumerate(zip(rows, cmaps)):
        vmax = 255.0 if cmap == "gray" else max(float(np.max(im)) for im in imgs)
        for c, img in enumerate(imgs):
            ax = axes[r, c]
            ax.imshow(np.asarray(img), cmap=cmap, vmin=0.0, vmax=max(vmax, 1e-9), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(col_titles[c], fontsize=9)
            if c == 0:
                ax.set_ylabel(label, fontsize=9)
    return fig


def codebook_figure(view: Mapping) -> Figure:
    """The widget's picture: normalised ``x`` with the method's levels (left) and the error histogram (right).

    ``view`` is ``helpers.nonuniform.codebook_view(x, method, bits, block_size, name)``; a view
    with a ``message`` (an impossible setting) is drawn as that message. Taught in 03_nonuniform.
    """
    if not isinstance(view, Mapping):
        raise TypeError(f"view must be the dict helpers.nonuniform.codebook_view returns, got {type(view).__name__}")
    if "message" in view:
        return _message_figure(view["message"])
    missing = [k for k in ("normalised", "levels", "err", "mse", "title") if k not in view]
    if missing:
        raise ValueError(f"view must be the dict helpers.nonuniform.codebook_view returns; missing keys {missing}")
    fig, (ax0, ax1) = new_figure(8.5, 3.2, ncols=2)
    _hist_with_levels(ax0, view["normalised"], view["levels"], view["title"])
    e = view["err"].numpy()
    lim = float(np.abs(e).max()) or 1.0
    ax1.hist(e, bins=100, range=(-lim, lim), color=COLORS["err"], alpha=0.8)
    ax1.set_yscale("log")
    ax1.set_title(f"err = x_hat - x   (MSE {view['mse']:.3g})", fontsize=9)
    ax1.tick_params(labelsize=7)
    return fig


def _message_figure(message: str) -> Figure:
    fig, ax = new_figure(8.5, 3.2)
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=11)
    ax.set_axis_off()
    return fig
