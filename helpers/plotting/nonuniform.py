"""Figures for 03_uniform_vs_nonuniform: codebook levels over weight histograms, the image demo, the widget view."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from helpers._validate import check_choice, check_float_tensor
from helpers.nonuniform import METHODS, _block_absmax_normalise, nonuniform_fake_quantize, storage_bits_per_weight
from helpers.plotting import COLORS, new_figure

__all__ = ["levels_over_histograms", "image_grid", "draw_codebook", "METHOD_LABELS"]

METHOD_LABELS = {
    "uniform": "uniform (absmax)",
    "affine": "uniform (affine)",
    "pow2": "power-of-two",
    "kmeans": "k-means",
    "nf": "NormalFloat",
    "fp4": "FP4 e2m1",
}


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
    Taught in 03_uniform_vs_nonuniform.
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
    ``"magma"``), so rows compare fairly. Taught in 03_uniform_vs_nonuniform.
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


def draw_codebook(
    x: torch.Tensor, method: str = "nf", bits: int = 4, block_size: int | None = 64, name: str = "weights"
) -> tuple[Figure, str]:
    """The widget's view: normalised ``x`` with the method's levels (left), the error histogram (right), and a readout.

    Readout: MSE and SQNR of ``x_hat`` against ``x`` and the storage in bits per weight (codes,
    one fp32 absmax per block, and a fitted k-means codebook of fp32 levels).
    Taught in 03_uniform_vs_nonuniform.
    """
    check_float_tensor(x, "x")
    check_choice(method, "method", METHODS)
    if method == "fp4" and bits != 4:
        return _message_figure(f"FP4 e2m1 is a 4-bit format; pick bits = 4 (got {bits})"), "FP4 needs bits = 4"
    res = nonuniform_fake_quantize(x, method, bits, block_size)
    flat = x.detach().reshape(-1).float()
    err = res.x_hat.reshape(-1) - flat
    mse = float((err**2).mean())
    sqnr = 10 * np.log10(float((flat**2).mean()) / max(mse, 1e-30))
    n = flat.numel()
    bs = block_size if block_size is not None else n
    n_codebook = res.levels.numel() if method == "kmeans" else 0
    bpw = storage_bits_per_weight(n, bits, n_codebook=n_codebook, block_size=bs)
    fig, (ax0, ax1) = new_figure(8.5, 3.2, ncols=2)
    if method == "affine":
        normalised = flat / flat.abs().max()
        title = f"{name}: x / absmax (affine grid moves per block)"
        _hist_with_levels(ax0, normalised, None, title)
    else:
        normalised, _ = _block_absmax_normalise(flat, bs)
        title = f"{name}: x / absmax(block) with {METHOD_LABELS[method]} levels"
        _hist_with_levels(ax0, normalised, res.levels, title)
    e = err.numpy()
    lim = float(np.abs(e).max()) or 1.0
    ax1.hist(e, bins=100, range=(-lim, lim), color=COLORS["err"], alpha=0.8)
    ax1.set_yscale("log")
    ax1.set_title(f"err = x_hat - x   (MSE {mse:.3g})", fontsize=9)
    ax1.tick_params(labelsize=7)
    block = "per tensor" if block_size is None else f"block {block_size}"
    text = (
        f"{METHOD_LABELS[method]}, {bits} bits, {block}: MSE {mse:.4g}, SQNR {sqnr:.2f} dB, "
        f"storage {bpw:.3f} bits/weight"
    )
    return fig, text


def _message_figure(message: str) -> Figure:
    fig, ax = new_figure(8.5, 3.2)
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=11)
    ax.set_axis_off()
    return fig
