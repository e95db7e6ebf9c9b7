"""The float-bits views, figures and widget of 01_float_bits: they draw, redraw on every control, and reject bad input."""

import math

import pytest
import torch
from matplotlib.figure import Figure

from helpers.float_bits import float_bits, float_bits_view, format_info, magnitudes_view, ulp, ulp_view
from helpers.plotting.float_bits import (
    draw_bit_boxes,
    plot_bit_patterns,
    plot_float_bits,
    plot_magnitudes_vs_range,
    plot_ulp_spacing,
)
from helpers.widgets.float_bits import float_bits_widget


@pytest.mark.parametrize(
    ("value", "fmt", "bits", "expect"),
    [
        (85.125, "fp32", "", "0 10000101 01010100100000000000000  (normal)"),
        (0.1, "fp16", "", "0 01011 1001100110  (normal)"),
        (65520.0, "fp16", "", "(inf)"),
        (-448.0, "fp8_e4m3", "", "1 1111 110  (normal)"),
        (1e-6, "fp16", "", "(subnormal)"),
        (0.0, "bf16", "", "(zero)"),
        (1.0, "fp8_e5m2", "01111111", "(nan)  (bits flipped by hand)"),
        (math.nan, "fp16", "", "(nan)"),
        (1.0, "fp16", "101", "ignored bits '101'"),
    ],
)
def test_float_bits_view_readout_and_figure(value, fmt, bits, expect):
    view = float_bits_view(value, fmt, bits)
    assert expect in view["readout"]
    assert view["bits"] == view["rec"].bits and len(view["fields"]) == len(view["bits"])
    assert isinstance(plot_float_bits(view), Figure)


def test_float_bits_view_reports_the_rounding_error():
    view = float_bits_view(0.1, "fp16")
    rec = float_bits(0.1, "fp16")
    assert f"err = x_hat - x = {rec.value - 0.1:.10g}" in view["readout"]
    assert view["err"] == rec.value - 0.1 and view["typed_bits"] == rec.bits
    lo, hi, outer = view["neighbours"]
    assert lo < rec.value < hi and outer


def test_float_bits_view_neighbours_at_the_edges():
    top = float_bits_view(65504.0, "fp16")  # +max: no finite value above
    lo, hi, outer = top["neighbours"]
    assert not outer and lo == 65472.0 and hi == 65504.0 + 32.0
    assert float_bits_view(0.0, "fp16")["neighbours"][:2] == (-(2.0**-24), 2.0**-24)
    assert float_bits_view(math.inf, "fp16")["neighbours"] is None
    assert float_bits_view(1.0, "fp16", "0 11111 0000000000")["neighbours"] is None  # inf typed by hand


def test_ulp_and_magnitudes_views():
    view = ulp_view(["fp16", "bf16"], xlim=(1e-3, 1e3), points=50)
    x, u = view["curves"]["fp16"]
    assert x.dtype == torch.float64 and torch.equal(u, ulp(x.float(), "fp16")) and float(x.max()) <= 65504.0
    w = torch.randn(500) * 0.1
    m = magnitudes_view(w, ["fp16", "fp8_e4m3"])
    assert len(m["edges"]) == len(m["counts"]) + 1 and int(m["counts"].sum()) == int((w != 0).sum())
    assert m["limits"]["fp8_e4m3"]["max"] == format_info("fp8_e4m3").max == 448.0


def test_static_figures_draw():
    recs = [float_bits(85.125, f) for f in ("fp32", "fp16", "fp8_e4m3")]
    assert isinstance(plot_bit_patterns(recs), Figure)
    assert isinstance(plot_ulp_spacing(ulp_view()), Figure)
    assert isinstance(plot_ulp_spacing(ulp_view(["fp16"], xlim=(1e-3, 1e3), points=50)), Figure)
    view = magnitudes_view(torch.randn(500) * 0.1, ["fp16", "fp8_e4m3"])
    assert isinstance(plot_magnitudes_vs_range(view, title="w"), Figure)


def test_views_reject_bad_input():
    with pytest.raises(ValueError, match="fmt must be one of"):
        float_bits_view(1.0, "fp64")
    with pytest.raises(TypeError, match="value must be a real number"):
        float_bits_view("1", "fp16")
    with pytest.raises(TypeError, match="bits must be a str"):
        float_bits_view(1.0, "fp16", 101)
    with pytest.raises(ValueError, match="fmts must be a non-empty list"):
        ulp_view("fp16")
    with pytest.raises(ValueError, match="fmts must be one of"):
        ulp_view(["fp64"])
    with pytest.raises(ValueError, match="xlim must be a pair"):
        ulp_view(["fp16"], xlim=(1.0, 0.5))
    with pytest.raises(ValueError, match="points"):
        ulp_view(["fp16"], points=1)
    with pytest.raises(TypeError, match="x must be a floating-point tensor"):
        magnitudes_view(torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="fmts must be one of"):
        magnitudes_view(torch.ones(3), ["fp64"])
    with pytest.raises(ValueError, match="nonzero"):
        magnitudes_view(torch.zeros(3))


def test_plotting_rejects_bad_input():
    with pytest.raises(TypeError, match="view must be the dict"):
        plot_float_bits("0101")
    with pytest.raises(ValueError, match="missing keys"):
        plot_float_bits({"rec": float_bits(1.0, "fp16")})
    with pytest.raises(ValueError, match="records must be a non-empty list"):
        plot_bit_patterns([])
    with pytest.raises(TypeError, match=r"records\[0\] must be a FloatBits"):
        plot_bit_patterns([1.0])
    with pytest.raises(ValueError, match="missing keys"):
        plot_ulp_spacing({"xlim": (1.0, 2.0)})
    with pytest.raises(TypeError, match="view must be the dict"):
        plot_magnitudes_vs_range(torch.ones(3))
    ax = Figure().add_subplot()
    with pytest.raises(TypeError, match="rec must be a FloatBits"):
        draw_bit_boxes(ax, "0101")


def test_widget_rejects_bad_input():
    with pytest.raises(ValueError, match="fmt must be one of"):
        float_bits_widget(1.0, "int8")
    with pytest.raises(TypeError, match="value must be a real number"):
        float_bits_widget("1.0")


def _snapshot(box):
    return box.image.value, box.readout.value


def test_widget_redraws_when_value_changes():
    box = float_bits_widget(85.125, "fp32")
    image, readout = _snapshot(box)
    assert "0 10000101 01010100100000000000000" in readout
    box.controls["value"].value = -2.5
    assert box.image.value != image and box.readout.value != readout
    assert box.controls["bits"].value == float_bits(-2.5, "fp32").bits


def test_widget_redraws_when_format_changes_and_resizes_the_toggle_row():
    box = float_bits_widget(85.125, "fp32")
    image, readout = _snapshot(box)
    box.controls["fmt"].value = "fp8_e4m3"
    assert box.image.value != image and box.readout.value != readout
    assert box.controls["bits"].value == float_bits(85.125, "fp8_e4m3").bits
    shown = [t for t in box.toggles if t.layout.display != "none"]
    assert len(shown) == 8
    assert "".join(t.description for t in shown) == box.controls["bits"].value


def test_widget_toggle_flips_one_bit_and_redraws():
    box = float_bits_widget(1.0, "fp16")
    image, readout = _snapshot(box)
    before = box.controls["bits"].value
    box.toggles[0].value = not box.toggles[0].value  # the sign bit
    after = box.controls["bits"].value
    assert after == ("1" if before[0] == "0" else "0") + before[1:]
    assert box.image.value != image and box.readout.value != readout
    assert "x_hat = -1 " in box.readout.value and "bits flipped by hand" in box.readout.value


def test_widget_redraws_when_bits_are_typed():
    box = float_bits_widget(1.0, "fp16")
    image, readout = _snapshot(box)
    box.controls["bits"].value = "0 11110 1111111111"
    assert box.image.value != image and box.readout.value != readout
    assert "x_hat = 65504" in box.readout.value
    assert [t.value for t in box.toggles[:16]] == [c == "1" for c in "0111101111111111"]


def test_widget_sweeps_every_format():
    from helpers.float_bits import FORMATS

    box = float_bits_widget(85.125, "fp32")
    for fmt in FORMATS[1:]:
        image = box.image.value
        box.controls["fmt"].value = fmt
        assert box.image.value != image and box.last_values["fmt"] == fmt
        assert box.controls["bits"].value == float_bits(85.125, fmt).bits
        assert sum(t.layout.display != "none" for t in box.toggles) == format_info(fmt).bits


def _no_traceback(box):
    assert box.last_error is None, box.last_error
    assert "bits:" in box.readout.value and "Traceback" not in box.readout.value


@pytest.mark.parametrize("fmt", ["fp32", "fp16", "bf16", "fp8_e4m3", "fp8_e5m2"])
def test_widget_every_value_kind_every_bit_and_bad_bits_show_no_error(fmt):
    info = format_info(fmt)
    box = float_bits_widget(1.0, fmt)
    values = [
        0.0, -0.0, -85.125, info.max, -info.max, 2 * info.max, info.smallest_normal, info.smallest_subnormal,
        info.smallest_subnormal / 4, 1e300, -1e300, 5e-324, math.inf, -math.inf, math.nan, 1.0,
    ]  # fmt: skip
    for v in values:
        box.controls["value"].value = v
        _no_traceback(box)
        assert len(box.controls["bits"].value) == info.bits  # every value has a pattern, even NaN and overflow
    for i in range(info.bits):  # every bit, flipped once: every exponent/mantissa field reaches all-ones or zero
        box.toggles[i].value = not box.toggles[i].value
        _no_traceback(box)
        assert "bits flipped by hand" in box.readout.value or box.controls["bits"].value == float_bits(1.0, fmt).bits
    for typed in ("", "abc", "1" * (info.bits + 1), "0" * info.bits, "1" * info.bits, "0" + "1" * (info.bits - 1)):
        box.controls["bits"].value = typed
        _no_traceback(box)
    assert "ignored bits 'abc'" not in box.readout.value  # the last pattern was valid and is shown


def test_widget_format_dropdown_offers_every_format_at_every_value():
    from helpers.float_bits import FORMATS

    box = float_bits_widget(0.0, "fp32")
    assert tuple(box.controls["fmt"].options) == FORMATS
    for v in (0.0, 1e30, math.nan, -math.inf):
        box.controls["value"].value = v
        for fmt in FORMATS:
            box.controls["fmt"].value = fmt
            _no_traceback(box)
