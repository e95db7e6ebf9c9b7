"""Widget for 07_bnb: LLM.int8 threshold and block size on a real layer's inputs and weights.

Taught in 07_bnb.
"""

from __future__ import annotations

from collections.abc import Mapping

import ipywidgets as widgets
import torch

from helpers._validate import check_float_tensor
from helpers.bnb import threshold_blocksize_view
from helpers.plotting.bnb import threshold_blocksize_figure
from helpers.widgets import panel

__all__ = ["threshold_blocksize_widget"]

#: Every block size bitsandbytes' 4-bit quantizer takes (its 8-bit one takes these too); a weight they do not
#: divide gets a shorter last block, as in bitsandbytes.
#: (``helpers.bnb.BLOCKSIZES_4BIT``; tests/test_bnb_widgets.py checks they are the same.)
BLOCKSIZES = (32, 64, 128, 256, 512, 1024, 2048, 4096)


def threshold_blocksize_widget(
    layers: Mapping[str, tuple[torch.Tensor, torch.Tensor]], threshold: float = 6.0, blocksize: int = 64
) -> widgets.VBox:
    """Sliders for the outlier ``threshold`` and the weight ``blocksize``, a dropdown for the layer.

    ``layers`` maps a name to ``(x, weight)``: the layer's recorded inputs and its weight matrix.
    The panel shows which input columns would run in float and how the weight blocks' absmax
    spread, with the layer's LLM.int8 error and NF4 / 8-bit blockwise weight MSE in the readout
    (``helpers.bnb.threshold_blocksize_view``). Taught in 07_bnb.
    """
    if not isinstance(layers, Mapping) or not layers:
        raise ValueError("layers must be a non-empty mapping name -> (x, weight)")
    for name, pair in layers.items():
        if not isinstance(pair, tuple) or len(pair) != 2:
            raise ValueError(f"layers[{name!r}] must be a pair (x, weight)")
        check_float_tensor(pair[0], f"layers[{name!r}] x")
        check_float_tensor(pair[1], f"layers[{name!r}] weight")
    if blocksize not in BLOCKSIZES:
        raise ValueError(f"blocksize must be one of {BLOCKSIZES}, got {blocksize}")
    names = list(layers)
    controls = {
        "layer": widgets.Dropdown(options=names, value=names[0], description="layer"),
        "threshold": widgets.FloatSlider(
            value=threshold, min=0.0, max=20.0, step=0.5, description="threshold", continuous_update=False
        ),
        "blocksize": widgets.SelectionSlider(
            options=list(BLOCKSIZES), value=blocksize, description="block size", continuous_update=False
        ),
    }

    def draw(layer: str, threshold: float, blocksize: int):
        x, weight = layers[layer]
        view = threshold_blocksize_view(x, weight, threshold, blocksize, name=layer)
        return threshold_blocksize_figure(view), view["readout"]

    return panel(draw, controls)
