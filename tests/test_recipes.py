"""Tests of the capstone bookkeeping (helpers.recipes), its Pareto plot and decision widget."""

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from helpers.measure import serialized_size
from helpers.models import load_digits_cnn
from helpers.nonuniform import nf4_levels
from helpers.recipes import (
    Result,
    affine_codes,
    codebook_codes,
    decision_view,
    format_table,
    packed_state_dict,
    pareto_front,
    recommend,
    timed,
)
from helpers.widgets.recipes import decision_widget


def _rows():
    return [
        Result("m", "fp32", 99.0, 1000, 1.0, 0.0),
        Result("m", "int8", 98.8, 300, 2.0, 0.1),
        Result("m", "int4", 97.0, 150, None, 1.0),
        Result("m", "bad", 96.0, 400, 0.5, 0.1),  # dominated by int8
    ]


def test_pareto_front_drops_dominated_rows():
    assert [r.method for r in pareto_front(_rows())] == ["int4", "int8", "fp32"]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 50), st.integers(0, 50)), min_size=1, max_size=12))
def test_pareto_front_matches_brute_force(points):
    rows = [Result("m", f"r{i}", float(q), s, None, 0.0) for i, (s, q) in enumerate(points)]
    front = {(r.size_bytes, r.quality) for r in pareto_front(rows)}
    for (s, q), (s2, q2) in itertools.product(points, points):
        if s2 <= s and q2 >= q and (s2, q2) != (s, q):
            assert (s, float(q)) not in front
    for s, q in points:
        if not any(s2 <= s and q2 >= q and (s2, q2) != (s, q) for s2, q2 in points):
            assert (s, float(q)) in front


def test_recommend_goals_and_budget():
    rows = _rows()
    assert recommend(rows, max_drop=0.5, goal="size").method == "int8"
    assert recommend(rows, max_drop=2.5, goal="size").method == "int4"
    assert recommend(rows, max_drop=5, goal="speed").method == "int8"
    assert recommend(rows, max_drop=5, goal="quality").method == "int8"
    assert recommend(rows, max_drop=0.1) is None


def test_format_table_hides_timings_unless_asked():
    plain = format_table(_rows(), "acc")
    assert "speed-up" not in plain and "| int8 | 98.8000 |" in plain
    assert "2.00×" in format_table(_rows(), "acc", timings=True)


def test_packed_state_dict_is_smaller_and_honest():
    model = load_digits_cnn()
    full = serialized_size(model)
    int8 = serialized_size(packed_state_dict(model, lambda w: affine_codes(w, 8)))
    int4 = serialized_size(packed_state_dict(model, lambda w: affine_codes(w, 4)))
    nf4 = packed_state_dict(model, lambda w: codebook_codes(w, nf4_levels(), 4, 64, store_levels=False))
    assert int4 < int8 < full
    w = model.features[0].weight
    assert nf4["features.0.weight.q"].numel() == w.numel() // 2 and nf4["features.0.weight.q"].dtype == torch.uint8
    assert "features.0.weight" not in nf4 and "features.1.weight" in nf4  # BN weight kept as is


def test_timed_returns_value_and_seconds():
    value, seconds = timed(lambda: 3)
    assert value == 3 and seconds >= 0


def test_bad_inputs():
    with pytest.raises(ValueError, match="results"):
        pareto_front([])
    with pytest.raises(TypeError, match="results"):
        pareto_front([("not", "a", "row")])
    with pytest.raises(ValueError, match="max_drop"):
        recommend(_rows(), max_drop=-1)
    with pytest.raises(ValueError, match="goal"):
        recommend(_rows(), max_drop=1, goal="cheapest")
    with pytest.raises(ValueError, match="fp32"):
        recommend(_rows()[1:], max_drop=1)
    with pytest.raises(TypeError, match="fn"):
        timed(3)
    with pytest.raises(TypeError, match="model"):
        packed_state_dict("model", lambda w: {})
    with pytest.raises(TypeError, match="pack"):
        packed_state_dict(nn.Linear(2, 2), None)
    with pytest.raises(ValueError, match="bits"):
        affine_codes(torch.randn(4, 4), 1)
    with pytest.raises(TypeError, match="weight"):
        affine_codes(torch.ones(4, 4, dtype=torch.int32), 8)
    with pytest.raises(ValueError, match="bits"):
        codebook_codes(torch.randn(8), nf4_levels(), 3, None, store_levels=False)
    with pytest.raises(ValueError, match="tables"):
        decision_widget({})


def test_decision_widget_redraws():
    box = decision_widget({"m": (_rows(), "acc", 4.0)})
    png, text = box.image.value, box.readout.value
    box.controls["max_drop"].value = 2.5
    assert box.image.value != png and box.readout.value != text and "int4" in box.readout.value
    box.controls["max_drop"].value = 0.0
    assert "no quantized method" in box.readout.value


def test_decision_view_and_every_control_value():
    rows = _rows()
    v = decision_view(rows, max_drop=2.5, goal="size", quality_name="acc")
    assert v["pick"].method == "int4" and [r.method for r in v["front"]] == ["int4", "int8", "fp32"]
    assert v["readout"].startswith("pick: int4  acc")
    assert decision_view(rows, max_drop=0.0)["pick"] is None
    with pytest.raises(ValueError, match="goal"):
        decision_view(rows, max_drop=1.0, goal="cheapest")
    for goal in ("size", "speed", "quality"):  # every stop of the slider (0 .. 4.0 in steps of 0.1), no drawing
        picks = [decision_view(rows, max_drop=k * 0.1, goal=goal)["pick"] for k in range(41)]
        assert picks[0] is None and all(p is not None for p in picks[25:])
    box = decision_widget({"m": (rows, "acc", 4.0), "n": (rows, "acc", 4.0)})
    for model in ("m", "n"):  # drawn: each model x goal at both ends and in the middle of the slider
        box.controls["model"].value = model
        for goal in ("size", "speed", "quality"):
            box.controls["goal"].value = goal
            for drop in (0.0, 2.5, 4.0):
                box.controls["max_drop"].value = drop
                assert ("pick: " in box.readout.value) == (drop > 0)


def test_recommend_can_require_a_real_kernel():
    rows = [r._replace(has_kernel=r.method != "int4") for r in _rows()]
    assert recommend(rows, max_drop=2.5, goal="size").method == "int4"
    assert recommend(rows, max_drop=2.5, goal="size", require_kernel=True).method == "int8"
    with pytest.raises(TypeError, match="require_kernel"):
        recommend(rows, max_drop=1, require_kernel="yes")
