"""Tests of lesson 04's plots and widget: pure figures, redraw on every control, bad input."""

import pytest
import torch
from matplotlib.figure import Figure

from helpers.plotting.dynamic import (
    latency_plot,
    layer_grid,
    layer_view,
    outlier_histograms,
    sensitivity_plot,
    short_name,
)
from helpers.widgets.dynamic import layer_explorer


def _layers():
    torch.manual_seed(0)
    x_out = torch.randn(64, 32)
    x_out[:, 3] *= 80  # an outlier feature, like MiniLM's FFN output inputs
    return {
        "encoder.layer.0.attention.self.query": (torch.randn(16, 32) * 0.05, torch.randn(64, 32)),
        "encoder.layer.0.output.dense": (torch.randn(16, 32) * 0.05, x_out),
    }


def test_short_name():
    assert short_name("encoder.layer.3.output.dense") == "L3 output.dense"
    assert short_name("encoder.layer.0.attention.self.query") == "L0 attention.query"
    assert short_name("pooler.dense") == "pooler.dense"
    with pytest.raises(TypeError, match="name"):
        short_name(3)


def test_layer_view_figure_and_readout():
    w, x = _layers()["encoder.layer.0.output.dense"]
    fig, text = layer_view(w, x, 8, "channel", "encoder.layer.0.output.dense")
    assert isinstance(fig, Figure) and len(fig.axes) == 3
    assert "relative output error" in text
    _, text4 = layer_view(w, x, 4, "tensor", "encoder.layer.0.output.dense")
    assert text4 != text
    with pytest.raises(ValueError, match="weight_granularity"):
        layer_view(w, x, 8, "group")
    with pytest.raises(ValueError, match="bits"):
        layer_view(w, x, 1)
    with pytest.raises(TypeError, match="w must be a floating-point"):
        layer_view(w.int(), x)


def test_other_figures():
    layers = _layers()
    assert isinstance(layer_grid(layers, (8, 4)), Figure)
    sens = {"encoder.layer.0.output.dense": 0.98, "encoder.layer.0.attention.self.query": 0.9999}
    assert isinstance(sensitivity_plot(sens, ["encoder.layer.0.output.dense"]), Figure)
    assert isinstance(outlier_histograms({n: x for n, (_, x) in layers.items()}), Figure)
    assert isinstance(latency_plot([1, 8], {"classic": [1.2, 1.5]}), Figure)
    with pytest.raises(ValueError, match="layers"):
        layer_grid({})
    with pytest.raises(ValueError, match="bits_list"):
        layer_grid(layers, [])
    with pytest.raises(ValueError, match="sensitivity"):
        sensitivity_plot({})
    with pytest.raises(ValueError, match="inputs"):
        outlier_histograms({})
    with pytest.raises(ValueError, match="ratios\\['classic'\\]"):
        latency_plot([1, 8], {"classic": [1.2]})
    with pytest.raises(ValueError, match="batch_sizes"):
        latency_plot([], {"classic": []})


@pytest.mark.parametrize(
    "control, value",
    [("bits", 4), ("name", "encoder.layer.0.output.dense"), ("weight_granularity", "tensor")],
)
def test_layer_explorer_redraws(control, value):
    box = layer_explorer(_layers())
    image, readout = box.image.value, box.readout.value
    box.controls[control].value = value
    assert box.image.value != image
    assert box.readout.value != readout
    assert box.last_values[control] == value


def test_layer_explorer_bad_input():
    with pytest.raises(ValueError, match="layers"):
        layer_explorer({})
    with pytest.raises(ValueError, match="layer must be one of"):
        layer_explorer(_layers(), layer="nope")
    with pytest.raises(ValueError, match="bits"):
        layer_explorer(_layers(), bits=9)
