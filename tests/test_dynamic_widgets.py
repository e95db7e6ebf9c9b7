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
    [
        ("bits", 4),
        ("name", "encoder.layer.0.output.dense"),
        ("weight_granularity", "tensor"),
        ("act_granularity", "token"),
        ("reduce_range", True),
    ],
)
def test_layer_explorer_redraws(control, value):
    box = layer_explorer(_layers())
    image, readout = box.image.value, box.readout.value
    box.controls[control].value = value
    assert box.image.value != image
    assert box.readout.value != readout
    assert box.last_values[control] == value and box.last_error is None


def test_layer_explorer_survives_every_control_value():
    """Every layer x weight granularity x activation granularity x reduce_range x bit width computes a distinct view;
    the widget redraws, without an error, at both ends of the bit slider for every combination of the other controls."""
    layers = _layers()
    combos = [
        (name, wg, ag, rr)
        for name in layers
        for wg in ("channel", "tensor")
        for ag in ("tensor", "token")
        for rr in (False, True)
    ]
    readouts = {
        layer_view(*layers[n], bits, wg, n, ag, rr)["readout"] for n, wg, ag, rr in combos for bits in range(2, 9)
    }
    assert len(readouts) == len(combos) * 7
    box = layer_explorer(layers)
    assert {k: list(dict(c.options).values()) if isinstance(c.options[0], tuple) else list(c.options)
            for k, c in box.controls.items() if k != "bits"} == {
        "name": list(layers), "weight_granularity": ["channel", "tensor"], "act_granularity": ["tensor", "token"],
        "reduce_range": [False, True],
    }  # fmt: skip
    assert (box.controls["bits"].min, box.controls["bits"].max) == (2, 8)
    seen = {box.image.value}
    for name, wg, ag, rr in combos:
        box.controls["name"].value = name
        box.controls["weight_granularity"].value = wg
        box.controls["act_granularity"].value = ag
        box.controls["reduce_range"].value = rr
        for bits in (2, 8):
            box.controls["bits"].value = bits
            want = {"name": name, "bits": bits, "weight_granularity": wg, "act_granularity": ag, "reduce_range": rr}
            assert box.last_values == want and box.last_error is None
            assert box.readout.value.count(name) == 1
            assert f"{bits - 1 if rr else bits}-bit dynamic activations (per-{ag}" in box.readout.value
            seen.add(box.image.value)
    assert len(seen) == len(combos) * 2


def test_per_token_and_reduce_range_in_the_view():
    """Per-token ranges fit an outlier token's neighbours better; reduce_range halves the activation grid."""
    w, x = _layers()["encoder.layer.0.attention.self.query"]
    x = x.clone()
    x[0] *= 50  # one outlier token
    per_tensor = layer_view(w, x, 8, "channel", "q", "tensor", False)
    per_token = layer_view(w, x, 8, "channel", "q", "token", False)
    seven = layer_view(w, x, 8, "channel", "q", "tensor", True)
    assert per_token["rel_err"] < per_tensor["rel_err"] < seven["rel_err"]
    assert per_token["act_scales"].numel() == x.shape[0] and per_tensor["act_scales"].numel() == 1
    assert per_token["scale"] == float(per_token["act_scales"].max())
    assert (seven["qmin"], seven["qmax"], seven["act_bits"]) == (0, 127, 7) and seven["x_levels"].size == 128
    assert layer_view(w, x, 2, "channel", "q", "token", True)["x_levels"].size == 2  # 1-bit activations
    with pytest.raises(ValueError, match="act_granularity"):
        layer_view(w, x, 8, "channel", "q", "row")
    with pytest.raises(TypeError, match="reduce_range"):
        layer_view(w, x, 8, "channel", "q", "tensor", 1)


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
    with pytest.raises(ValueError, match="act_granularity"):
        layer_explorer(_layers(), act_granularity="row")
    with pytest.raises(TypeError, match="reduce_range"):
        layer_explorer(_layers(), reduce_range="yes")
