"""Tests of the capstone bookkeeping (helpers.recipes), its Pareto plot and decision widget."""

import itertools
import math
import statistics

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
    accuracy_se,
    affine_codes,
    choose,
    codebook_codes,
    decision_view,
    format_table,
    logit_kl,
    mean_and_se,
    ort_embed,
    packed_state_dict,
    pareto_front,
    quality_tie,
    recommend,
    size_tie,
    speed_fields,
    speed_tie,
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
    with pytest.raises(TypeError, match="weight must be a float32 tensor"):
        affine_codes(torch.ones(4, 4, dtype=torch.float64), 8)
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


# ---------------------------------------------------------------- fidelity, spread and ties (issue 14)


def test_logit_kl_matches_torch_kl_div_and_is_zero_on_itself():
    g = torch.Generator().manual_seed(0)
    p, q = torch.randn(50, 10, generator=g), torch.randn(50, 10, generator=g)
    want = torch.nn.functional.kl_div(
        torch.log_softmax(q.double(), 1), torch.log_softmax(p.double(), 1), log_target=True, reduction="batchmean"
    )
    assert logit_kl(p, q) == pytest.approx(float(want), rel=1e-12)
    assert logit_kl(p, p) == 0.0
    assert logit_kl(p.double(), p.double() + 3.0) == pytest.approx(0.0, abs=1e-15)  # a shift keeps the softmax
    assert logit_kl(p.half(), q.half()) == pytest.approx(logit_kl(p.half().float(), q.half().float()), rel=1e-12)
    with pytest.raises(ValueError, match="shape"):
        logit_kl(p, q[:, :5])
    with pytest.raises(ValueError, match="shape"):
        logit_kl(p[0], q[0])
    with pytest.raises(TypeError, match="logits"):
        logit_kl(p, q.long())
    with pytest.raises(ValueError, match="ref_logits"):
        logit_kl(torch.full((2, 3), float("nan")), q[:2, :3])


def test_mean_and_se_and_accuracy_se():
    v = torch.tensor([0.9, 1.0, 0.95, 0.97])
    mean, se = mean_and_se(v)
    assert mean == pytest.approx(statistics.mean(v.double().tolist()), rel=1e-12)
    assert se == pytest.approx(statistics.stdev(v.double().tolist()) / 2, rel=1e-12)
    assert mean_and_se(torch.tensor([0.5])) == (0.5, 0.0)
    assert accuracy_se(99.33, 450) == pytest.approx(100 * math.sqrt(0.9933 * 0.0067 / 450))
    assert accuracy_se(100.0, 450) == 0.0
    with pytest.raises(ValueError, match="accuracy"):
        accuracy_se(101.0, 10)
    with pytest.raises(ValueError, match="n"):
        accuracy_se(50.0, 0)
    with pytest.raises(TypeError, match="values"):
        mean_and_se([1.0, 2.0])


def test_speed_fields_ratios_and_band():
    f = speed_fields(5.0, 4.0, 8.0, best_fp32_ms=10.0, eager_ms=30.0)
    assert f == {"speedup": 2.0, "speedup_eager": 6.0, "speed_band": (1.25, 2.5)}
    with pytest.raises(ValueError, match="min_ms <= median_ms <= p90_ms"):
        speed_fields(5.0, 6.0, 8.0, best_fp32_ms=10.0, eager_ms=30.0)
    with pytest.raises(ValueError, match="best_fp32_ms"):
        speed_fields(5.0, 4.0, 8.0, best_fp32_ms=0.0, eager_ms=30.0)
    with pytest.raises(ValueError, match="eager_ms"):
        speed_fields(5.0, 4.0, 8.0, best_fp32_ms=1.0, eager_ms=float("inf"))


def _row(method, quality, size, speed=None, *, se=0.0, div=None, band=None, kernel=True, fp32=False):
    return Result(
        "m",
        method,
        quality,
        size,
        speed,
        0.0,
        has_kernel=kernel,
        divergence=div,
        quality_se=se,
        speed_band=band,
        fp32=fp32,
    )


def test_tie_rules():
    a, b, c = _row("a", 99.33, 1000), _row("b", 99.11, 1010), _row("c", 99.11, 1011)
    assert size_tie(a, b) and not size_tie(a, c) and size_tie(a, c, size_rel=0.02)
    assert not quality_tie(a, b)  # no spread measured: only equal qualities tie
    assert quality_tie(a._replace(quality_se=0.2), b._replace(quality_se=0.2))  # 0.22 <= 0.28
    assert not quality_tie(a._replace(quality_se=0.1), b._replace(quality_se=0.1))  # 0.22 > 0.14
    fast, slow = _row("f", 1, 1, 2.0, band=(1.5, 2.4)), _row("s", 1, 1, 1.4, band=(1.2, 1.5))
    assert speed_tie(fast, slow) and not speed_tie(fast, slow._replace(speed_band=(1.2, 1.49)))
    assert not speed_tie(_row("x", 1, 1, 2.0), _row("y", 1, 1, 1.9)) and speed_tie(
        _row("x", 1, 1, 2.0), _row("y", 1, 1, 2.0)
    )
    with pytest.raises(ValueError, match="size_rel"):
        size_tie(a, b, size_rel=1.0)


def _cnn_like():
    # six recipes at one accuracy (as the digits CNN's 450 test images give): the divergence decides
    base = [_row("fp32", 99.33, 170_000, 1.0, se=0.38, div=0.0, band=(0.9, 1.1))]
    return base + [
        _row("w8", 99.33, 51_000, None, se=0.38, div=9.0e-6, kernel=False),
        _row("static pt", 99.11, 49_200, 4.5, se=0.44, div=1.1e-4, band=(4.0, 4.8)),
        _row("static pc", 99.33, 49_500, 4.3, se=0.38, div=5.6e-5, band=(4.1, 4.6)),
        _row("qat", 99.33, 49_400, None, se=0.38, div=2.8e-3, kernel=False),
        _row("nf4", 98.22, 32_000, None, se=0.62, div=1e-3, kernel=False),
        _row("ort fp32", 99.33, 170_100, 1.2, se=0.38, div=0.0, band=(1.1, 1.3), fp32=True),
    ]


def test_choose_breaks_ties_with_the_next_criterion():
    rows = _cnn_like()
    # size: w8, static pt, static pc and qat within 1 % of the smallest (nf4 is out of budget);
    # they tie on accuracy within its standard error; the KL divergence decides.
    pick, reason = choose(rows, max_drop=1.0, goal="size")
    assert (
        pick.method == "static pc"
        and reason == "3 tie on size within 1 %; 3 tie on quality within its spread; decided by divergence"
    )
    pick, reason = choose(rows, max_drop=1.0, goal="quality")
    assert pick.method == "w8" and reason.startswith("4 tie on quality within its spread; decided by divergence")
    assert recommend(rows, max_drop=1.0, goal="quality", require_kernel=True).method == "static pc"
    # speed: the two static models' spreads overlap -> quality (tie) -> divergence
    pick, reason = choose(rows, max_drop=1.0, goal="speed")
    assert pick.method == "static pc" and reason.startswith("2 tie on speed within its measured spread")
    assert recommend(rows, max_drop=1.0, goal="size", size_rel=0.0).method == "static pt"
    # an fp32 peer (another runtime) is never the recipe, however fast
    fast_fp32 = [r._replace(speedup=9.0, speed_band=(8.0, 10.0)) if r.fp32 else r for r in rows]
    assert recommend(fast_fp32, max_drop=1.0, goal="speed").method != "ort fp32"
    # the divergence only decides when every tied row measured it
    partial = [r._replace(divergence=None) if r.method == "static pt" else r for r in rows]
    assert choose(partial, max_drop=1.0, goal="size")[1] == (
        "3 tie on size within 1 %; 3 tie on quality within its spread; divergence not measured for every tied row; "
        "2 tie on speed within its measured spread; decided by table order"
    )
    assert choose(partial, max_drop=1.0, goal="size")[0].method == "static pt"
    unmeasured = [r._replace(speedup=None, speed_band=None) for r in rows]
    assert choose(unmeasured, max_drop=1.0, goal="speed") == choose(unmeasured, max_drop=1.0, goal="quality")[:1] + (
        "speed not measured; 4 tie on quality within its spread; decided by divergence",
    )
    assert choose([rows[0], rows[5]], max_drop=1.0) == (None, "no quantized row within a drop of 1")


def test_choose_without_any_spread_is_the_plain_ranking():
    rows = _rows()  # no spreads, no divergences: every tie rule is exact equality
    for drop in (0.5, 2.5, 5.0):
        for goal in ("size", "speed", "quality"):
            ok = [r for r in rows if r.method != "fp32" and rows[0].quality - r.quality <= drop]
            want = {
                "size": min(ok, key=lambda r: r.size_bytes),
                "quality": max(ok, key=lambda r: r.quality),
                "speed": max(ok, key=lambda r: r.speedup or 0.0),
            }[goal]
            assert recommend(rows, max_drop=drop, goal=goal) == want


def test_format_table_spread_divergence_and_speed_columns():
    rows = _cnn_like()
    plain = format_table(rows, "acc", quality_fmt="{:.2f}")
    assert "| static pc | 99.33 ± 0.38 | 5.6e-05 | 0.05 | 3.43 |" in plain and "vs best fp32" not in plain
    tiny = format_table([rows[0], rows[1]._replace(quality=0.9997, quality_se=2.4e-5)], "cos")
    assert "| 0.9997 ± 2e-05 |" in tiny
    timed_rows = [rows[3]._replace(speedup_eager=5.0)]
    text = format_table([rows[0]] + timed_rows, "acc", timings=True, quality_fmt="{:.2f}")
    assert "| 4.30× (4.10–4.60) | 5.00× |" in text


def test_ort_embed_bad_inputs():
    with pytest.raises(TypeError, match="session"):
        ort_embed(object(), None, ["a"])


# Exercises of 08_recipes: the reference solutions pass, the classic wrong answers are rejected.


def _solution_front(points):
    keep = [
        p
        for i, p in enumerate(points)
        if not any(
            q[0] <= p[0] and q[1] >= p[1] and (q[0] < p[0] or q[1] > p[1]) for j, q in enumerate(points) if j != i
        )
    ]
    return sorted(keep)


def _front_with(dominates, order=sorted):
    def fn(points):
        keep = [p for i, p in enumerate(points) if not any(dominates(q, p) for j, q in enumerate(points) if j != i)]
        return order(keep)

    return fn


def test_check_front_accepts_the_solution_and_reports_a_stub(capsys):
    from helpers.recipes import check_front

    assert check_front(_solution_front)

    def stub(points):
        raise NotImplementedError

    assert not check_front(stub)
    assert "not written yet" in capsys.readouterr().out


@pytest.mark.parametrize(
    "wrong",
    [
        # strict on both coordinates: keeps a point dominated at equal size (or equal quality)
        _front_with(lambda q, p: q[0] < p[0] and q[1] > p[1]),
        # non-strict on both: two identical points drop each other
        _front_with(lambda q, p: q[0] <= p[0] and q[1] >= p[1]),
        # a set: identical points collapse to one
        lambda points: sorted(set(_solution_front(points))),
        # sorted by quality, best first
        _front_with(
            lambda q, p: q[0] <= p[0] and q[1] >= p[1] and q != p, order=lambda k: sorted(k, key=lambda p: -p[1])
        ),
        # not sorted at all
        _front_with(lambda q, p: q[0] <= p[0] and q[1] >= p[1] and q != p, order=list),
        # smaller quality taken as better
        _front_with(lambda q, p: q[0] <= p[0] and q[1] <= p[1] and q != p),
        # every point
        lambda points: sorted(points),
    ],
    ids=["strict", "non-strict", "set", "by-quality", "unsorted", "low-quality-better", "all-points"],
)
def test_check_front_rejects_classic_wrong_answers(wrong):
    from helpers.recipes import check_front

    assert not check_front(wrong, quiet=True)


def _budget_rows():
    return [
        Result("m", "fp32", 1.0, 1000, 1.0, 0.0),
        Result("m", "int8 weights", 0.9995, 300, 1.2, 0.1),
        Result("m", "int8 dynamic", 0.9980, 280, 2.0, 0.1),
        Result("m", "int4", 0.9950, 150, None, 1.0),
    ]


def test_check_budget_pick_uses_recommend_on_the_rows(capsys):
    from helpers.recipes import check_budget_pick

    rows = _budget_rows()
    assert recommend(rows, max_drop=0.001, goal="size").method == "int8 weights"
    assert check_budget_pick("int8 weights", rows)
    assert not check_budget_pick(None, rows)
    assert "not written yet" in capsys.readouterr().out
    # the 0.01-budget pick, the smallest row, the fastest row, fp32 itself, a non-string
    for wrong in ["int4", "int8 dynamic", "fp32", 1]:
        assert not check_budget_pick(wrong, rows, quiet=True)
    # no quantized row within 0.001: the answer is "none"
    tight = [rows[0], rows[3]]
    assert check_budget_pick("none", tight, quiet=True)
    assert not check_budget_pick("int4", tight, quiet=True)
