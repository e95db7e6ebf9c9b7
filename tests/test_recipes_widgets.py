"""Lesson 08's decision widget swept over every control: a readable readout, never a traceback."""

import itertools

import pytest

from helpers.recipes import Result, decision_view
from helpers.widgets.recipes import decision_widget


def _cnn():
    se = 0.38
    return [
        Result("cnn", "fp32", 99.33, 170_000, 1.0, 0.0, divergence=0.0, quality_se=se, speed_band=(0.9, 1.1)),
        Result("cnn", "W8", 99.33, 51_000, None, 0.0, has_kernel=False, divergence=9e-6, quality_se=se),
        Result("cnn", "static", 99.11, 49_200, 4.5, 0.1, divergence=1.1e-4, quality_se=0.44, speed_band=(4.0, 4.8)),
        Result("cnn", "NF4", 98.22, 32_000, None, 0.0, has_kernel=False, divergence=1e-3, quality_se=0.62),
        Result("cnn", "ORT fp32", 99.33, 170_100, 1.2, 0.0, speed_band=(1.1, 1.3), fp32=True),
    ]


def _lm():  # no speeds measured, no divergence: the widget still picks and reads out
    return [
        Result("lm", "fp32", 1.0, 90_000_000, None, 0.0),
        Result("lm", "int8", 0.9446, 58_000_000, None, 0.1, quality_se=0.004),
        Result("lm", "nf4", 0.974, 54_000_000, None, 0.2),
    ]


TABLES = {"digits CNN": (_cnn(), "accuracy (%)", 5.0), "MiniLM": (_lm(), "cosine", 0.05)}


def test_every_control_at_both_ends_and_every_option_draws_a_readout():
    box = decision_widget(TABLES)
    slider = box.controls["max_drop"]
    stops = (slider.min, slider.min + slider.step, (slider.min + slider.max) / 2, slider.max)
    seen = set()
    for model, goal, real in itertools.product(
        box.controls["model"].options, box.controls["goal"].options, (False, True)
    ):
        box.controls["model"].value = model
        box.controls["goal"].value = goal
        box.controls["real_kernel"].value = real
        for drop in stops:
            box.controls["max_drop"].value = drop
            assert box.last_error is None, (model, goal, real, drop, box.last_error)
            text = box.readout.value
            assert "Traceback" not in text and ("pick: " in text or "no quantized method" in text)
            seen.add(text)
    assert len(seen) > 4  # the controls change what is read out


def test_every_slider_stop_without_drawing():
    box = decision_widget(TABLES)
    slider = box.controls["max_drop"]
    n = round((slider.max - slider.min) / slider.step)
    for (rows, qname, _), goal, real in itertools.product(TABLES.values(), ("size", "speed", "quality"), (False, True)):
        for k in range(n + 1):
            v = decision_view(
                rows, max_drop=slider.min + k * slider.step, goal=goal, quality_name=qname, require_kernel=real
            )
            assert isinstance(v["readout"], str) and v["readout"]
            if v["pick"] is not None:
                assert not v["pick"].fp32 and v["pick"].method != "fp32"
                assert not real or v["pick"].has_kernel


def test_real_kernel_only_changes_the_pick():
    box = decision_widget({"digits CNN": (_cnn(), "accuracy (%)", 5.0)})
    box.controls["max_drop"].value = 0.5
    box.controls["goal"].value = "size"
    assert "pick: static" in box.readout.value
    box.controls["goal"].value = "quality"
    assert "pick: W8" in box.readout.value and "decided by divergence" in box.readout.value
    box.controls["real_kernel"].value = True
    assert "pick: static" in box.readout.value


def test_data_without_a_baseline_shows_a_message_not_a_traceback():
    box = decision_widget({"ok": (_cnn(), "acc", 5.0), "no fp32": (_cnn()[1:], "acc", 5.0)})
    box.controls["model"].value = "no fp32"
    assert box.last_error is not None and "fp32" in box.readout.value and "cannot be drawn" in box.readout.value
    box.controls["model"].value = "ok"
    assert box.last_error is None


@pytest.mark.parametrize(
    "tables, err, match",
    [
        ({}, ValueError, "tables"),
        ({"m": (_cnn(), "acc")}, TypeError, "tuple"),
        ({"m": ([], "acc", 1.0)}, ValueError, "results"),
        ({"m": (["row"], "acc", 1.0)}, TypeError, "Result"),
        ({"m": (_cnn(), 3, 1.0)}, TypeError, "quality_name"),
        ({"m": (_cnn(), "acc", 0.0)}, ValueError, "max_drop_limit"),
        ({"m": (_cnn(), "acc", float("nan"))}, ValueError, "max_drop_limit"),
        ({1: (_cnn(), "acc", 1.0)}, TypeError, "keys"),
    ],
)
def test_bad_tables_are_rejected_by_name(tables, err, match):
    with pytest.raises(err, match=match):
        decision_widget(tables)
