"""The grading plumbing every lesson's exercise checker is built on (helpers.exercises)."""

import torch

from helpers.exercises import close, grade, same


def _cases():
    x = torch.tensor([0.5, 1.5, 2.5, -0.5])
    return [((x,), torch.round(x), "ties")]


def test_missing_stub_is_reported_not_raised(capsys):
    def stub(x):
        raise NotImplementedError

    assert not grade("ex", stub, _cases(), hint="use torch.round")
    assert not grade("ex", None, _cases(), hint="use torch.round")
    out = capsys.readouterr().out
    assert out.count("not written yet") == 2 and "use torch.round" in out


def test_wrong_answer_gets_the_case_hint(capsys):
    def half_up(x):
        return torch.floor(x + 0.5)

    assert not grade("ex", half_up, _cases(), hint="h", hints={"ties": "half to even"})
    out = capsys.readouterr().out
    assert "case 'ties'" in out and "half to even" in out and "expected" in out


def test_learner_exception_is_reported(capsys):
    def broken(x):
        return x.nonexistent()

    assert not grade("ex", broken, _cases(), hint="h")
    assert "raised AttributeError" in capsys.readouterr().out


def test_right_answer_passes(capsys):
    assert grade("ex", torch.round, _cases(), hint="h")
    assert "correct (1 cases)" in capsys.readouterr().out


def test_same_checks_dtype_shape_and_nan():
    a = torch.tensor([1.0, float("nan")])
    assert same(a.clone(), a) is None
    assert "dtype" in same(a.double(), a)
    assert "shape" in same(a[:1], a)
    assert "differ" in same(torch.tensor([2.0, float("nan")]), a)
    assert same(3, 3) is None and same(3, 4) is not None
    assert same(0.1, 0.1) is None and same(0.1 + 1e-12, 0.1) is not None


def test_close_tolerates_only_what_it_says():
    cmp = close(rtol=0, atol=1e-3)
    assert cmp(torch.tensor([1.0005]), torch.tensor([1.0])) is None
    assert cmp(torch.tensor([1.002]), torch.tensor([1.0])) is not None
    assert cmp(1.0005, 1.0) is None and cmp(1.01, 1.0) is not None


def test_quiet_prints_nothing(capsys):
    grade("ex", None, _cases(), hint="h", quiet=True)
    assert capsys.readouterr().out == ""
