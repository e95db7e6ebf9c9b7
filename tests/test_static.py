"""Static-quantization helpers of lesson 05: BN folding, fixed-point requantization, integer-only layers."""

import copy
import math
import warnings

import pytest
import torch
import torch.ao.nn.quantized as nnq
import torch.ao.quantization as tq
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from helpers.darknet import DARKNET19_LAYERS, Darknet19, darknet19_fuse_groups
from helpers.static import (
    DIGITS_OBSERVED,
    calibrate_prepared,
    fold_bn,
    fuse_conv_bn,
    fused_digits_cnn,
    int8_conv2d,
    int8_linear,
    integer_forward,
    layer_qparams,
    quantize_digits_cnn,
    quantize_multiplier,
    requantize,
)

warnings.filterwarnings("ignore", category=DeprecationWarning)


def _bn(c: int, seed: int = 0) -> nn.BatchNorm2d:
    g = torch.Generator().manual_seed(seed)
    bn = nn.BatchNorm2d(c)
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(c, generator=g))
        bn.running_var.copy_(torch.rand(c, generator=g) + 0.1)
        bn.weight.copy_(torch.randn(c, generator=g))
        bn.bias.copy_(torch.randn(c, generator=g))
    return bn.eval()


@pytest.mark.parametrize("bias", [False, True])
def test_fold_bn_bit_equal_to_fuse_modules(bias):
    conv, bn = nn.Conv2d(3, 8, 3, padding=1, bias=bias).eval(), _bn(8)
    ref = tq.fuse_modules(nn.Sequential(copy.deepcopy(conv), copy.deepcopy(bn)).eval(), [["0", "1"]])[0]
    mine = fuse_conv_bn(conv, bn)
    assert torch.equal(mine.weight, ref.weight) and torch.equal(mine.bias, ref.bias)
    x = torch.randn(2, 3, 6, 6)
    with torch.no_grad():
        assert torch.allclose(mine(x), bn(conv(x)), atol=1e-5)


def test_fold_bn_formula():
    w, b = torch.randn(4, 2), torch.randn(4)
    mean, var, gamma, beta = torch.randn(4), torch.rand(4) + 0.5, torch.randn(4), torch.randn(4)
    wf, bf = fold_bn(w, b, mean, var, 1e-5, gamma, beta)
    k = gamma / torch.sqrt(var + 1e-5)
    assert torch.allclose(wf, w * k[:, None]) and torch.allclose(bf, (b - mean) * k + beta)


@settings(max_examples=60, deadline=None)
@given(st.floats(1e-6, 0.999))
def test_quantize_multiplier_is_accurate(m):
    m0, shift = quantize_multiplier(m)
    assert 2**30 <= int(m0) < 2**31 and 0 <= int(shift) <= 31
    assert abs(int(m0) * 2.0 ** -(31 + int(shift)) - m) <= m * 2.0**-30


@settings(max_examples=40, deadline=None)
@given(st.floats(1e-4, 0.9), st.integers(0, 2**20), st.integers(0, 255))
def test_requantize_rounds_to_nearest(m, scale_acc, zp):
    acc = torch.arange(-scale_acc, scale_acc + 1, max(1, scale_acc // 50), dtype=torch.int32)
    m0, shift = quantize_multiplier(m)
    q = requantize(acc, m0, shift, zp)
    exact = torch.clamp(torch.round(acc.double() * (int(m0) * 2.0 ** -(31 + int(shift)))) + zp, 0, 255)
    assert (q.double() - exact).abs().max() <= 1  # differs only on exact ties (ours rounds them up)


def _qlinear(per_channel: bool, relu: bool, engine: str = "fbgemm"):
    torch.backends.quantized.engine = engine
    lin = nn.Linear(24, 16)
    model = tq.QuantWrapper(nn.Sequential(lin, nn.ReLU()) if relu else nn.Sequential(lin)).eval()
    if relu:
        tq.fuse_modules(model, [["module.0", "module.1"]], inplace=True)
    wobs = tq.default_per_channel_weight_observer if per_channel else tq.default_weight_observer
    model.qconfig = tq.QConfig(activation=tq.get_default_qconfig(engine).activation, weight=wobs)
    tq.prepare(model, inplace=True)
    x = torch.randn(64, 24)
    model(x)
    tq.convert(model, inplace=True)
    return model, x


@pytest.mark.parametrize("per_channel", [True, False])
@pytest.mark.parametrize("relu", [True, False])
def test_int8_linear_vs_torch_quantized_linear(per_channel, relu):
    model, x = _qlinear(per_channel, relu)
    qx = model.quant(x)
    ref = model.module[0](qx)
    p = layer_qparams(model.module[0])
    args = (qx.int_repr(), qx.q_scale(), qx.q_zero_point(), p["q_w"], p["w_scale"], p["bias"])
    ours_f = int8_linear(*args, p["out_scale"], p["out_zp"], relu=p["relu"], requant="float")
    ours_fx = int8_linear(*args, p["out_scale"], p["out_zp"], relu=p["relu"], requant="fixed_point")
    assert torch.equal(ours_f, ref.int_repr())  # fbgemm's float requantization, mirrored: bit-exact
    # fixed-point multiplier + integer bias: within 1 LSB (different rounding of M * acc and of the bias)
    assert (ours_fx.int() - ref.int_repr().int()).abs().max() <= 1


def test_int8_conv_and_whole_digits_cnn_vs_torch():
    from helpers.data import load_digits_split
    from helpers.models import load_digits_cnn

    d = load_digits_split()
    q = quantize_digits_cnn(load_digits_cnn(), calib=d.x_train[:128], engine="fbgemm")
    x = d.x_test[:64]
    with torch.no_grad():
        qx = q.quant(x)
        ref = q.module(qx)
    mods = list(q.module.features) + list(q.module.classifier)
    codes, scale, zp = integer_forward(mods, qx.int_repr(), qx.q_scale(), qx.q_zero_point(), requant="float")
    assert torch.equal(codes, ref.int_repr()) and scale == ref.q_scale() and zp == ref.q_zero_point()
    codes, _, _ = integer_forward(mods, qx.int_repr(), qx.q_scale(), qx.q_zero_point())
    assert (codes.int() - ref.int_repr().int()).abs().max() <= 1
    # one conv layer alone, with padding
    conv = q.module.features[0]
    p = layer_qparams(conv)
    y = int8_conv2d(qx.int_repr(), qx.q_scale(), qx.q_zero_point(), p["q_w"], p["w_scale"], p["bias"],
                    p["out_scale"], p["out_zp"], padding=p["padding"], relu=True, requant="float")  # fmt: skip
    assert torch.equal(y, conv(qx).int_repr())


def test_quantize_digits_cnn_with_ranges_and_fusion():
    from helpers.models import load_digits_cnn

    model = load_digits_cnn()
    fused = fused_digits_cnn(model)
    assert type(fused.module.features[0]).__name__ == "ConvReLU2d"
    ranges = {n: (0.0, 4.0) for n in DIGITS_OBSERVED}
    ranges["module.classifier.3"] = (-20.0, 20.0)
    q = quantize_digits_cnn(model, ranges=ranges, act_bits=6)
    assert q.module.features[0].zero_point == 0 and abs(q.module.features[0].scale - 4.0 / 63) < 1e-6
    assert isinstance(q.module.classifier[3], nnq.Linear)


def test_quantize_digits_cnn_reduce_range_follows_the_engine():
    from helpers.models import load_digits_cnn

    model = load_digits_cnn()
    ranges = {n: (0.0, 4.0) for n in DIGITS_OBSERVED}
    ranges["module.classifier.3"] = (-20.0, 20.0)
    x = torch.rand(8, 1, 8, 8)
    for engine, reduce_range, qmax in (("x86", None, 127), ("fbgemm", None, 127), ("qnnpack", None, 255),
                                       ("x86", False, 255), ("qnnpack", True, 127)):  # fmt: skip
        if engine not in torch.backends.quantized.supported_engines:
            continue
        q = quantize_digits_cnn(model, ranges=ranges, engine=engine, reduce_range=reduce_range)
        assert abs(q.module.features[0].scale - 4.0 / qmax) < 1e-6, (engine, reduce_range)
        with torch.no_grad():
            assert int(q.module.features[0](q.quant(x)).int_repr().max()) <= qmax
    # widths below 8 bits cannot overflow an int16 pair sum: reduce_range leaves them alone
    q = quantize_digits_cnn(model, ranges=ranges, act_bits=6, engine="x86")
    assert abs(q.module.features[0].scale - 4.0 / 63) < 1e-6
    q = quantize_digits_cnn(model, calib=torch.rand(16, 1, 8, 8), engine="x86")
    assert q.module.features[0].scale > 0
    torch.backends.quantized.engine = "x86"
    with pytest.raises(TypeError, match="reduce_range"):
        quantize_digits_cnn(model, ranges=ranges, reduce_range=1)


def test_calibrate_prepared_runs_float64_and_restores_float32():
    from helpers.models import load_digits_cnn

    torch.backends.quantized.engine = "x86"
    model = load_digits_cnn()
    x = torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    wrapped = fused_digits_cnn(model)
    wrapped.qconfig = tq.QConfig(activation=tq.MinMaxObserver.with_args(reduce_range=True),
                                 weight=tq.default_per_channel_weight_observer)  # fmt: skip
    prepared = tq.prepare(wrapped)
    assert calibrate_prepared(prepared, x) is prepared
    assert all(p.dtype == torch.float32 for p in prepared.parameters())
    obs = prepared.module.classifier[1].activation_post_process
    assert obs.max_val.dtype == torch.float32
    # the observer saw the float64 activations: their max, rounded to float32
    model64 = copy.deepcopy(fused_digits_cnn(model)).double()
    with torch.no_grad():
        h = model64.module.classifier[1](model64.module.classifier[0](model64.module.features(x.double())))
    assert float(obs.max_val) == float(h.max().float())
    q = tq.convert(prepared)
    assert isinstance(q.module.classifier[3], nnq.Linear)
    with pytest.raises(ValueError, match="observer"):
        calibrate_prepared(fused_digits_cnn(model), x)
    with pytest.raises(TypeError, match="dtype"):
        calibrate_prepared(prepared, x, dtype=torch.int32)


def test_darknet19_table():
    model = Darknet19(num_classes=10).eval()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 19 and sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 5
    assert len([s for s in DARKNET19_LAYERS if s != "M"]) == 18
    assert sum(isinstance(m, nn.LeakyReLU) and m.negative_slope == 0.1 for m in model.modules()) == 18
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 10)
    assert darknet19_fuse_groups(model)[0] == ["features.0.0", "features.0.1"]
    assert darknet19_fuse_groups(Darknet19(leaky=False), "module.")[0] == [
        "module.features.0.0", "module.features.0.1", "module.features.0.2",
    ]  # fmt: skip
    full = Darknet19()
    assert 20e6 < sum(p.numel() for p in full.parameters()) < 21e6


# ---- bad input -------------------------------------------------------------------------------------


def test_bad_inputs():
    conv, bn = nn.Conv2d(2, 4, 3).eval(), _bn(4)
    with pytest.raises(ValueError, match="bn"):
        fuse_conv_bn(conv, _bn(3))
    with pytest.raises(ValueError, match="eval"):
        fuse_conv_bn(conv, _bn(4).train())
    with pytest.raises(TypeError, match="conv"):
        fuse_conv_bn(nn.Linear(2, 4), bn)
    with pytest.raises(ValueError, match="bn_var"):
        fold_bn(torch.randn(4, 2), None, torch.zeros(4), -torch.ones(4), 1e-5)
    with pytest.raises(ValueError, match="bn_mean"):
        fold_bn(torch.randn(4, 2), None, torch.zeros(3), torch.ones(4), 1e-5)
    with pytest.raises(ValueError, match="bn_eps"):
        fold_bn(torch.randn(4, 2), None, torch.zeros(4), torch.ones(4), 0.0)
    with pytest.raises(ValueError, match="multiplier"):
        quantize_multiplier(2.0**30)
    with pytest.raises(ValueError, match="multiplier"):
        quantize_multiplier(0.0)
    m0, sh = quantize_multiplier(0.25)
    with pytest.raises(TypeError, match="acc"):
        requantize(torch.zeros(3), m0, sh, 0)
    with pytest.raises(ValueError, match="zero_point"):
        requantize(torch.zeros(3, dtype=torch.int32), m0, sh, 300)
    with pytest.raises(ValueError, match="out_dtype"):
        requantize(torch.zeros(3, dtype=torch.int32), m0, sh, 0, out_dtype="int4")
    with pytest.raises(ValueError, match="m0"):
        requantize(torch.zeros(3, dtype=torch.int32), torch.tensor(5), sh, 0)
    qx = torch.zeros(4, 8, dtype=torch.uint8)
    qw = torch.zeros(3, 8, dtype=torch.int8)
    with pytest.raises(ValueError, match="x_scale"):
        int8_linear(qx, 0.0, 0, qw, 0.1, None, 0.1, 0)
    with pytest.raises(ValueError, match="requant"):
        int8_linear(qx, 0.1, 0, qw, 0.1, None, 0.1, 0, requant="double")
    with pytest.raises(ValueError, match="w_scale"):
        int8_linear(qx, 0.1, 0, qw, torch.ones(2), None, 0.1, 0)
    with pytest.raises(ValueError, match="q_x"):
        int8_linear(torch.zeros(4, 5, dtype=torch.uint8), 0.1, 0, qw, 0.1, None, 0.1, 0)
    with pytest.raises(ValueError, match="bias"):
        int8_linear(qx, 0.1, 0, qw, 0.1, torch.zeros(2), 0.1, 0)
    with pytest.raises(TypeError, match="q_w"):
        int8_linear(qx, 0.1, 0, qw.float(), 0.1, None, 0.1, 0)
    with pytest.raises(ValueError, match="q_w"):
        int8_conv2d(torch.zeros(1, 8, 4, 4, dtype=torch.uint8), 0.1, 0, qw, 0.1, None, 0.1, 0)
    with pytest.raises(ValueError, match="padding"):
        int8_conv2d(
            torch.zeros(1, 2, 4, 4, dtype=torch.uint8), 0.1, 0, torch.zeros(3, 2, 3, 3, dtype=torch.int8),
            0.1, None, 0.1, 0, padding=-1,
        )  # fmt: skip
    with pytest.raises(TypeError, match="module"):
        layer_qparams(nn.Linear(2, 2))
    with pytest.raises(TypeError, match="modules"):
        integer_forward([nn.Sigmoid()], qx, 0.1, 0)
    with pytest.raises(ValueError, match="engine"):
        quantize_digits_cnn(nn.Module(), calib=torch.zeros(1), engine="tpu")
    with pytest.raises(TypeError, match="model"):
        fused_digits_cnn(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="num_classes"):
        Darknet19(num_classes=0)
    with pytest.raises(TypeError, match="model"):
        darknet19_fuse_groups(nn.Linear(2, 2))


def test_quantize_digits_cnn_needs_one_source():
    from helpers.models import load_digits_cnn

    with pytest.raises(ValueError, match="calib"):
        quantize_digits_cnn(load_digits_cnn())
    with pytest.raises(ValueError, match="ranges"):
        quantize_digits_cnn(load_digits_cnn(), ranges={"quant": (0.0, 1.0)})


# ---------------------------------------------------------------- exact references, the edge below 1, bad input


def _fixed_point_reference(m: float) -> tuple[int, int]:
    """Python-int reference: m = mant * 2^e (mant in [0.5, 1)), m0 = round_half_even(mant * 2^31), carry at 2^31."""
    mant, e = math.frexp(m)
    m0 = round(mant * 2**31)  # exact: mant has 53 bits, the product is exact in float64
    if m0 == 2**31:
        m0, e = 2**30, e + 1
    if e > 0 and m < 1:  # M < 1 rounded up to 1.0: the largest right-shift form instead
        m0, e = 2**31 - 1, 0
    return m0, -e


def _requantize_reference(acc: list[int], m0: int, shift: int, zp: int, lo: int, hi: int) -> list[int]:
    """Exact integers: (acc * m0 + 2^(30 + shift)) >> (31 + shift), Python's >> floors (ties round upward)."""
    total = 31 + shift
    return [min(max(((a * m0 + (1 << (total - 1))) >> total) + zp, lo), hi) for a in acc]


@settings(max_examples=80, deadline=None)
@given(st.floats(2.0**-32, 1.0, exclude_max=True))
def test_quantize_multiplier_equals_integer_reference(m):
    m0, shift = quantize_multiplier(m)
    assert (int(m0), int(shift)) == _fixed_point_reference(m)
    assert 2**30 <= int(m0) < 2**31 and 0 <= int(shift) <= 31
    assert abs(int(m0) * 2.0 ** -(31 + int(shift)) - m) <= m * 2.0**-30


@settings(max_examples=60, deadline=None)
@given(
    st.floats(2.0**-32, 1.0, exclude_max=True),
    st.lists(st.integers(-(2**31), 2**31 - 1), min_size=1, max_size=40),
    st.sampled_from(["uint8", "int8"]),
    st.booleans(),
)
def test_requantize_equals_exact_integer_reference(m, acc, out_dtype, relu):
    qmin, qmax = (0, 255) if out_dtype == "uint8" else (-128, 127)
    zp = (qmin + qmax + 1) // 2
    m0, shift = quantize_multiplier(m)
    for dtype in (torch.int32, torch.int64):
        q = requantize(torch.tensor(acc, dtype=dtype), m0, shift, zp, out_dtype=out_dtype, relu=relu)
        assert q.tolist() == _requantize_reference(acc, int(m0), int(shift), zp, zp if relu else qmin, qmax)


def test_quantize_multiplier_just_below_one_stays_a_right_shift():
    """Before: M in [1 - 2^-32, 1) rounded up to 2^31 and came back with shift -1, which requantize refused."""
    for m in (1.0 - 2.0**-40, math.nextafter(1.0, 0.0), 1.0 - 2.0**-32):
        m0, shift = quantize_multiplier(m)
        assert (int(m0), int(shift)) == (2**31 - 1, 0)
        assert abs(int(m0) * 2.0**-31 - m) <= 2.0**-31
        acc = torch.tensor([-(2**31), -128, -7, 0, 7, 127, 2**31 - 1], dtype=torch.int64)
        q = requantize(acc, m0, shift, 0, out_dtype="int8")
        assert q.tolist() == _requantize_reference(acc.tolist(), 2**31 - 1, 0, 0, -128, 127)
    assert [int(v) for v in quantize_multiplier(1.0 - 2.0**-31)] == [2**31 - 1, 0]  # representable: no rounding
    m0, shift = quantize_multiplier(0.5 - 2.0**-40)  # the carry below 0.5 is unchanged
    assert (int(m0), int(shift)) == (2**30, 0)


@settings(max_examples=80, deadline=None)
@given(
    st.floats(1.0, 2.0**30, exclude_max=True),
    st.lists(st.integers(-(2**31), 2**31 - 1), min_size=1, max_size=40),
)
def test_multipliers_of_one_and_above_shift_left(m, acc):
    """M >= 1 (gemmlowp/TFLite: a left shift): shift < 0, the same exact-integer rounding as below 1."""
    if math.frexp(m)[0] * 2**31 >= 2**31 - 0.5 and math.frexp(m)[1] == 30:
        return  # rounds up to 2^30: rejected (tested in test_bad_input_fixed_point)
    m0, shift = quantize_multiplier(m)
    assert (int(m0), int(shift)) == _fixed_point_reference(m)
    assert 2**30 <= int(m0) < 2**31 and -30 <= int(shift) <= -1
    assert abs(int(m0) * 2.0 ** -(31 + int(shift)) - m) <= m * 2.0**-30
    q = requantize(torch.tensor(acc, dtype=torch.int64), m0, shift, 0, out_dtype="int8")
    assert q.tolist() == _requantize_reference(acc, int(m0), int(shift), 0, -128, 127)
    assert [int(v) for v in quantize_multiplier(1.0)] == [2**30, -1]  # 1 = 2^30 * 2^-30: codes pass unchanged
    ones = requantize(
        torch.tensor([-128, -1, 0, 5, 127], dtype=torch.int32), *quantize_multiplier(1.0), 0, out_dtype="int8"
    )
    assert ones.tolist() == [-128, -1, 0, 5, 127]


def test_quantize_multiplier_below_one_unchanged():
    """Bit-identical to the committed formula away from the edge (lesson 05's outputs depend on it)."""
    ms = torch.tensor([2.0**-32, 1e-6, 0.0123456, 0.25, 0.3333, 0.5, 0.75, 0.999999], dtype=torch.float64)
    m0, shift = quantize_multiplier(ms)
    expected = [(2**30, 31), (1125899907, 19), (1696766344, 6), (2**30, 1)]
    assert [(int(a), int(b)) for a, b in zip(m0[:4], shift[:4])] == expected
    for m, a, b in zip(ms.tolist(), m0.tolist(), shift.tolist()):
        mant, e = math.frexp(m)
        assert (a, b) == (round(mant * 2**31), -e)


def test_bad_input_fixed_point():
    for bad in (None, "0.5", True):
        with pytest.raises(TypeError, match=r"multiplier must be a real number or a float tensor in \[2\^-32, 2\^30\)"):
            quantize_multiplier(bad)
    for bad in (float("inf"), float("nan"), -1.0, 0.0):
        with pytest.raises(ValueError, match="multiplier"):
            quantize_multiplier(bad)
    with pytest.raises(ValueError, match=r"multiplier must be < 2\^30"):
        quantize_multiplier(torch.tensor([0.5, 1e300], dtype=torch.float64))
    with pytest.raises(ValueError, match=r"multiplier must be < 2\^30"):
        quantize_multiplier(math.nextafter(2.0**30, 0.0))  # its mantissa rounds up to 2^30
    with pytest.raises(ValueError, match=r"multiplier must be >= 2\^-32"):
        quantize_multiplier(2.0**-40)
    m0, sh = quantize_multiplier(0.25)
    with pytest.raises(TypeError, match="acc must be a torch.Tensor"):
        requantize(None, m0, sh, 0)
    with pytest.raises(TypeError, match="m0 must be a torch.Tensor"):
        requantize(torch.zeros(3, dtype=torch.int32), None, sh, 0)
    with pytest.raises(TypeError, match="shift must be a torch.Tensor"):
        requantize(torch.zeros(3, dtype=torch.int32), m0, None, 0)
    with pytest.raises(ValueError, match=r"shift must lie in -30\.\.31"):
        requantize(torch.zeros(3, dtype=torch.int32), m0, torch.tensor(-31), 0)
    for big in (2**31, -(2**31) - 1, 2**40):  # int64 beyond int32: acc * m0 would overflow int64 silently
        with pytest.raises(ValueError, match=r"acc must hold int32 values in -2\^31\.\.2\^31-1"):
            requantize(torch.tensor([0, big]), m0, sh, 0)
    with pytest.raises(ValueError, match=r"m0 must hold int32 values"):
        requantize(torch.zeros(3, dtype=torch.int32), torch.tensor(2**40), sh, 0)


# ---------------------------------------------------------------- AVX2's saturating int16 pairs (Pitfall 4)


def _pairs_reference(q_x: torch.Tensor, q_w: torch.Tensor) -> tuple[list[list[int]], int]:
    """Plain Python: each adjacent pair of u8 x s8 products clamped to int16, then summed exactly."""
    acc, saturated = [], 0
    for row in q_x.tolist():
        out = []
        for w in q_w.tolist():
            total = 0
            for j in range(0, len(row), 2):
                pair = row[j] * w[j] + (row[j + 1] * w[j + 1] if j + 1 < len(row) else 0)
                clipped = max(-(2**15), min(2**15 - 1, pair))
                saturated += clipped != pair
                total += clipped
            out.append(total)
        acc.append(out)
    return acc, saturated


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 12), st.integers(1, 4), st.integers(1, 5), st.integers(1, 255))
def test_int16_pairs_equal_python_reference_and_kernels_helper(seed, k, n, m, top):
    from helpers.kernels import saturating_int8_matmul
    from helpers.static import int16_pair_accumulate

    g = torch.Generator().manual_seed(seed)
    q_x = torch.randint(0, top + 1, (m, k), generator=g, dtype=torch.uint8)
    q_w = torch.randint(-128, 128, (n, k), generator=g, dtype=torch.int8)
    acc, sat = int16_pair_accumulate(q_x, q_w)
    ref, ref_sat = _pairs_reference(q_x, q_w)
    assert acc.dtype == torch.int32 and acc.tolist() == ref and sat == ref_sat
    assert torch.equal(acc, saturating_int8_matmul(q_x.to(torch.int32), q_w.t()))


def test_int16_pairs_saturate_only_past_127():
    from helpers.static import int16_pair_accumulate

    w = torch.tensor([[127, 127], [-128, -128]], dtype=torch.int8)
    acc, sat = int16_pair_accumulate(torch.tensor([[255, 255]], dtype=torch.uint8), w)
    assert acc.tolist() == [[2**15 - 1, -(2**15)]] and sat == 2  # 64770 and -65280 clip
    acc, sat = int16_pair_accumulate(torch.tensor([[127, 127]], dtype=torch.uint8), w)
    assert acc.tolist() == [[127 * 254, -128 * 254]] and sat == 0  # reduce_range's 7-bit codes always fit
    g = torch.Generator().manual_seed(0)
    q_x = torch.randint(0, 128, (64, 33), generator=g, dtype=torch.uint8)
    q_w = torch.randint(-128, 128, (7, 33), generator=g, dtype=torch.int8)
    acc, sat = int16_pair_accumulate(q_x, q_w)
    assert sat == 0 and torch.equal(acc, (q_x.double() @ q_w.double().t()).to(torch.int32))


def test_int16_pairs_in_layers_and_network():
    """accumulate="int16_pairs": the same as "int32" where nothing saturates; conv pairs taken channels-last."""
    from helpers.static import int16_pair_accumulate

    g = torch.Generator().manual_seed(1)
    qx = torch.randint(0, 128, (5, 3, 6, 6), generator=g, dtype=torch.uint8)
    qw = torch.randint(-128, 128, (4, 3, 3, 3), generator=g, dtype=torch.int8)
    args = (qx, 0.02, 7, qw, 0.01, torch.randn(4, generator=g), 0.05, 3)
    assert torch.equal(int8_conv2d(*args, padding=1), int8_conv2d(*args, padding=1, accumulate="int16_pairs"))
    big = torch.full((1, 2, 1, 1), 255, dtype=torch.uint8)
    w = torch.full((1, 2, 1, 1), 127, dtype=torch.int8)  # one pair over the two channels: 64770 saturates
    got = int8_conv2d(big, 1.0, 0, w, 1.0, None, 2.0**20, 0, accumulate="int16_pairs", out_dtype="uint8")
    want = requantize(torch.tensor([[2**15 - 1]], dtype=torch.int32), *quantize_multiplier(2.0**-20), 0)
    assert got.reshape(-1).tolist() == want.reshape(-1).tolist()
    lin_x = torch.randint(0, 256, (9, 16), generator=g, dtype=torch.uint8)
    lin_w = torch.randint(-128, 128, (5, 16), generator=g, dtype=torch.int8)
    acc, _ = int16_pair_accumulate(lin_x, lin_w)
    got = int8_linear(lin_x, 1.0, 11, lin_w, 1.0, None, 1.0, 0, accumulate="int16_pairs", out_dtype="int8")
    m0, sh = quantize_multiplier(1.0)
    want = requantize(acc - 11 * lin_w.to(torch.int32).sum(1), m0, sh, 0, out_dtype="int8")
    assert torch.equal(got, want)
    with pytest.raises(ValueError, match="accumulate"):
        int8_linear(lin_x, 1.0, 0, lin_w, 1.0, None, 1.0, 0, accumulate="int8")
    with pytest.raises(TypeError, match="uint8"):
        int8_linear(lin_x.to(torch.int8) // 2, 1.0, 0, lin_w, 1.0, None, 1.0, 0, accumulate="int16_pairs")
    with pytest.raises(TypeError, match="q_x"):
        int16_pair_accumulate(lin_x.float(), lin_w)
    with pytest.raises(ValueError, match="q_x"):
        int16_pair_accumulate(lin_x[:, :15], lin_w)
    with pytest.raises(TypeError, match="q_x"):
        int16_pair_accumulate(None, lin_w)
    with pytest.raises(ValueError, match="accumulate"):
        integer_forward([], lin_x, 0.1, 0, accumulate="float")


# ---------------------------------------------------------------- the exercise's checker


def _solution_requantize(acc, M, zero_point):
    m0, shift = quantize_multiplier(M)
    total = 31 + int(shift)
    return torch.clamp(((acc.long() * int(m0) + (1 << (total - 1))) >> total) + zero_point, 0, 255).to(torch.uint8)


def _wrong(kind):
    def fn(acc, M, zero_point):
        m0, shift = quantize_multiplier(M)
        total = 31 + int(shift)
        if kind == "truncating shift":
            y = (acc.long() * int(m0)) >> total
        elif kind == "missing zero point":
            return _solution_requantize(acc, M, 0)
        elif kind == "float rounding":
            y = torch.round(acc.double() * M).long()
        elif kind == "round half away":
            v = acc.double() * M
            y = (torch.sign(v) * torch.floor(v.abs() + 0.5)).long()
        elif kind == "shift ignores M >= 1":
            total = 31 + max(int(shift), 0)
            y = (acc.long() * int(m0) + (1 << (total - 1))) >> total
        elif kind == "no clamp":
            y = (acc.long() * int(m0) + (1 << (total - 1))) >> total
            return (y + zero_point).to(torch.uint8)
        elif kind == "int32 overflow":
            y = (acc * int(m0) + (1 << (total - 1))) >> total  # acc * m0 wraps in int32
        return torch.clamp(y + zero_point, 0, 255).to(torch.uint8)

    return fn


def test_check_requantize_accepts_the_solution_and_the_helper():
    from helpers.static import check_requantize

    assert check_requantize(_solution_requantize, quiet=True)
    assert check_requantize(lambda acc, M, zp: requantize(acc, *quantize_multiplier(M), zp), quiet=True)


@pytest.mark.parametrize(
    "kind",
    ["truncating shift", "missing zero point", "float rounding", "round half away", "shift ignores M >= 1",
     "no clamp", "int32 overflow"],
)  # fmt: skip
def test_check_requantize_rejects_classic_wrong_answers(kind):
    from helpers.static import check_requantize

    assert not check_requantize(_wrong(kind), quiet=True)


def test_check_requantize_stub_and_output(capsys):
    from helpers.static import check_requantize

    def stub(acc, M, zero_point):
        raise NotImplementedError

    assert not check_requantize(stub) and not check_requantize(None)
    assert "not written yet" in capsys.readouterr().out
    assert not check_requantize(lambda acc, M, zp: acc.to(torch.uint8))
    assert "Hint" in capsys.readouterr().out


def test_none_and_non_finite_rejected_by_name():
    """Issue 13 item 5: each public helper names the argument it rejects (None, NaN, wrong type)."""
    from helpers.static import eager_static_int8, make_observer_view

    qx, qw = torch.zeros(2, 4, dtype=torch.uint8), torch.zeros(3, 4, dtype=torch.int8)
    with pytest.raises(TypeError, match="w_scale"):
        int8_linear(qx, 0.1, 0, qw, None, None, 0.1, 0)
    with pytest.raises(TypeError, match="x_scale"):
        int8_linear(qx, None, 0, qw, 0.1, None, 0.1, 0)
    with pytest.raises(ValueError, match="x_scale"):
        int8_linear(qx, float("nan"), 0, qw, 0.1, None, 0.1, 0)
    with pytest.raises(ValueError, match="bias"):
        int8_linear(qx, 0.1, 0, qw, 0.1, torch.tensor([0.0, float("inf"), 0.0]), 0.1, 0)
    x4, w4 = torch.zeros(1, 1, 3, 3, dtype=torch.uint8), torch.zeros(1, 1, 1, 1, dtype=torch.int8)
    with pytest.raises(TypeError, match="stride"):
        int8_conv2d(x4, 0.1, 0, w4, 0.1, None, 0.1, 0, stride=None)
    with pytest.raises(TypeError, match="padding"):
        int8_conv2d(x4, 0.1, 0, w4, 0.1, None, 0.1, 0, padding="same")
    with pytest.raises(TypeError, match="modules"):
        integer_forward(None, qx, 0.1, 0)
    with pytest.raises(TypeError, match="x_zp"):
        integer_forward([], qx, 0.1, None)
    with pytest.raises(ValueError, match="multiplier"):
        quantize_multiplier(float("nan"))
    with pytest.raises(TypeError, match="acc"):
        requantize(None, *quantize_multiplier(0.5), 0)
    with pytest.raises(ValueError, match="calib"):
        eager_static_int8(nn.Sequential(nn.Conv2d(3, 3, 1)), None)
    with pytest.raises(ValueError, match="calib"):
        eager_static_int8(Darknet19(), torch.full((1, 3, 8, 8), float("nan")))
    with pytest.raises(TypeError, match="model"):
        make_observer_view(None, {}, torch.zeros(1), torch.zeros(1))
    with pytest.raises(TypeError, match="acts"):
        make_observer_view(nn.Linear(2, 2), None, torch.zeros(1), torch.zeros(1))


def test_settle_batchnorm_gives_unit_scale_activations_and_rejects_bad_input():
    from helpers.static import build_fp32, settle_batchnorm

    torch.manual_seed(0)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        before = build_fp32("mobilenet_v2")(x)
        model = settle_batchnorm(build_fp32("mobilenet_v2"), torch.randn(4, 3, 64, 64))
        after = model(x)
    assert not model.training
    assert float(before.abs().max()) < torch.finfo(torch.float32).eps  # the initial statistics shrink the logits
    assert float(after.abs().max()) > 1e-3  # real statistics keep them at a usable scale
    with pytest.raises(TypeError, match="model"):
        settle_batchnorm(None, x)
    with pytest.raises(ValueError, match="images"):
        settle_batchnorm(model, x[0])
    with pytest.raises(ValueError, match="BatchNorm"):
        settle_batchnorm(nn.Linear(2, 2), x)
