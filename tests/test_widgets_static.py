"""Widget and figures of lesson 05: redraw on control change; the pure figures."""

import warnings

import pytest
import torch
from matplotlib.figure import Figure

from helpers.data import load_digits_split
from helpers.models import load_digits_cnn
from helpers.observers import collect_activations
from helpers.plotting.static import ablation_figure, clip_ranges_figure, observer_figure
from helpers.static import DIGITS_OBSERVED, fused_digits_cnn
from helpers.widgets.static import make_observer_draw, observer_widget

warnings.filterwarnings("ignore", category=DeprecationWarning)


@pytest.fixture(scope="module")
def setup():
    d = load_digits_split()
    model = load_digits_cnn()
    acts = collect_activations(fused_digits_cnn(model), d.x_train[:128], DIGITS_OBSERVED, batch_size=64)
    return model, acts, d.x_test[:100], d.y_test[:100]


def test_widget_redraws(setup):
    box = observer_widget(*setup)
    before_img, before_txt = box.image.value, box.readout.value
    box.controls["layer"].value = "module.features.3"
    assert box.image.value != before_img and box.readout.value != before_txt
    before_img, before_txt = box.image.value, box.readout.value
    box.controls["bits"].value = 4
    assert box.image.value != before_img and box.readout.value != before_txt
    assert "4-bit" in box.readout.value


def test_draw_caches_and_validates(setup):
    draw = make_observer_draw(*setup)
    fig, text = draw("module.classifier.3", "percentile", 99.5, 8)
    assert isinstance(fig, Figure) and "p=99.5" in text
    draw("module.classifier.3", "percentile", 99.5, 8)
    assert draw.accuracy.cache_info().hits >= 1
    with pytest.raises(ValueError, match="method"):
        draw("quant", "median", 99.0, 8)
    with pytest.raises(ValueError, match="layer"):
        draw("nope", "minmax", 99.0, 8)
    with pytest.raises(ValueError, match="acts"):
        make_observer_draw(setup[0], {}, setup[2], setup[3])


def test_figures():
    x = torch.randn(1000)
    assert isinstance(observer_figure(x, -1.0, 1.0, 3, title="t"), Figure)
    fig = clip_ranges_figure({"a": x, "b": x.clamp(min=0)}, {"a": {"minmax": (-3, 3)}, "b": {"kl": (0, 2)}})
    assert isinstance(fig, Figure)
    assert isinstance(ablation_figure([("obs", ["a", "b"], [99.0, 98.0])], baseline=99.3), Figure)
    with pytest.raises(ValueError, match="ranges"):
        clip_ranges_figure({"a": x}, {})
    with pytest.raises(ValueError, match="panels"):
        ablation_figure([])
    with pytest.raises(ValueError, match="bits"):
        observer_figure(x, 0.0, 1.0, 1)
