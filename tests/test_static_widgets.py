"""Widget and figures of lesson 05: redraw on control change; the pure figures."""

import copy
import warnings

import pytest
import torch
from matplotlib.figure import Figure

from helpers.data import load_digits_split
from helpers.models import load_digits_cnn
from helpers.observers import METHODS, collect_activations
from helpers.plotting.static import ablation_figure, clip_ranges_figure, observer_figure
from helpers.static import DIGITS_OBSERVED, fused_digits_cnn, make_observer_view
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
    assert draw.view.accuracy.cache_info().hits >= 1
    with pytest.raises(ValueError, match="method"):
        draw("quant", "median", 99.0, 8)
    with pytest.raises(ValueError, match="layer"):
        draw("nope", "minmax", 99.0, 8)
    with pytest.raises(ValueError, match="bits"):
        draw("module.classifier.3", "minmax", 99.0, 9)
    with pytest.raises(ValueError, match="acts"):
        make_observer_draw(setup[0], {}, setup[2], setup[3])


def test_observer_view_numbers(setup):
    view = make_observer_view(*setup)
    v = view("module.classifier.1", "minmax", 99.9, 8)
    x = v["x"]
    assert v["lo"] == pytest.approx(float(x.min()), abs=1e-6) and v["hi"] == pytest.approx(float(x.max()))
    assert v["clipped"] == 0.0 and 0.0 <= v["accuracy"] <= 100.0
    p = view("module.classifier.1", "percentile", 99.0, 8)
    assert p["hi"] < v["hi"] and p["clipped"] > 0.0  # a percentile clips the top 1 %
    assert view("module.classifier.1", "minmax", 99.9, 2)["mse"] > v["mse"]


def test_observer_view_reports_logit_sqnr(setup):
    """The readout ranks settings whose accuracy ties: logit SQNR against the fp32 model's float64 logits."""
    from helpers.affine import sqnr_db
    from helpers.static import quantize_digits_cnn

    model, acts, x_test, _ = setup
    view = make_observer_view(*setup)
    v8, v2 = view("module.classifier.1", "minmax", 99.9, 8), view("module.classifier.1", "minmax", 99.9, 2)
    ranges = {n: view.layer_range(n, "minmax", 99.9, 8) for n in DIGITS_OBSERVED}
    with torch.no_grad():
        ref = copy.deepcopy(model).double()(x_test.double()).float()
        want = sqnr_db(ref, quantize_digits_cnn(model, ranges=ranges)(x_test))
    assert v8["logit_sqnr_db"] == want and f"logit SQNR vs fp32 {want:.1f} dB" in v8["readout"]
    assert v8["logit_sqnr_db"] > v2["logit_sqnr_db"] + 10  # 8-bit activations are far closer to fp32 than 2-bit


def test_widget_survives_every_control_value(setup):
    """Each control through all of its values (layers, observers, bit widths; percentile's ends and middle)."""
    box = observer_widget(*setup)
    for layer in DIGITS_OBSERVED:
        box.controls["layer"].value = layer
        assert box.last_values["layer"] == layer and layer in box.readout.value
    for method in METHODS:
        box.controls["method"].value = method
        assert f": {method}" in box.readout.value
    box.controls["method"].value = "percentile"
    for percentile in (99.0, 99.01, 99.5, 99.99, 100.0):
        box.controls["percentile"].value = percentile
        assert f"p={percentile}" in box.readout.value
    for bits in range(2, 9):
        box.controls["bits"].value = bits
        assert f"{bits}-bit activations" in box.readout.value


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


def test_batch_mode_votes_over_mode_acts(setup):
    """Lesson 05 passes one input per batch for batch_mode (the seminar's per-input mode), as its tables do."""
    from helpers.observers import batch_mode_range

    model, acts, x_test, y_test = setup
    d = load_digits_split()
    per_input = collect_activations(fused_digits_cnn(model), d.x_train[:20], DIGITS_OBSERVED, batch_size=1)
    view = make_observer_view(model, acts, x_test, y_test, mode_acts=per_input)
    for layer in ("quant", "module.classifier.1"):
        want = tuple(float(v) for v in batch_mode_range(per_input[layer], 8))
        assert view.layer_range(layer, "batch_mode", 99.9, 8) == want
        other = tuple(float(v) for v in batch_mode_range(acts[layer], 8))
        assert make_observer_view(*setup).layer_range(layer, "batch_mode", 99.9, 8) == other
    assert view.layer_range("quant", "minmax", 99.9, 8) == make_observer_view(*setup).layer_range(
        "quant", "minmax", 99.9, 8
    )  # every other observer still reads acts
    box = observer_widget(*setup, mode_acts=per_input, method="batch_mode")
    assert "batch_mode" in box.readout.value
    with pytest.raises(ValueError, match="mode_acts"):
        make_observer_view(*setup, mode_acts={"quant": per_input["quant"]})
