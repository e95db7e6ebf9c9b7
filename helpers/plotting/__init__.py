"""Pure plotting functions: data in, ``matplotlib.figure.Figure`` out (no global state, no display).

One module per lesson (``float_bits``, ``affine``, ...); this file holds what they share.
Figures are made with ``matplotlib.figure.Figure`` directly (not ``pyplot``), so building one
never opens a window or touches the notebook's current figure; a notebook shows one by leaving
it as the cell's last expression (IPython renders it as PNG).
"""

from __future__ import annotations

import io

from matplotlib.figure import Figure

__all__ = ["new_figure", "fig_to_png", "COLORS"]

#: One colour per concept, used by every lesson's plots.
COLORS = {
    "x": "#4C72B0",  # float input
    "x_hat": "#DD8452",  # dequantized
    "err": "#C44E52",  # error
    "grid": "#55A868",  # quantization levels
    "clip": "#8172B3",  # clipping range
    "sign": "#C44E52",
    "exponent": "#55A868",
    "mantissa": "#4C72B0",
    "fp32": "#4C72B0",
    "quant": "#DD8452",
}


def new_figure(width: float = 7.0, height: float = 3.5, *, nrows: int = 1, ncols: int = 1, **kwargs):
    """A ``(Figure, axes)`` pair of the given size in inches, with constrained layout.

    ``axes`` is a single Axes for a 1×1 grid, otherwise the array ``Figure.subplots`` returns.
    """
    fig = Figure(figsize=(width, height), layout="constrained", dpi=100)
    axes = fig.subplots(nrows, ncols, **kwargs)
    return fig, axes


def fig_to_png(fig: Figure, dpi: int = 100) -> bytes:
    """PNG bytes of ``fig`` (used by widgets and by tests that check a redraw changed the picture)."""
    if not isinstance(fig, Figure):
        raise TypeError(f"fig must be a matplotlib Figure, got {type(fig).__name__}")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()
