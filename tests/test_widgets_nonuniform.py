"""Widget and plotting tests for 03_uniform_vs_nonuniform."""

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from helpers.plotting.nonuniform import draw_codebook, image_grid, levels_over_histograms
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


@pytest.mark.parametrize("method", ["uniform", "affine", "pow2", "kmeans", "nf", "fp4"])
def test_draw_codebook_readout(w, method):
    fig, text = draw_codebook(w, method, 4, 64)
    assert isinstance(fig, Figure) and "MSE" in text and "bits/weight" in text


def test_draw_codebook_bad_input(w):
    with pytest.raises(ValueError, match="method"):
        draw_codebook(w, "nf5")
    with pytest.raises(ValueError, match="x"):
        draw_codebook(torch.tensor([]))


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
