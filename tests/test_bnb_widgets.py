"""The 07_bnb widget and plotting functions: redraws, readouts, bad input."""

import pytest
import torch
from matplotlib.figure import Figure

from helpers import bnb as R
from helpers.plotting import bnb as P
from helpers.widgets.bnb import threshold_blocksize_widget


def _layers():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 128, generator=g)
    x[:, 7] *= 40
    x[:, 90] *= 9
    w = torch.randn(64, 128, generator=g) * 0.05
    w2 = torch.randn(32, 128, generator=g) * 0.1
    return {"dense": (x, w), "other": (x * 0.5, w2)}


def test_widget_redraws_on_threshold_blocksize_and_layer():
    box = threshold_blocksize_widget(_layers())
    for name, value in (("threshold", 0.0), ("blocksize", 256), ("layer", "other")):
        image, readout = box.image.value, box.readout.value
        box.controls[name].value = value
        assert box.image.value != image, name
        assert box.readout.value != readout, name
    assert box.last_values == {"layer": "other", "threshold": 0.0, "blocksize": 256}


def test_widget_survives_every_control_value():
    """Every layer, every block size, thresholds across the slider (0, a step, the outliers' values, the end)."""
    layers = _layers()
    g = torch.Generator().manual_seed(1)
    layers["odd"] = (torch.randn(8, 77, generator=g), torch.randn(33, 77, generator=g))  # 2541 weights: no size divides
    box = threshold_blocksize_widget(layers)
    assert box.controls["blocksize"].options == R.BLOCKSIZES_4BIT
    for layer in layers:
        box.controls["layer"].value = layer
        for blocksize in R.BLOCKSIZES_4BIT:
            box.controls["blocksize"].value = blocksize
            assert f"block size {blocksize}" in box.readout.value, box.readout.value
            assert box.last_error is None
        for threshold in (0.0, 0.5, 6.0, 9.5, 20.0):
            box.controls["threshold"].value = threshold
            assert box.last_values == {"layer": layer, "threshold": threshold, "blocksize": 4096}


def test_readout_reports_float_columns():
    x, w = _layers()["dense"]
    v6 = R.threshold_blocksize_view(x, w, 6.0, 64, name="dense")
    v0 = R.threshold_blocksize_view(x, w, 0.0, 64, name="dense")
    text6, text0 = v6["readout"], v0["readout"]
    assert int(v6["outliers"].sum()) == 2 and not v0["outliers"].any()
    assert v6["block_absmax"].numel() == w.numel() // 64
    odd = R.threshold_blocksize_view(x[:, :77], torch.randn(33, 77), 6.0, 64)
    assert odd["block_absmax"].numel() == 40  # 2541 weights: 39 full blocks of 64 and a short one
    assert isinstance(P.threshold_blocksize_figure(v6), Figure)
    assert "float columns 1.56%" in text6  # 2 of 128 columns
    assert "float columns 0.00%" in text0
    rel6, frac6, *_ = R.layer_errors(x, w, 6.0, 64)
    rel0, frac0, *_ = R.layer_errors(x, w, 0.0, 64)
    assert rel6 < rel0 and frac6 == 2 / 128 and frac0 == 0


def test_plots_return_figures():
    assert isinstance(P.plot_feature_absmax(torch.rand(64) * 10, 6.0), Figure)
    assert isinstance(P.plot_threshold_sweep([0, 3, 6], [0.1, 0.05, 0.02], [0, 0.1, 0.01]), Figure)
    assert isinstance(P.plot_blocksize_sweep([32, 64], {"nf4": [1e-3, 2e-3]}), Figure)
    assert isinstance(P.plot_loss_curves({"a": [1.0, 0.5], "b": [1.0, 0.6]}), Figure)


def test_bad_inputs():
    with pytest.raises(ValueError, match="layers"):
        threshold_blocksize_widget({})
    with pytest.raises(ValueError, match="blocksize"):
        threshold_blocksize_widget(_layers(), blocksize=48)
    with pytest.raises(ValueError, match="layers"):
        threshold_blocksize_widget({"a": torch.randn(2)})
    with pytest.raises(TypeError, match="x"):
        threshold_blocksize_widget({"a": (torch.ones(2, 4, dtype=torch.int64), torch.randn(2, 4))})
    with pytest.raises(ValueError, match="threshold"):
        R.threshold_blocksize_view(*_layers()["dense"], threshold=-1.0)
    with pytest.raises(ValueError, match="thresholds"):
        P.plot_threshold_sweep([0, 1], [0.1], [0.0, 0.0])
    with pytest.raises(ValueError, match="errors"):
        P.plot_blocksize_sweep([32, 64], {"nf4": [1.0]})
    with pytest.raises(ValueError, match="curves"):
        P.plot_loss_curves({})
    with pytest.raises(TypeError, match="col_absmax"):
        P.plot_feature_absmax([1.0, 2.0])
