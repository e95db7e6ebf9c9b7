"""Observers of lesson 05: cross-checks with torch.ao's observers, properties, bad input."""

import copy
import warnings

import numpy as np
import pytest
import torch
import torch.ao.quantization as tq
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from helpers.affine import affine_qparams, fake_quantize, qrange
from helpers.observers import (
    METHODS,
    RangeObserver,
    activation_stats,
    batch_mode_range,
    collect_activations,
    histogram_range,
    kl_range,
    minmax_range,
    moving_average_range,
    mse_range,
    observer_qparams,
    observer_range,
    percentile_range,
)

warnings.filterwarnings("ignore", category=DeprecationWarning)


def _data(kind: str, n: int = 4000, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, generator=g)
    if kind == "relu":
        return x.clamp(min=0)
    if kind == "heavy":
        return x * torch.exp(torch.randn(n, generator=g))
    return x


@pytest.mark.parametrize("kind", ["relu", "normal", "heavy"])
def test_minmax_matches_torch(kind):
    x = _data(kind)
    obs = tq.MinMaxObserver()
    obs(x)
    s, z = obs.calculate_qparams()
    s2, z2 = observer_qparams("minmax", x)
    assert torch.equal(s.reshape(()), s2) and int(z) == int(z2)


@pytest.mark.parametrize("c", [0.01, 0.3])
def test_moving_average_matches_torch(c):
    batches = [b * (1 + i) for i, b in enumerate(torch.randn(6, 300).unbind(0))]
    obs = tq.MovingAverageMinMaxObserver(averaging_constant=c)
    for b in batches:
        obs(b)
    lo, hi = moving_average_range(batches, c)
    assert torch.equal(lo, obs.min_val) and torch.equal(hi, obs.max_val)
    s, z = obs.calculate_qparams()
    s2, z2 = affine_qparams(lo, hi, 8, signed=False)
    assert torch.equal(s.reshape(()), s2) and int(z) == int(z2)


@pytest.mark.parametrize("kind", ["relu", "normal", "heavy"])
@pytest.mark.parametrize("reduce_range", [False, True])
def test_histogram_matches_torch_single_batch(kind, reduce_range):
    # torch merges batches by re-binning (an approximation); with one batch the algorithms coincide exactly
    x = _data(kind, 20000)
    obs = tq.HistogramObserver(reduce_range=reduce_range)
    obs(x)
    s, z = obs.calculate_qparams()
    lo, hi = histogram_range(x)
    s2, z2 = affine_qparams(lo, hi, 7 if reduce_range else 8, signed=False)
    assert torch.equal(s.reshape(()), s2) and int(z) == int(z2)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from(["relu", "normal", "heavy"]))
def test_percentile_100_is_minmax(seed, kind):
    x = _data(kind, 500, seed)
    lo, hi = percentile_range(x, 100.0)
    lo2, hi2 = minmax_range(x)
    assert torch.equal(lo, lo2) and torch.equal(hi, hi2)


def test_percentile_matches_torch_quantile():
    x = _data("heavy", 3001)
    lo, hi = percentile_range(x, 99.0)
    assert torch.allclose(hi, torch.quantile(x, 0.99)) and torch.allclose(lo, torch.quantile(x, 0.01))


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from(["relu", "normal", "heavy"]), st.integers(2, 8))
def test_mse_never_worse_than_minmax(seed, kind, bits):
    x = _data(kind, 2000, seed)
    qmin, qmax = qrange(bits, signed=False)

    def err(lo, hi):
        s, z = affine_qparams(lo, hi, bits, signed=False)
        return float(((fake_quantize(x, s, z, qmin, qmax) - x).double() ** 2).mean())

    assert err(*mse_range(x, bits)) <= err(*minmax_range(x)) * (1 + 1e-6)


def _kl_reference(x: torch.Tensor, bits: int = 8, bins: int = 2048, stride: int = 1) -> tuple[float, int]:
    """TensorRT's entropy calibration written as the plain loop of NVIDIA's pytorch-quantization
    (``_compute_amax_entropy``), in NumPy float64: zero bin := its neighbour, every cut ``i``, fractional
    merging into the levels, expansion over non-empty bins, last minimum. Returns ``(threshold, cut)``."""
    a = x.detach().reshape(-1).double().abs().numpy()
    amax = float(a.max())
    idx = np.minimum(np.floor(a * (bins / amax)).astype(np.int64), bins - 1)
    hist = np.bincount(idx, minlength=bins).astype(np.float64)
    hist[0] = hist[1]
    levels = 2**bits if float(x.min()) >= 0 else 2 ** (bits - 1)
    divergences = []
    for i in range(levels, bins + 1, stride):
        level = (np.arange(i) * levels) // i  # the bin's quantization level (linspace(0, i, levels + 1) + digitize)
        level[hist[:i] == 0] = -1
        mass = np.zeros(levels)
        count = np.zeros(levels)
        for j in range(i):
            if level[j] != -1:
                mass[level[j]] += hist[j]
                count[level[j]] += 1
        q = np.array([mass[v] / count[v] if v != -1 else 0.0 for v in level])
        p = hist[:i].copy()
        p[-1] += hist[i:].sum()
        if q.sum() == 0 or np.any((p > 0) & (q == 0)):  # mass where Q has none: infinite divergence
            divergences.append(np.inf)
            continue
        p, q = p / p.sum(), q / q.sum()
        m = p > 0
        divergences.append(float(np.sum(p[m] * np.log(p[m] / q[m]))))
    d = np.array(divergences)
    cut = levels + stride * (len(d) - 1 - int(np.argmin(d[::-1])))
    return amax * cut / bins, cut


def _heavy_tailed() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(5)
    u = torch.rand(60_000, generator=g).clamp(1e-7, 1 - 1e-7)
    laplace = -torch.sign(u - 0.5) * torch.log1p(-2 * (u - 0.5).abs())
    t3 = torch.randn(60_000, generator=g) / torch.sqrt((torch.randn(3, 60_000, generator=g) ** 2).mean(0))
    return {
        "laplace": laplace,
        "laplace_relu": laplace.clamp(min=0),
        "student_t3": t3,
        "student_t3_relu": t3.clamp(min=0),
    }


@pytest.fixture(scope="module")
def digits_acts():
    from helpers.data import load_digits_split
    from helpers.models import load_digits_cnn
    from helpers.static import DIGITS_OBSERVED, fused_digits_cnn

    d = load_digits_split()
    acts = collect_activations(fused_digits_cnn(load_digits_cnn()), d.x_train[:128], DIGITS_OBSERVED, batch_size=64)
    return {n: torch.cat([b.reshape(-1) for b in acts[n]]) for n in DIGITS_OBSERVED}


def _check_against_reference(x: torch.Tensor, bits: int) -> None:
    ref_t, ref_cut = _kl_reference(x, bits)
    lo, hi = kl_range(x, bits, stride=1)
    width = float(x.abs().max()) / 2048
    assert abs(float(hi) - ref_t) <= 1e-6 * ref_t  # the same cut: bin-exact, not just within one bin
    assert round(float(hi) / width) == ref_cut
    assert float(lo) == (0.0 if float(x.min()) >= 0 else -float(hi))


@pytest.mark.parametrize("bits", [8, 7])
def test_kl_matches_reference_loop_on_digits_cnn(digits_acts, bits):
    for x in digits_acts.values():
        _check_against_reference(x, bits)


@pytest.mark.parametrize("kind", ["laplace", "laplace_relu", "student_t3", "student_t3_relu"])
def test_kl_matches_reference_loop_on_heavy_tails(kind):
    _check_against_reference(_heavy_tailed()[kind], 8)


def test_kl_not_stuck_at_the_old_integer_grouping_cut(digits_acts):
    # the old integer grouping merged the zero spike with its neighbour and cut every post-ReLU layer at 508.5/2048
    for name, x in digits_acts.items():
        _, hi = kl_range(x)
        assert abs(float(hi) / float(x.abs().max()) * 2048 - 508.5) > 1, name


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from(list(_heavy_tailed())), st.integers(2, 8))
def test_kl_threshold_within_max_and_not_degenerate(seed, kind, bits):
    x = _heavy_tailed()[kind][torch.randperm(60_000, generator=torch.Generator().manual_seed(seed))[:5000]]
    lo, hi = kl_range(x, bits)
    amax = float(x.abs().max())
    levels = 2**bits if float(x.min()) >= 0 else 2 ** (bits - 1)
    assert 0 < float(hi) <= amax
    assert float(hi) >= amax * levels / 2048 * (1 - 1e-6)  # never below the narrowest candidate cut
    assert float(lo) == (0.0 if float(x.min()) >= 0 else -float(hi))


def test_kl_ignores_extra_exact_zeros():
    # exact zeros are never a quantization error: piling more of them on a post-ReLU layer leaves the cut alone
    x = _heavy_tailed()["laplace_relu"]
    _, h = kl_range(x)
    for k in (1, 10, 100):
        _, hz = kl_range(torch.cat([x, torch.zeros(k * x.numel())]))
        assert float(hz) == float(h)
    assert 0 < float(h) <= float(x.max())


def test_kl_clips_heavy_tails_and_keeps_sign():
    x = _data("heavy", 20000)
    lo, hi = kl_range(x)
    assert float(lo) == -float(hi) and 0 < float(hi) < float(x.abs().max())
    lo, hi = kl_range(_data("relu", 20000))
    assert float(lo) == 0.0 and float(hi) > 0


def test_kl_degenerate_inputs():
    lo, hi = kl_range(torch.zeros(100))
    assert float(lo) == 0.0 and float(hi) == 0.0
    lo, hi = kl_range(torch.tensor([0.0, 2.0]))  # a single non-zero value: nothing to clip
    assert float(lo) == 0.0 and float(hi) == 2.0
    lo, hi = kl_range(torch.tensor([-3.0, 1.0]), bins=128)  # bins <= levels: the max is the threshold
    assert float(lo) == -3.0 and float(hi) == 3.0


def test_kl_stride_scores_every_stride_th_cut():
    # stride=4 (the default) is the same search over cuts levels, levels + 4, ...: bin-exact against the loop
    x = _data("relu", 20000)
    ref_t, ref_cut = _kl_reference(x, 8, stride=4)
    _, h4 = kl_range(x, stride=4)
    assert (ref_cut - 256) % 4 == 0 and abs(float(h4) - ref_t) <= 1e-6 * ref_t


def test_batch_mode_picks_the_commonest_scale():
    batches = [torch.tensor([0.0, 1.0])] * 5 + [torch.tensor([0.0, 10.0])] * 2
    lo, hi = batch_mode_range(batches)
    assert float(lo) == 0.0 and float(hi) == 1.0
    single = torch.tensor([-1.0, 3.0])
    assert [float(v) for v in batch_mode_range(single)] == [-1.0, 3.0]


@pytest.mark.parametrize("method", METHODS)
def test_every_method_gives_a_valid_range(method):
    batches = list(_data("relu", 4000).reshape(8, -1).unbind(0))
    lo, hi = observer_range(method, batches)
    assert float(lo) <= float(hi)
    s, z = observer_qparams(method, batches, 8)
    assert float(s) > 0 and 0 <= int(z) <= 255


def test_collect_activations_hooks_and_cleanup():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    x = torch.randn(10, 4)
    acts = collect_activations(model, x, ["0", "1"], batch_size=4)
    assert [b.shape[0] for b in acts["1"]] == [4, 4, 2]
    assert torch.allclose(torch.cat(acts["1"]), torch.relu(model[0](x)))
    assert all(not m._forward_hooks for m in model.modules())
    stats = activation_stats(acts)
    assert stats["1"]["min"] >= 0 and 0 <= stats["1"]["zeros"] <= 1


def test_collect_activations_float64_forward_rounded_to_float32():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 3))
    x = torch.randn(32, 64)
    acts = collect_activations(model, x, ["0", "2"], batch_size=8)  # default: float64 forward
    with torch.no_grad():
        ref = copy.deepcopy(model).double()(x.double()).float()
    assert all(b.dtype == torch.float32 for b in acts["2"])
    assert torch.equal(torch.cat(acts["2"]), ref)  # the correctly rounded fp32 outputs
    assert next(model.parameters()).dtype == torch.float32  # the model itself is untouched
    raw = collect_activations(model, x, ["2"], batch_size=8, dtype=None)  # the model's own fp32 forward
    with torch.no_grad():
        assert torch.equal(torch.cat(raw["2"]), torch.cat([model(x[i : i + 8]) for i in range(0, 32, 8)]))
    with pytest.raises(TypeError, match="dtype"):
        collect_activations(model, x, ["2"], dtype=torch.int64)


@pytest.mark.parametrize("method", METHODS)
def test_ranges_do_not_depend_on_value_order(method):
    # reductions in float64 (histogram search, KL, batch means): shuffling the values inside one batch changes the
    # float32 summation order but not the range
    x = _data("relu", 20000, seed=3)
    perm = torch.randperm(x.numel(), generator=torch.Generator().manual_seed(1))
    if method in ("moving_average", "batch_mode", "mse"):  # batch-wise / strided-sample methods: permute within batches
        batches = list(x.reshape(8, -1))
        shuffled = [
            b[torch.randperm(b.numel(), generator=torch.Generator().manual_seed(i))] for i, b in enumerate(batches)
        ]
        if method == "mse":
            batches, shuffled = [x], [x]  # mse scores a fixed strided subsample: order is part of its definition
    else:
        batches, shuffled = [x], [x[perm]]
    a = observer_range(method, batches, 7)
    b = observer_range(method, shuffled, 7)
    assert float(a[0]) == float(b[0]) and float(a[1]) == float(b[1])


def test_range_observer_drives_torch_convert():
    obs = RangeObserver(x_min=0.0, x_max=2.55, quant_min=0, quant_max=255)
    s, z = obs.calculate_qparams()
    assert abs(float(s) - 0.01) < 1e-7 and int(z) == 0


# ---- bad input -------------------------------------------------------------------------------------


def test_no_calibration_data():
    with pytest.raises(ValueError, match="x must hold at least one calibration batch"):
        minmax_range([])
    with pytest.raises(ValueError, match="batches"):
        moving_average_range([])
    with pytest.raises(ValueError, match="batches"):
        batch_mode_range([])


@pytest.mark.parametrize("method", METHODS)
def test_nan_and_empty_rejected(method):
    with pytest.raises(ValueError, match="finite"):
        observer_range(method, torch.tensor([0.0, float("nan")]))
    with pytest.raises(ValueError, match="non-empty"):
        observer_range(method, torch.empty(0))
    with pytest.raises(TypeError, match="floating-point"):
        observer_range(method, torch.arange(4))


def test_bad_arguments():
    x = _data("relu", 100)
    with pytest.raises(ValueError, match="method"):
        observer_range("median", x)
    with pytest.raises(ValueError, match="percentile"):
        percentile_range(x, 101)
    with pytest.raises(ValueError, match="averaging_constant"):
        moving_average_range([x], 0.0)
    with pytest.raises(ValueError, match="bits"):
        mse_range(x, 0)
    with pytest.raises(ValueError, match="n_grid"):
        mse_range(x, 8, n_grid=0)
    with pytest.raises(ValueError, match="bins"):
        histogram_range(x, bins=1)
    with pytest.raises(ValueError, match="stride"):
        kl_range(x, stride=0)
    with pytest.raises(ValueError, match="stride"):
        kl_range(x, stride=4096)
    with pytest.raises(ValueError, match="bins"):
        kl_range(x, bins=8)
    with pytest.raises(ValueError, match="bits"):
        kl_range(x, bits=1)
    with pytest.raises(ValueError, match="bits"):
        kl_range(x, bits=13)
    with pytest.raises(ValueError, match="finite"):
        kl_range(torch.tensor([1.0, float("inf")]))
    with pytest.raises(TypeError, match="floating-point"):
        kl_range(torch.arange(4))
    with pytest.raises(ValueError, match="significant"):
        batch_mode_range([x], significant=0)
    with pytest.raises(TypeError, match="x must be a tensor or a list"):
        minmax_range("x")
    with pytest.raises(ValueError, match="x_min"):
        RangeObserver(x_min=1.0, x_max=0.0)
    with pytest.raises(ValueError, match="acts"):
        activation_stats({})


def test_collect_activations_bad_input():
    model = nn.Sequential(nn.Linear(4, 4))
    with pytest.raises(ValueError, match="names"):
        collect_activations(model, torch.randn(2, 4), ["nope"])
    with pytest.raises(ValueError, match="names"):
        collect_activations(model, torch.randn(2, 4), [])
    with pytest.raises(ValueError, match="x"):
        collect_activations(model, torch.empty(0, 4), ["0"])
    with pytest.raises(TypeError, match="model"):
        collect_activations("model", torch.randn(2, 4), ["0"])
    bad = nn.Sequential(nn.Linear(4, 4))
    with torch.no_grad():
        bad[0].weight.fill_(float("inf"))
    with pytest.raises(ValueError, match="NaN or inf"):
        collect_activations(bad, torch.randn(2, 4), ["0"])
    assert not bad[0]._forward_hooks


# ----------------------------------------------------------------------------- cross-check: NVIDIA ModelOpt


def _modelopt_entropy():
    """NVIDIA ModelOpt's ``_compute_amax_entropy`` (nvidia-modelopt, pinned in requirements-nodeps.txt).

    The package's ``__init__`` chain imports omegaconf, pydantic and more that the course does not
    install, so the one function is compiled from the installed ``calib/histogram.py`` and run with
    the names it uses (NumPy, torch, ``Counter``, ``scipy.stats.entropy``). Nothing of it is copied
    into the course: the test calls the installed code as written.
    """
    import ast
    import importlib.util
    import pathlib
    from collections import Counter

    from scipy.stats import entropy

    spec = importlib.util.find_spec("modelopt")
    assert spec is not None, "nvidia-modelopt is missing: pip install --no-deps -r requirements-nodeps.txt"
    path = pathlib.Path(spec.submodule_search_locations[0]) / "torch" / "quantization" / "calib" / "histogram.py"
    tree = ast.parse(path.read_text())
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "_compute_amax_entropy")
    namespace = {"np": np, "torch": torch, "Counter": Counter, "entropy": entropy}
    exec(compile(ast.Module([fn], type_ignores=[]), str(path), "exec"), namespace)
    return namespace["_compute_amax_entropy"]


def _modelopt_threshold(x: torch.Tensor, bits: int, stride: int, bins: int = 2048) -> tuple[float, np.ndarray]:
    """ModelOpt's threshold on ``x``: its own histogram (``histc`` of ``|x|`` over [0, max], as its
    torch collector builds it), ``unsigned`` for non-negative data, the first cut at ``levels``."""
    a = x.detach().reshape(-1).float().abs()
    amax = a.max()
    hist = torch.histc(a, bins=bins, min=0, max=float(amax)).double().numpy()
    edges = torch.linspace(0, float(amax), bins + 1).numpy()
    unsigned = bool(x.min() >= 0)
    levels = 2**bits if unsigned else 2 ** (bits - 1)
    amax_mo = _modelopt_entropy()(hist.copy(), edges, bits, unsigned, stride, levels)
    return float(amax_mo), hist


@pytest.mark.parametrize(
    "bits, stride, kinds",
    [
        (8, 4, None),  # every observed layer of the digits CNN and every heavy-tailed set, the lesson's setting
        (7, 4, ("quant", "module.features.0", "module.classifier.3", "laplace", "student_t3_relu")),  # 7-bit codes
        (8, 1, ("module.classifier.1", "student_t3")),  # TensorRT's every-cut search
    ],
)
def test_kl_matches_modelopt_within_one_bin(digits_acts, bits, stride, kinds):
    """``kl_range`` against an independent implementation of TensorRT's entropy calibration.

    ModelOpt's ``_compute_amax_entropy`` (NVIDIA's successor of pytorch-quantization) follows the
    same algorithm: zero bin set to its neighbour, fractional merging of the kept bins into the
    levels (``digitize`` against ``linspace(0, i, levels + 1)``), expansion over non-empty bins,
    clipped tail added to P's last bin, last minimum. Started at the same first cut (``levels``; its
    default ``start_bin=128`` would also score cuts narrower than 256 levels at 8 unsigned bits) and
    with the same stride, its threshold is within one histogram bin of ours (equal on every case
    here) on the digits CNN's six observed layers and on Laplace / Student-t(3), signed and post-ReLU.

    One documented exception: the input layer (17 distinct pixel values, on bins 0, 128, 256, ...)
    at 7 bits. Its first cut (128 bins) keeps no data at all (the zero bin takes its neighbour's
    count, 0), so P is all tail and Q is all zeros: ModelOpt's divergence is 0/0 = NaN and
    ``np.argmin`` returns the NaN's position, clipping every pixel to 1/16 of the range. ``kl_range``
    scores an empty Q as infinite and keeps the full range. The test asserts exactly that reason.

    ONNX Runtime's entropy calibrator (``onnxruntime.quantization.calibrate``'s
    ``HistogramCollector.get_entropy_threshold``, 1.32) is a different algorithm, so it is not the
    reference: it histograms signed ``x`` and scores windows of ``2i + 1`` bins centred on the zero
    bin; it has no zero-bin rule; it merges each window into the levels in whole groups of
    ``(2i + 1) // levels`` bins (the integer grouping this module replaced), adds the remainder bins
    to the last level but expands Q back over whole groups only (those remainder bins get Q = 0),
    stores Q as int64 (the expanded values are floored) and smooths P and Q with an epsilon. On
    these layers its threshold differs from TensorRT's by up to 245 of 2048 bins (lesson 05's note).
    """
    data = {**digits_acts, **_heavy_tailed()}
    for name in kinds or data:
        x = data[name]
        width = float(x.abs().max()) / 2048
        ours = float(kl_range(x, bits, stride=stride)[1])
        theirs, hist = _modelopt_threshold(x, bits, stride)
        levels = 2**bits if float(x.min()) >= 0 else 2 ** (bits - 1)
        if name == "quant" and bits == 7:
            h = hist.copy()
            h[0] = h[1]
            assert round(theirs / width) == levels and h[:levels].sum() == 0  # the all-clipped first cut (NaN)
            assert ours == float(x.abs().max())
            continue
        assert abs(ours - theirs) <= width * (1 + 1e-6), (name, ours / width, theirs / width)


@pytest.mark.parametrize("value", [3.0, 0.0, -2.0])
def test_histogram_on_a_constant_tensor_is_fast_and_equals_torch(value):
    """Issue 14: the greedy search used to step through every 1e-5 quantile (about 1 s) on a constant tensor."""
    import time

    x = torch.full((1000,), value)
    t0 = time.perf_counter()
    lo, hi = histogram_range(x)
    elapsed = time.perf_counter() - t0
    assert float(lo) == float(hi) == value
    obs = tq.HistogramObserver()
    obs(x)
    s_ref, z_ref = obs.calculate_qparams()
    s, z = observer_qparams("histogram", x)
    assert torch.equal(s_ref.reshape(()), s) and int(z_ref) == int(z)
    assert elapsed < 0.05  # was ~0.9 s idle, 1.5 s loaded; now one aminmax


def test_batch_scale_counts_tallies_what_batch_mode_picks():
    from helpers.observers import batch_scale_counts

    batches = [torch.tensor([0.0, 2.55])] * 3 + [torch.tensor([0.0, 5.1])] * 2 + [torch.tensor([-1.0, 1.55])]
    counts = batch_scale_counts(batches)  # scales 0.01 (x3), 0.02 (x2), 0.01 (2.55 / 255, x1)
    assert [c for _, c in counts] == [4, 2] and counts[0][0] == pytest.approx(0.01)
    assert sum(c for _, c in counts) == len(batches)
    lo, hi = batch_mode_range(batches)
    assert float(hi) == pytest.approx((2.55 * 3 + 1.55) / 4) and float(lo) == pytest.approx(-1.0 / 4)
    ties = batch_scale_counts([torch.tensor([0.0, 5.1]), torch.tensor([0.0, 2.55])])
    assert [s for s, _ in ties] == pytest.approx([0.01, 0.02])  # a tie lists the smaller scale first
    with pytest.raises(ValueError, match="batches"):
        batch_scale_counts([])
    with pytest.raises(ValueError, match="significant"):
        batch_scale_counts(batches, significant=0)
    with pytest.raises(ValueError):
        batch_scale_counts([torch.tensor([0.0, float("nan")])])
