"""Tests of lesson 02's views, figures and widget: redraws, figures, and bad input."""

import math

import pytest
import torch
from matplotlib.figure import Figure

from helpers import affine as A
from helpers.affine import clip_range, playground_view, quant_view, sample_distribution, small_multiples_view
from helpers.plotting import affine as P
from helpers.widgets.affine import affine_playground


def test_widget_redraws_on_every_control():
    box = affine_playground()
    assert box.redraws == 1
    bits = box.controls["bits"]
    assert type(bits).__name__ == "IntSlider" and bits.description == "bits" and not bits.continuous_update
    for name, value in [("bits", 3), ("clip", 0.5), ("scheme", "symmetric"), ("distribution", "heavy-tailed")]:
        image, readout = box.image.value, box.readout.value
        box.controls[name].value = value
        assert box.image.value != image, name
        assert box.readout.value != readout, name
        assert box.last_values[name] == value
    assert box.redraws == 5
    assert "bits=3" in box.readout.value and "heavy-tailed" in box.readout.value


def test_widget_bad_input():
    with pytest.raises(ValueError, match="bits"):
        affine_playground(bits=9)
    with pytest.raises(ValueError, match="bits"):
        affine_playground(bits=1)
    with pytest.raises(ValueError, match="clip"):
        affine_playground(clip=0.0)
    with pytest.raises(ValueError, match="scheme"):
        affine_playground(scheme="asym")
    with pytest.raises(ValueError, match="distribution"):
        affine_playground(distribution="cauchy")


@pytest.mark.parametrize("name", A.DISTRIBUTIONS)
def test_sample_distribution(name):
    x = sample_distribution(name, 5000, seed=3)
    assert x.shape == (5000,) and x.dtype == torch.float32 and bool(torch.isfinite(x).all())
    assert torch.equal(x, sample_distribution(name, 5000, seed=3))
    if name == "relu":
        assert x.min().item() == 0.0 and (x == 0).float().mean().item() > 0.4
    if name == "heavy-tailed":
        assert x.abs().max().item() >= 8.0
    if name == "uniform":
        assert x.min().item() >= -1.0 and x.max().item() < 1.0


def test_sample_distribution_bad_input():
    with pytest.raises(ValueError, match="name"):
        sample_distribution("gamma")
    with pytest.raises(ValueError, match="n"):
        sample_distribution("normal", 0)
    with pytest.raises(TypeError, match="seed"):
        sample_distribution("normal", 10, seed=1.5)


def test_clip_range_and_bad_input():
    x = torch.tensor([-1.0, 3.0])
    assert clip_range(x, 1.0) == (-1.0, 3.0)
    assert clip_range(x, 0.5, "symmetric") == (-1.5, 1.5)
    assert clip_range(torch.tensor([1.0, 2.0]), 1.0) == (0.0, 2.0)  # widened to include 0
    with pytest.raises(ValueError, match="clip"):
        clip_range(x, 0.0)
    with pytest.raises(ValueError, match="clip"):
        clip_range(x, 1.5)
    with pytest.raises(ValueError, match="scheme"):
        clip_range(x, 1.0, "minmax")
    with pytest.raises(TypeError, match="x"):
        clip_range(torch.arange(3), 1.0)
    with pytest.raises(ValueError, match="x"):
        clip_range(torch.tensor([float("nan")]), 1.0)


def test_quant_view_matches_helpers():
    x = sample_distribution("normal", 1000)
    v = quant_view(x, 4, 1.0, "affine")
    assert torch.equal(v["x_hat"], A.fake_quantize_tensor(x, 4))
    assert len(v["levels"]) == 16 and 0.0 in v["levels"].tolist()
    lo, hi = v["levels"][0], v["levels"][-1]
    outside = (x < lo) | (x > hi)
    assert v["clipped"] == pytest.approx(outside.float().mean().item())
    # min-max grid: zero_point rounding shifts the grid by < scale/2, so nothing lies further out than that
    gap = torch.maximum(lo - x, x - hi)[outside]
    assert bool((gap <= v["scale"] / 2 * (1 + 1e-6)).all())
    with pytest.raises(ValueError, match="bits"):
        quant_view(x, 0)


def test_static_figures():
    view = small_multiples_view(3, ["affine"], ["uniform", "relu"])
    assert set(view["views"]) == {("affine", "uniform"), ("affine", "relu")}
    assert torch.equal(view["views"]["affine", "relu"]["x_hat"], A.fake_quantize_tensor(view["samples"]["relu"], 3))
    assert isinstance(P.small_multiples_figure(view), Figure)
    fig = P.clip_sweep_figure([0.5, 1.0], {"total": [1.0, 2.0], "rounding": [0.5, 1.0]}, "t")
    assert isinstance(fig, Figure)
    assert isinstance(P.sqnr_bits_figure([2, 4], {"uniform": [12.0, 24.0]}), Figure)
    assert isinstance(P.accuracy_bits_figure([8, 4], {"per-tensor": [99.0, 90.0]}, 99.3), Figure)


def test_static_figures_bad_input():
    with pytest.raises(ValueError, match="schemes"):
        small_multiples_view(3, ["asym"])
    with pytest.raises(ValueError, match="distributions"):
        small_multiples_view(3, ["affine"], ["beta"])
    with pytest.raises(ValueError, match="bits"):
        small_multiples_view(0)
    with pytest.raises(ValueError, match="non-empty"):
        small_multiples_view(3, [])
    with pytest.raises(TypeError, match="view must be the dict"):
        P.small_multiples_figure(3)
    with pytest.raises(ValueError, match="missing keys"):
        P.playground_figure({"x": torch.zeros(3)})
    with pytest.raises(ValueError, match="clips"):
        P.clip_sweep_figure([], {"total": []})
    with pytest.raises(ValueError, match="series"):
        P.clip_sweep_figure([1.0], {})
    with pytest.raises(ValueError, match="series"):
        P.sqnr_bits_figure([2, 4], {"uniform": [1.0]})
    with pytest.raises(ValueError, match="fp32"):
        P.accuracy_bits_figure([8], {"a": [1.0]}, float("nan"))


def test_fake_quantize_range_and_split():
    x = sample_distribution("heavy-tailed", 4000)
    x_hat = A.fake_quantize_range(x, -2.0, 2.0, 4)
    scale, zp = A.affine_qparams(-2.0, 2.0, 4)
    assert torch.equal(x_hat, A.fake_quantize(x, scale, zp, -8, 7))
    rounding, clipping = A.clipping_error_split(x, x_hat, -2.0, 2.0)
    assert rounding + clipping == pytest.approx(A.mse(x, x_hat), rel=1e-12)
    assert clipping > 0 and rounding > 0
    sym = A.fake_quantize_range(x, -1.0, 3.0, 4, scheme="symmetric")
    assert torch.equal(sym, A.fake_quantize(x, *A.affine_qparams(-1.0, 3.0, 4, symmetric=True), -8, 7))


def test_fake_quantize_range_and_split_bad_input():
    x = torch.randn(10)
    with pytest.raises(ValueError, match="x_min"):
        A.fake_quantize_range(x, 1.0, -1.0)
    with pytest.raises(ValueError, match="x_max"):
        A.fake_quantize_range(x, -1.0, float("inf"))
    with pytest.raises(TypeError, match="x_min"):
        A.fake_quantize_range(x, "a", 1.0)
    with pytest.raises(ValueError, match="bits"):
        A.fake_quantize_range(x, -1.0, 1.0, 17)
    with pytest.raises(ValueError, match="scheme"):
        A.fake_quantize_range(x, -1.0, 1.0, 8, scheme="scale")
    with pytest.raises(TypeError, match="x must be a floating-point"):
        A.fake_quantize_range(torch.arange(3), -1.0, 1.0)
    with pytest.raises(ValueError, match="x must be a non-empty"):
        A.fake_quantize_range(torch.tensor([]), -1.0, 1.0)
    with pytest.raises(ValueError, match="x_min"):
        A.clipping_error_split(x, x, 2.0, 1.0)
    with pytest.raises(ValueError, match="same shape"):
        A.clipping_error_split(x, x[:5], -1.0, 1.0)
    with pytest.raises(ValueError, match="x_max"):
        A.clipping_error_split(x, x, -1.0, float("nan"))


def test_playground_view_readout_and_bad_input():
    view = playground_view(3, 0.5, "symmetric", "relu")
    text = view["readout"]
    assert "bits=3" in text and "zero_point=0" in text and "SQNR" in text
    assert torch.equal(view["x"], sample_distribution("relu", 8192, seed=0))
    # the error curve is the same fake-quantizer applied to a dense line through the data
    dense_hat = A.fake_quantize(view["dense"], view["scale"], view["zero_point"], view["qmin"], view["qmax"])
    assert torch.equal(view["dense_err"], dense_hat - view["dense"])
    assert float(view["dense_err"][(view["dense"] >= 0) & (view["dense"] <= view["levels"][-1])].abs().max()) <= (
        view["scale"] / 2 * (1 + 1e-6)
    )
    assert isinstance(P.playground_figure(view), Figure)
    with pytest.raises(ValueError, match="bits"):
        playground_view(17)
    with pytest.raises(ValueError, match="clip"):
        playground_view(4, 2.0)
    with pytest.raises(ValueError, match="scheme"):
        playground_view(4, 1.0, "asym")
    with pytest.raises(ValueError, match="distribution"):
        playground_view(4, 1.0, "affine", "lognormal")


def test_widget_every_control_at_both_ends_and_every_option_shows_no_error():
    box = affine_playground()
    ends = {name: (c.min, c.max) for name, c in box.controls.items() if hasattr(c, "min")}
    options = {name: tuple(c.options) for name, c in box.controls.items() if hasattr(c, "options")}
    assert ends == {"bits": (2, 8), "clip": (0.05, 1.0)}
    assert options == {"scheme": A.SCHEMES, "distribution": A.DISTRIBUTIONS}
    settings = [("bits", v) for v in ends["bits"]] + [("clip", v) for v in ends["clip"]]
    settings += [(name, v) for name, opts in options.items() for v in opts]
    settings += [("bits", 2), ("clip", 0.05), ("scheme", "symmetric"), ("distribution", "relu")]  # the harshest corner
    for name, value in settings:
        box.controls[name].value = value
        assert box.last_error is None, (name, value, box.last_error)
        assert box.last_values[name] == value and "MSE=" in box.readout.value and "Traceback" not in box.readout.value


@pytest.mark.parametrize("scheme", A.SCHEMES)
def test_views_at_every_slider_value(scheme):
    from helpers.widgets.affine import _draw

    for d in A.DISTRIBUTIONS:
        for bits in range(2, 9):
            for clip in (0.05, 1.0):
                v = playground_view(bits, clip, scheme, d)
                assert math.isfinite(v["scale"]) and v["scale"] > 0 and math.isfinite(v["mse"]), (bits, clip, d)
    for d in ("relu", "heavy-tailed"):
        for i in range(1, 21):
            clip = round(0.05 * i, 2)
            for bits in (2, 8):
                v = playground_view(bits, clip, scheme, d)
                assert math.isfinite(v["mse"]) and 0 <= v["clipped"] <= 1, (bits, clip, d)
    fig, text = _draw(2, 0.05, scheme, "relu")
    assert isinstance(fig, Figure) and "SQNR" in text


@pytest.mark.parametrize(
    "x",
    [torch.zeros(100), torch.full((100,), 3.0), torch.full((5,), -2.5), torch.tensor([7.0]), torch.zeros(3, 4)],
    ids=["zeros", "constant", "negative constant", "one value", "2-d zeros"],
)
def test_views_and_figures_on_degenerate_data(x):
    for bits in (2, 8):
        for clip in (0.05, 1.0):
            for scheme in A.SCHEMES:
                v = quant_view(x, bits, clip, scheme)
                assert math.isfinite(v["scale"]) and v["scale"] > 0
                assert 0.0 in v["levels"].tolist()  # zero stays exactly representable
                if x.abs().max() == 0:
                    assert v["mse"] == 0 and v["sqnr_db"] == math.inf and not v["x_hat"].any()
    views = {(s, "d"): quant_view(x, 2, 0.05, s) for s in A.SCHEMES}
    fig = P.small_multiples_figure(
        {"bits": 2, "schemes": A.SCHEMES, "distributions": ("d",), "samples": {"d": x.flatten()}, "views": views}
    )
    assert isinstance(fig, Figure)
