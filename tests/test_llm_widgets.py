"""Widget tests for helpers.widgets.llm: every control swept to both ends and every option redraws."""

from __future__ import annotations

import pytest
import torch

from helpers.llm import LAYER_VIEW_METHODS
from helpers.widgets.llm import layer_widget

torch.set_num_threads(2)


def _layer(rows: int = 24, cols: int = 192):
    g = torch.Generator().manual_seed(0)
    w = torch.randn(rows, cols, generator=g) * 0.05
    x = torch.randn(96, cols, generator=g)
    x[:, :3] *= 30.0  # outlier channels, as in the real layer
    return w, x


@pytest.fixture(scope="module")
def box():
    w, x = _layer()
    return layer_widget(w, x, method="rtn", bits=3, group_size=64, alpha=0.5)


def _check_redraw(box, name, value):
    before = box.redraws
    box.controls[name].value = value
    assert box.redraws == before + 1
    assert box.image.value[:8] == b"\x89PNG\r\n\x1a\n"
    assert "relative output error" in box.readout.value
    assert box.last_values[name] == value


@pytest.mark.parametrize("method", LAYER_VIEW_METHODS)
def test_every_method(box, method):
    box.controls["method"].value = "rtn" if method != "rtn" else "gptq"
    _check_redraw(box, "method", method)


@pytest.mark.parametrize("method", ["rtn", "awq", "smoothquant"])
def test_sliders_to_both_ends(box, method):
    box.controls["method"].value = method
    for name in ("bits", "alpha"):
        ctrl = box.controls[name]
        for value in (ctrl.max, ctrl.min):
            if ctrl.value == value:
                ctrl.value = ctrl.min if value == ctrl.max else ctrl.max
            _check_redraw(box, name, value)


def test_every_group_size(box):
    box.controls["method"].value = "gptq"
    for g in box.controls["group_size"].options:
        if box.controls["group_size"].value == g:
            continue
        _check_redraw(box, "group_size", g)


def test_alpha_changes_awq_but_not_rtn():
    w, x = _layer()
    b = layer_widget(w, x, method="awq", alpha=0.0)
    first = b.readout.value
    b.controls["alpha"].value = 0.6
    assert b.readout.value != first
    b.controls["method"].value = "rtn"
    assert "alpha not used" in b.readout.value


def test_layer_widget_bad_input():
    w, x = _layer()
    with pytest.raises(ValueError, match="method must be one of"):
        layer_widget(w, x, method="nope")
    with pytest.raises(ValueError, match="bits"):
        layer_widget(w, x, bits=9)
    with pytest.raises(ValueError, match="group_size must be one of"):
        layer_widget(w, x, group_size=128)
    with pytest.raises(ValueError, match="alpha"):
        layer_widget(w, x, alpha=1.5)
    with pytest.raises(ValueError, match="columns"):
        layer_widget(w, x[:, :100])
    with pytest.raises(TypeError, match="2-d weight"):
        layer_widget(w.numpy(), x)
