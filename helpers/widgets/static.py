"""Widget of lesson 05_static: observer x percentile x activation bits -> clipping range, MSE, accuracy, logit SQNR.

Taught in 05_static. The computation (ranges, MSE, test accuracy and logit SQNR against fp32 with
every activation quantized by that observer and bit width, cached per setting) is ``helpers.static.make_observer_view``; this
module only wires the controls to it and to ``helpers.plotting.static.observer_figure``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import ipywidgets as widgets
import torch
from torch import nn

from helpers.observers import METHODS
from helpers.plotting.static import observer_figure
from helpers.static import DIGITS_OBSERVED, make_observer_view

__all__ = ["make_observer_draw", "observer_widget"]


def make_observer_draw(
    model: nn.Module,
    acts: Mapping[str, Sequence[torch.Tensor]],
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    *,
    mode_acts: Mapping[str, Sequence[torch.Tensor]] | None = None,
):
    """``draw(layer, method, percentile, bits) -> (Figure, readout)``: ``helpers.static.make_observer_view`` drawn.

    ``mode_acts``: the batches ``batch_mode`` votes over (default ``acts``). The view (and its caches)
    is ``draw.view``. Taught in 05_static.
    """
    view = make_observer_view(model, acts, x_test, y_test, mode_acts=mode_acts)

    def draw(layer: str, method: str, percentile: float, bits: int):
        v = view(layer, method, percentile, bits)
        return observer_figure(v["x"], v["lo"], v["hi"], v["bits"], title=v["title"], readout=v["readout"]), v[
            "readout"
        ]

    draw.view = view
    return draw


def observer_widget(
    model: nn.Module,
    acts: Mapping[str, Sequence[torch.Tensor]],
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    *,
    layer: str = "module.classifier.1",
    method: str = "minmax",
    percentile: float = 99.9,
    bits: int = 8,
    mode_acts: Mapping[str, Sequence[torch.Tensor]] | None = None,
) -> widgets.VBox:
    """Controls (layer, observer, percentile, activation bits) above the histogram and the readout.

    ``mode_acts``: the batches the ``batch_mode`` observer votes over (lesson 05: one input each, as in
    the seminar's notes); default ``acts``. Taught in 05_static.
    """
    from helpers.widgets import panel

    draw = make_observer_draw(model, acts, x_test, y_test, mode_acts=mode_acts)
    style = {"description_width": "initial"}
    controls = {
        "layer": widgets.Dropdown(options=DIGITS_OBSERVED, value=layer, description="layer", style=style),
        "method": widgets.Dropdown(options=METHODS, value=method, description="observer", style=style),
        "percentile": widgets.FloatSlider(
            value=percentile,
            min=99.0,
            max=100.0,
            step=0.01,
            description="percentile",
            continuous_update=False,
            style=style,
        ),  # fmt: skip
        "bits": widgets.IntSlider(
            value=bits, min=2, max=8, description="act. bits", continuous_update=False, style=style
        ),
    }
    return panel(draw, controls, columns=2)
