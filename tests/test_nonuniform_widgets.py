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
    with pytest.raises(TypeError, match="x"):
        codebook_widget(None)
    with pytest.raises(ValueError, match="x"):
        codebook_widget(torch.tensor([1.0, float("nan")]))
    with pytest.raises(ValueError, match="x must fit in float32"):
        codebook_widget(torch.tensor([1.0, 1e300], dtype=torch.float64))
    w = torch.randn(64)
    with pytest.raises(ValueError, match="method"):
        codebook_widget(w, method="nf5")
    with pytest.raises(ValueError, match="bits"):
        codebook_widget(w, bits=5)
    with pytest.raises(ValueError, match="block_size"):
        codebook_widget(w, block_size=128)


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


# ----------------------------------------------------------------------------- every control, every option, any data

SWEEP_DATA = {
    "ordinary weights": lambda: torch.randn(64, 48, generator=torch.Generator().manual_seed(0)) * 0.05,
    "constant tensor": lambda: torch.full((40, 30), 0.3),
    "all zeros": lambda: torch.zeros(40, 30),
    "two distinct values": lambda: torch.tensor([-0.2, 0.7]).repeat(600).reshape(40, 30),
    "post-ReLU, many zeros": lambda: torch.relu(torch.randn(40, 30, generator=torch.Generator().manual_seed(1)) - 1.0),
}


def _readable(box) -> str:
    text = box.readout.value
    assert box.last_error is None, box.last_error
    assert text and ("MSE" in text or "FP4 needs bits = 4" in text), text
    assert "nan" not in text.lower() and "-inf" not in text, text
    assert box.image.value  # a picture was drawn
    return text


@pytest.mark.parametrize("data", [d for d in SWEEP_DATA if d != "all zeros"])
def test_widget_every_control_both_ends_and_every_option(data):
    """Every method; bits at both ends and every block choice (with k-means, the method that used to raise on
    few distinct values); FP4 at 2 bits. No traceback, a readable readout. (The full product of the controls is
    checked on the view below, without drawing.)"""
    import warnings

    from helpers.widgets.nonuniform import BLOCK_CHOICES

    x = SWEEP_DATA[data]()
    few_values = torch.unique(x).numel() <= 16
    box = codebook_widget(x, data)
    method, bits, block = box.controls["method"], box.controls["bits"], box.controls["block_size"]
    assert (bits.min, bits.max) == (2, 4)
    assert [v for _, v in method.options] == list(METHODS)
    assert [v for _, v in block.options] == [v for _, v in BLOCK_CHOICES]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no log of zero, no 0/0 behind the readout
        for m in METHODS:
            method.value = m
            _readable(box)
        method.value = "kmeans"
        for b in (bits.min, bits.max):
            bits.value = b
            text = _readable(box)
            assert ("k-means level" in text) == few_values  # says why there are fewer levels than codes
        for _label, value in block.options:
            block.value = value
            _readable(box)
            assert box.last_values == {"method": "kmeans", "bits": bits.max, "block_size": value}
        method.value = "fp4"
        bits.value = bits.min
        assert "FP4 needs bits = 4" in _readable(box)


@pytest.mark.parametrize("data", list(SWEEP_DATA))
def test_codebook_view_every_combination_is_finite(data):
    """The full product of the controls on the view (no drawing): finite MSE, levels <= 2^bits, no warnings."""
    import warnings

    from helpers.widgets.nonuniform import BLOCK_CHOICES

    x = SWEEP_DATA[data]()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        for method in METHODS:
            for b in (2, 3, 4):
                for _label, bs in BLOCK_CHOICES:
                    view = codebook_view(x, method, b, bs)
                    if "message" in view:
                        assert method == "fp4" and b != 4
                        continue
                    assert np.isfinite(view["mse"]) and np.isfinite(view["bits_per_weight"])
                    assert bool(torch.isfinite(view["normalised"]).all())
                    if view["levels"] is not None:
                        assert view["levels"].numel() <= 2**b
                    if data in ("constant tensor", "all zeros"):
                        assert view["mse"] < 1e-12 and "SQNR ∞ (exact)" in view["readout"]
