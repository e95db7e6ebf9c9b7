"""Widget for 10_block_formats: a format, a block size and a real layer -> error histogram and bits per weight.

Taught in 10_block_formats.
"""

from __future__ import annotations

from collections.abc import Mapping

import ipywidgets as widgets
import torch

from helpers._validate import check_choice, check_float_tensor
from helpers.block_formats import BLOCK_SIZES, FORMATS, error_view
from helpers.plotting.block_formats import plot_error_view
from helpers.widgets import panel

__all__ = ["format_widget", "readout"]


def readout(view: Mapping, fmt: str, layer: str) -> str:
    """The panel's text: bits per weight, MSE and SQNR, or why the format cannot hold the layer.

    Taught in 10_block_formats.
    """
    if view["err"] is None:
        return f"{layer} in {fmt}: {view['message']}"
    note = f"\n{view['message']}" if view["message"] else ""
    return (
        f"{layer} in {fmt}, {view['block']} values per scale: {view['bits_per_weight']:.4g} bits/weight, "
        f"MSE {view['mse']:.3e}, SQNR {view['sqnr_db']:.2f} dB{note}"
    )


def format_widget(layers: Mapping[str, torch.Tensor], fmt: str = "mxfp4", block: int = 32) -> widgets.VBox:
    """Dropdowns for the format and the layer, a slider for the block size, over real weight matrices.

    ``layers`` maps a name to a 2-d weight. The block size runs over ``BLOCK_SIZES`` (Q4_K keeps
    its own and says so). Taught in 10_block_formats.
    """
    if not isinstance(layers, Mapping) or not layers:
        raise ValueError("layers must be a non-empty mapping name -> weight tensor")
    for name, w in layers.items():
        check_float_tensor(w, f"layers[{name!r}]")
        if w.ndim != 2:
            raise ValueError(f"layers[{name!r}] must be a 2-d weight matrix, got shape {tuple(w.shape)}")
    check_choice(fmt, "fmt", FORMATS)
    check_choice(block, "block", BLOCK_SIZES)
    names = list(layers)
    controls = {
        "fmt": widgets.Dropdown(options=list(FORMATS), value=fmt, description="format"),
        "block": widgets.SelectionSlider(
            options=list(BLOCK_SIZES), value=block, description="block size", continuous_update=False
        ),
        "layer": widgets.Dropdown(options=names, value=names[0], description="layer"),
    }

    def draw(fmt: str, block: int, layer: str):
        view = error_view(layers[layer], fmt, block)
        return plot_error_view(view, f"{layer} · {fmt} · block {view['block']}"), readout(view, fmt, layer)

    return panel(draw, controls)
