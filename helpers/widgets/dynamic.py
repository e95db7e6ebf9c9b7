"""Widget for 04_dynamic: pick a MiniLM layer and a bit width, see its weights and inputs on the int grid and its output error.

Taught in 04_dynamic.
"""

from __future__ import annotations

from collections.abc import Mapping

import ipywidgets as widgets
import torch

from helpers._validate import check_bits
from helpers.dynamic import layer_view
from helpers.plotting.dynamic import layer_figure, short_name
from helpers.widgets import panel

__all__ = ["layer_explorer"]


def layer_explorer(
    layers: Mapping[str, tuple[torch.Tensor, torch.Tensor]], *, layer: str | None = None, bits: int = 8
) -> widgets.VBox:
    """Dropdown (layer) x slider (bits 2..8) x toggle (weight scales per channel / per tensor) -> ``helpers.dynamic.layer_view`` drawn by ``layer_figure``.

    ``layers`` maps a layer name to ``(weight, captured inputs)``. Taught in 04_dynamic.
    """
    if not isinstance(layers, Mapping) or not layers:
        raise ValueError("layers must be a non-empty mapping name -> (weight, inputs)")
    names = list(layers)
    layer = names[0] if layer is None else layer
    if layer not in layers:
        raise ValueError(f"layer must be one of the given layers, got {layer!r}")
    check_bits(bits, 2, 8)
    controls = {
        "name": widgets.Dropdown(options=[(short_name(n), n) for n in names], value=layer, description="layer"),
        "bits": widgets.IntSlider(value=bits, min=2, max=8, description="bits", continuous_update=False),
        "weight_granularity": widgets.ToggleButtons(options=["channel", "tensor"], description="w scales"),
    }

    def draw(name: str, bits: int, weight_granularity: str):
        w, x = layers[name]
        view = layer_view(w, x, bits, weight_granularity, name)
        return layer_figure(view), view["readout"]

    return panel(draw, controls)
