"""The float-bits figures and widget of 01_float_bits: they draw, redraw on every control, and reject bad input."""

import math

import pytest
import torch
from matplotlib.figure import Figure

from helpers.formats import float_bits
from helpers.plotting.float_bits import (
    draw_bit_boxes,
    draw_float_bits,
    plot_bit_patterns,
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
def test_draw_float_bits_returns_figure_and_readout(value, fmt, bits, expect):
    fig, text = draw_float_bits(value, fmt, bits)
    assert isinstance(fig, Figure)
    assert expect in text


def test_draw_float_bits_reports_the_rounding_error():
    _, text = draw_float_bits(0.1, "fp16")
    rec = float_bits(0.1, "fp16")
    assert f"err = x_hat - x = {rec.value - 0.1:.10g}" in text


def test_static_figures_draw():
    recs = [float_bits(85.125, f) for f in ("fp32", "fp16", "fp8_e4m3")]
    assert isinstance(plot_bit_patterns(recs), Figure)
    assert isinstance(plot_ulp_spacing(), Figure)
    assert isinstance(plot_ulp_spacing(["fp16"], xlim=(1e-3, 1e3), points=50), Figure)
    assert isinstance(plot_magnitudes_vs_range(torch.randn(500) * 0.1, ["fp16", "fp8_e4m3"], title="w"), Figure)


def test_plotting_rejects_bad_input():
    with pytest.raises(ValueError, match="fmt must be one of"):
        draw_float_bits(1.0, "fp64")
    with pytest.raises(TypeError, match="value must be a real number"):
        draw_float_bits("1", "fp16")
    with pytest.raises(TypeError, match="bits must be a str"):
        draw_float_bits(1.0, "fp16", 101)
    with pytest.raises(ValueError, match="records must be a non-empty list"):
        plot_bit_patterns([])
    with pytest.raises(TypeError, match=r"records\[0\] must be a FloatBits"):
        plot_bit_patterns([1.0])
    with pytest.raises(ValueError, match="fmts must be a non-empty list"):
        plot_ulp_spacing("fp16")
    with pytest.raises(ValueError, match="fmts must be one of"):
        plot_ulp_spacing(["fp64"])
    with pytest.raises(ValueError, match="xlim must be a pair"):
        plot_ulp_spacing(["fp16"], xlim=(1.0, 0.5))
    with pytest.raises(TypeError, match="x must be a floating-point tensor"):
        plot_magnitudes_vs_range(torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="fmts must be one of"):
        plot_magnitudes_vs_range(torch.ones(3), ["fp64"])
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
