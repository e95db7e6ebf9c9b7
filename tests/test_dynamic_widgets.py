"""Tests of lesson 04's plots and widget: pure figures, redraw on every control, bad input."""

import pytest
import torch
from matplotlib.figure import Figure

from helpers.dynamic import layer_grid_view, layer_view, outliers_view
from helpers.plotting.dynamic import (
    latency_plot,
    layer_figure,
    layer_grid_figure,
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


def test_grid_label_ordinals():
    from helpers.plotting.dynamic import _ordinal

    assert [_ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 102, 111)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd", "102nd", "111th"
    ]  # fmt: skip


def test_short_name():
    assert short_name("encoder.layer.3.output.dense") == "L3 output.dense"
    assert short_name("encoder.layer.0.attention.self.query") == "L0 attention.query"
    assert short_name("pooler.dense") == "pooler.dense"
    with pytest.raises(TypeError, match="name"):
        short_name(3)


def test_layer_view_figure_and_readout():
    w, x = _layers()["encoder.layer.0.output.dense"]
    view = layer_view(w, x, 8, "channel", "encoder.layer.0.output.dense")
    fig = layer_figure(view)
    assert isinstance(fig, Figure) and len(fig.axes) == 3
    assert "relative output error" in view["readout"]
    assert view["x_levels"].size == 256 and view["w_levels"].size == 256
    assert view["w_levels"].max() == pytest.approx(127 * float(view["w_scale"].max()))
    assert view["outlier_ratio"] > 20  # the planted outlier feature
    view4 = layer_view(w, x, 4, "tensor", "encoder.layer.0.output.dense")
    assert view4["readout"] != view["readout"] and view4["rel_err"] > view["rel_err"]
    assert view4["x_levels"].size == 16
    with pytest.raises(ValueError, match="weight_granularity"):
        layer_view(w, x, 8, "group")
    with pytest.raises(ValueError, match="bits"):
        layer_view(w, x, 1)
    with pytest.raises(TypeError, match="w must be a floating-point"):
        layer_view(w.int(), x)
    with pytest.raises(TypeError, match="name"):
        layer_view(w, x, 8, "channel", 3)


def test_other_figures():
    layers = _layers()
    grid = layer_grid_view(layers, (8, 4))
    assert [c["bits"] for c in grid["rows"][0]["cells"]] == [8, 4]
    assert isinstance(layer_grid_figure(grid), Figure)
    sens = {"encoder.layer.0.output.dense": 0.98, "encoder.layer.0.attention.self.query": 0.9999}
    assert isinstance(sensitivity_plot(sens, ["encoder.layer.0.output.dense"]), Figure)
    outliers = outliers_view({n: x for n, (_, x) in layers.items()})
    assert outliers["encoder.layer.0.output.dense"]["ratio"] > outliers["encoder.layer.0.attention.self.query"]["ratio"]
    assert isinstance(outlier_histograms(outliers), Figure)
    assert isinstance(latency_plot([1, 8], {"classic": [1.2, 1.5]}), Figure)
    with pytest.raises(ValueError, match="layers"):
        layer_grid_view({})
    with pytest.raises(ValueError, match="bits_list"):
        layer_grid_view(layers, [])
    with pytest.raises(ValueError, match="sensitivity"):
        sensitivity_plot({})
    with pytest.raises(ValueError, match="inputs"):
        outliers_view({})
    with pytest.raises(TypeError, match="inputs"):
        outliers_view({"a": torch.ones(3, dtype=torch.int32)})
    with pytest.raises(ValueError, match="view"):
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


def test_layer_explorer_survives_every_control_value():
    """Every layer x granularity x bit width computes a view; the widget redraws at the bit widths' ends."""
    layers = _layers()
    readouts = {
        layer_view(*layers[name], bits, gran, name)["readout"]
        for name in layers
        for gran in ("channel", "tensor")
        for bits in range(2, 9)
    }
    assert len(readouts) == 2 * 2 * 7
    box = layer_explorer(layers)
    seen = {box.image.value}
    for name in layers:
        box.controls["name"].value = name
        for gran in ("channel", "tensor"):
            box.controls["weight_granularity"].value = gran
            for bits in (2, 8):
                box.controls["bits"].value = bits
                assert box.last_values == {"name": name, "bits": bits, "weight_granularity": gran}
                assert box.readout.value.count(name) == 1
                seen.add(box.image.value)
    assert len(seen) == 2 * 2 * 2


def test_views_take_post_relu_inputs():
    """Half the inputs exactly 0 (median |x| = 0): the ratio is inf, nothing raises."""
    w, x = _layers()["encoder.layer.0.attention.self.query"]
    relu = x.clamp(min=0)
    relu[: relu.shape[0] // 2 + 1] = 0
    v = layer_view(w, relu, 4, "channel", "post-relu")
    assert v["outlier_ratio"] == float("inf") and isinstance(layer_figure(v), Figure)
    assert outliers_view({"post-relu": relu})["post-relu"]["ratio"] == float("inf")
    box = layer_explorer({"post-relu": (w, relu)})
    box.controls["bits"].value = 2
    assert box.last_error is None


def test_layer_explorer_bad_input():
    with pytest.raises(ValueError, match="layers"):
        layer_explorer({})
    with pytest.raises(ValueError, match="layer must be one of"):
        layer_explorer(_layers(), layer="nope")
    with pytest.raises(ValueError, match="bits"):
        layer_explorer(_layers(), bits=9)
