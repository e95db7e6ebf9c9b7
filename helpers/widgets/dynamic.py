"""Widget for 04_dynamic: pick a MiniLM layer, a bit width and the activation scheme, see its weights and inputs on the int grid and its output error.

Taught in 04_dynamic.
"""

from __future__ import annotations

from collections.abc import Mapping

import ipywidgets as widgets
import torch

from helpers._validate import check_bits, check_choice
from helpers.dynamic import layer_view
from helpers.plotting.dynamic import layer_figure, short_name
from helpers.widgets import panel

__all__ = ["layer_explorer"]


def layer_explorer(
    layers: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
    *,
    layer: str | None = None,
    bits: int = 8,
    act_granularity: str = "tensor",
    reduce_range: bool = False,
) -> widgets.VBox:
    """Dropdown (layer) x slider (bits 2..8) x toggles (weight scales per channel / per tensor; activation ranges per
    tensor / per token; activations at full width or ``reduce_range``, one bit fewer) -> ``helpers.dynamic.layer_view``
    drawn by ``layer_figure``.

    ``layers`` maps a layer name to ``(weight, captured inputs)``. Taught in 04_dynamic.
    """
    if not isinstance(layers, Mapping) or not layers:
        raise ValueError("layers must be a non-empty mapping name -> (weight, inputs)")
    names = list(layers)
    layer = names[0] if layer is None else layer
    if layer not in layers:
        raise ValueError(f"layer must be one of the given layers, got {layer!r}")
    check_bits(bits, 2, 8)
    check_choice(act_granularity, "act_granularity", ("tensor", "token"))
    if not isinstance(reduce_range, bool):
        raise TypeError(f"reduce_range must be True or False, got {reduce_range!r}")
    controls = {
        "name": widgets.Dropdown(options=[(short_name(n), n) for n in names], value=layer, description="layer"),
        "bits": widgets.IntSlider(value=bits, min=2, max=8, description="bits", continuous_update=False),
        "weight_granularity": widgets.ToggleButtons(options=["channel", "tensor"], description="w scales"),
        "act_granularity": widgets.ToggleButtons(
            options=["tensor", "token"], value=act_granularity, description="x ranges"
        ),
        "reduce_range": widgets.ToggleButtons(
            options=[("all bits", False), ("reduce_range (1 bit fewer)", True)],
            value=reduce_range,
            description="x bits",
        ),
    }

    def draw(name: str, bits: int, weight_granularity: str, act_granularity: str, reduce_range: bool):
        w, x = layers[name]
        view = layer_view(w, x, bits, weight_granularity, name, act_granularity, reduce_range)
        return layer_figure(view), view["readout"]

    return panel(draw, controls)
