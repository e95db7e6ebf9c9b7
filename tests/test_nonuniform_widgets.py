"""View, plotting and widget tests for 03_nonuniform."""

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from helpers.nonuniform import METHODS, codebook_view, nonuniform_fake_quantize
from helpers.plotting.nonuniform import codebook_figure, image_grid, levels_over_histograms
from helpers.widgets.nonuniform import codebook_widget


@pytest.fixture
def w():
    return torch.randn(64, 48) * 0.05


@pytest.mark.parametrize(("control", "value"), [("method", "kmeans"), ("bits", 2), ("block_size", 256)])
def test_widget_redraws_on_each_control(w, control, value):
    box = codebook_widget(w, "test")
    before_img, before_txt = box.image.value, box.readout.value
    box.controls[control].value = value
    assert box.image.value != before_img
    assert box.readout.value != before_txt
    assert box.last_values[control] == value


def test_widget_fp4_needs_four_bits(w):
    box = codebook_widget(w, "test", method="fp4")
    box.controls["bits"].value = 3
    assert "FP4 needs bits = 4" in box.readout.value


def test_widget_bad_input():
    with pytest.raises(TypeError, match="x"):
        codebook_widget(torch.arange(10))


@pytest.mark.parametrize("method", METHODS)
def test_codebook_view_readout_and_figure(w, method):
    view = codebook_view(w, method, 4, 64)
    assert "MSE" in view["readout"] and "bits/weight" in view["readout"]
    res = nonuniform_fake_quantize(w, method, 4, 64)
    assert torch.equal(view["err"], (res.x_hat - w).reshape(-1))
    assert view["mse"] == pytest.approx(float(((res.x_hat - w) ** 2).mean()))
    assert (view["levels"] is None) == (method == "affine")
    assert float(view["normalised"].abs().max()) <= 1.0
    assert isinstance(codebook_figure(view), Figure)


def test_codebook_view_fp4_needs_four_bits(w):
    view = codebook_view(w, "fp4", 3)
    assert view["readout"] == "FP4 needs bits = 4" and "bits = 4" in view["message"]
    assert isinstance(codebook_figure(view), Figure)


def test_codebook_view_and_figure_bad_input(w):
    with pytest.raises(ValueError, match="method"):
        codebook_view(w, "nf5")
    with pytest.raises(ValueError, match="x"):
        codebook_view(torch.tensor([]))
    with pytest.raises(TypeError, match="view must be the dict"):
        codebook_figure(w)
    with pytest.raises(ValueError, match="missing keys"):
        codebook_figure({"mse": 1.0})


def test_levels_over_histograms_and_image_grid():
    v = torch.rand(100) * 2 - 1
    fig = levels_over_histograms([("a", v, torch.tensor([-1.0, 0.0, 1.0])), ("b", v, None)], ncols=3)
    assert isinstance(fig, Figure)
    with pytest.raises(ValueError, match="panels"):
        levels_over_histograms([])
    img = np.zeros((8, 12))
    assert isinstance(image_grid([("r", [img, img])], ["c1", "c2"]), Figure)
    with pytest.raises(ValueError, match="rows"):
        image_grid([("r", [img])], ["c1", "c2"])
