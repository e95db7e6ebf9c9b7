"""Tests of helpers.affine: unit, property (hypothesis), cross-checks against PyTorch's kernels, bad input."""

import math
import warnings
from fractions import Fraction

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import affine as A

# torch.ao.quantization and the quantized dtypes warn that they are deprecated; the warnings are
# expected here (the course cross-checks against exactly those APIs) and must not clutter the run.
pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from torch.ao.quantization import MinMaxObserver, PerChannelMinMaxObserver

PROPS = settings(max_examples=60, deadline=None)

finite = st.floats(min_value=-1e4, max_value=1e4, allow_nan=False, allow_infinity=False, width=32)
float_lists = st.lists(finite, min_size=1, max_size=64)
bits_st = st.integers(min_value=2, max_value=16)
schemes = st.sampled_from(["affine", "symmetric"])


def _random(shape, seed=0, heavy=False):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g)
    if heavy:
        x = x * torch.exp(torch.randn(shape, generator=g))
    return x


def _ties(scale: float, zero_point: int, qmin: int, qmax: int) -> torch.Tensor:
    """Values at (k + 0.5) * scale for every k in the representable range (float32 products)."""
    k = torch.arange(qmin - zero_point - 2, qmax - zero_point + 2, dtype=torch.float32)
    return (k + 0.5) * torch.tensor(scale, dtype=torch.float32)


def _torch_qparams(x, dtype, qscheme, quant_min=None, quant_max=None, reduce_range=False, ch_axis=None):
    kwargs = {"dtype": dtype, "qscheme": qscheme, "reduce_range": reduce_range}
    if quant_min is not None:
        kwargs.update(quant_min=quant_min, quant_max=quant_max)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        obs = MinMaxObserver(**kwargs) if ch_axis is None else PerChannelMinMaxObserver(ch_axis=ch_axis, **kwargs)
        obs(x)
        scale, zp = obs.calculate_qparams()
    return scale, zp, obs.quant_min, obs.quant_max


# ----------------------------------------------------------------------------------------------- unit


@pytest.mark.parametrize(
    ("bits", "signed", "restricted", "expected"),
    [
        (8, True, False, (-128, 127)),
        (8, True, True, (-127, 127)),
        (8, False, False, (0, 255)),
        (4, True, False, (-8, 7)),
        (4, True, True, (-7, 7)),
        (1, True, False, (-1, 0)),
        (1, False, False, (0, 1)),
        (16, True, False, (-32768, 32767)),
        (16, False, False, (0, 65535)),
    ],
)
def test_qrange(bits, signed, restricted, expected):
    assert A.qrange(bits, signed, restricted) == expected


def test_worked_example_minus2_to_2():
    scale, zp = A.affine_qparams(-2.0, 2.0, 8)
    assert scale.dtype == torch.float32 and zp.dtype == torch.int32
    assert scale.item() == torch.tensor(4 / 255, dtype=torch.float32).item()
    assert zp.item() == -1  # float32: -2 / scale = -127.49999 -> -127, zero_point = -128 + 127
    assert Fraction(-2) / Fraction(4, 255) == Fraction(-255, 2)  # exact arithmetic: the tie -127.5
    q = A.quantize(torch.tensor([1.3]), scale, zp, -128, 127)
    assert q.dtype == torch.int8 and q.item() == 82
    x_hat = A.dequantize(q, scale, zp)
    assert round(x_hat.item(), 4) == 1.3020


def test_symmetric_qparams():
    scale, zp = A.affine_qparams(-1.0, 3.0, 8, symmetric=True)
    assert zp.item() == 0
    assert scale.item() == pytest.approx(3.0 / 127.5)
    scale_r, _ = A.affine_qparams(-1.0, 3.0, 8, symmetric=True, restricted=True)
    assert scale_r.item() == pytest.approx(3.0 / 127)
    _, zp_u = A.affine_qparams(-1.0, 3.0, 8, symmetric=True, signed=False)
    assert zp_u.item() == 128


def test_range_widened_to_include_zero():
    scale, zp = A.affine_qparams(1.0, 3.0, 8, signed=False)
    assert zp.item() == 0 and scale.item() == pytest.approx(3.0 / 255)
    scale, zp = A.affine_qparams(-3.0, -1.0, 8, signed=False)
    assert zp.item() == 255 and scale.item() == pytest.approx(3.0 / 255)


def test_constant_zero_tensor_gets_eps_scale():
    scale, zp = A.calc_qparams(torch.zeros(5))
    assert scale.item() == torch.finfo(torch.float32).eps
    assert A.fake_quantize(torch.zeros(5), scale, zp, -128, 127).eq(0).all()


def test_tensor_qparams_vectorised():
    scale, zp = A.affine_qparams(torch.tensor([-1.0, -2.0]), torch.tensor([1.0, 0.5]), 8)
    assert scale.shape == (2,) and zp.shape == (2,)


def test_code_dtypes():
    x = torch.linspace(-1, 1, 11)
    assert A.quantize(x, 0.01, 0, -128, 127).dtype == torch.int8
    assert A.quantize(x, 0.01, 128, 0, 255).dtype == torch.uint8
    assert A.quantize(x, 0.01, 0, -(2**15), 2**15 - 1).dtype == torch.int16
    assert A.quantize(x, 0.01, 0, 0, 2**16 - 1).dtype == torch.int32


def test_clipping_and_saturation():
    q = A.quantize(torch.tensor([-100.0, 100.0]), 0.1, 0, -8, 7)
    assert q.tolist() == [-8, 7]


def test_conventions_differ_only_on_ties():
    scale, zp = 0.25, 1  # power-of-two scale: x * (1/scale) is exact, so x = 0.125 is an exact tie
    x = torch.tensor([0.125, 0.375, 0.1, 0.2, -0.125])
    a = A.quantize(x, scale, zp, -128, 127, convention="round_then_shift")
    b = A.quantize(x, scale, zp, -128, 127, convention="shift_then_round")
    # round(0.5) + 1 = 1, round(1.5) = 2; round(1.5) + 1 = 3, round(2.5) = 2; no tie -> same
    assert a.tolist() == [1, 3, 1, 2, 1]
    assert b.tolist() == [2, 2, 1, 2, 0]
    # with an even zero_point the two conventions agree even on ties
    assert torch.equal(
        A.quantize(x, scale, 2, -128, 127, convention="round_then_shift"),
        A.quantize(x, scale, 2, -128, 127, convention="shift_then_round"),
    )


@pytest.mark.parametrize("zp", range(-5, 6))
def test_conventions_on_ties_differ_iff_zero_point_odd(zp):
    # every tie k + 1/2 inside the clamp range: half-to-even makes the two orders differ on all of them
    # when zp is odd (it swaps the parity of both neighbours) and on none when zp is even
    scale = 0.25  # power of two: x * (1/scale) is exact, so these x are exact ties
    x = (torch.arange(-100, 100, dtype=torch.float32) + 0.5) * scale
    a = A.quantize(x, scale, zp, -128, 127, convention="round_then_shift")
    b = A.quantize(x, scale, zp, -128, 127, convention="shift_then_round")
    n_differ = int((a != b).sum())
    assert n_differ == (len(x) if zp % 2 else 0)
    ref = torch.quantize_per_tensor(x, scale, zp, torch.qint8).int_repr()
    assert torch.equal(a, ref)  # torch rounds then shifts, half to even


def test_per_group_shapes_and_values():
    x = _random((4, 8))
    q, scale, zp = A.quantize_tensor(x, 4, granularity="group", axis=1, group_size=4)
    assert scale.shape == (4, 2) and zp.shape == (4, 2) and q.shape == x.shape
    x_hat = A.dequantize(q, scale, zp, axis=1, group_size=4)
    assert torch.equal(x_hat, A.fake_quantize_tensor(x, 4, granularity="group", axis=1, group_size=4))


def test_negative_axis():
    x = _random((3, 4, 6))
    a = A.fake_quantize_tensor(x, 4, granularity="channel", axis=-1)
    b = A.fake_quantize_tensor(x, 4, granularity="channel", axis=2)
    assert torch.equal(a, b)


def test_mse_and_sqnr():
    x = torch.tensor([1.0, -1.0, 2.0, 0.0])
    x_hat = torch.tensor([1.5, -1.0, 2.0, 0.0])
    assert A.mse(x, x_hat) == pytest.approx(0.0625)
    assert A.sqnr_db(x, x_hat) == pytest.approx(10 * torch.log10(torch.tensor(6.0 / 0.25)).item())
    assert A.sqnr_db(x, x) == float("inf")
    assert A.sqnr_db(torch.zeros(3), torch.ones(3)) == float("-inf")


def test_sqnr_uniform_follows_602_rule():
    # uniform data filling the grid: signal power R^2/12 over noise power S^2/12 with S = R/(2^b - 1),
    # so SQNR = 20 log10(2^b - 1) dB, which tends to 6.02 b dB as b grows
    x = torch.rand(200_000, generator=torch.Generator().manual_seed(1)) * 2 - 1
    for bits in (2, 4, 6, 8, 10):
        s = A.sqnr_db(x, A.fake_quantize_tensor(x, bits))
        exact = 20 * torch.log10(torch.tensor(2.0**bits - 1)).item()
        assert abs(s - exact) < 0.05, (bits, s, exact)
        if bits >= 4:  # the rule of thumb is off by 20 log10(2^b / (2^b - 1)): 0.56 dB at 4 bits
            assert abs(s - 6.02 * bits) < 0.6


def test_fake_quantize_returns_the_input_dtype():
    # torch.fake_quantize_per_tensor_affine / _per_channel_affine return x's dtype (half computed in float32)
    x = _random(32)
    for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        assert A.fake_quantize_tensor(x.to(dtype), 8).dtype == dtype


def test_double_fake_quantize_per_channel_equals_torch():
    # torch's per-channel kernel computes float64 inputs in float64 (with 1/scale in float32); before, the helper
    # computed them in float32 and disagreed on most values
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(100, 1000, generator=g) * 3).double()
    s = torch.rand(100, generator=g) * 0.05 + 0.001
    z = torch.randint(-10, 10, (100,), generator=g, dtype=torch.int32)
    for axis, xs in ((0, x), (1, x.T.contiguous())):
        ref = torch.fake_quantize_per_channel_affine(xs, s, z, axis, -128, 127)
        assert torch.equal(A.fake_quantize(xs, s, z, -128, 127, axis=axis), ref)
    ties = ((torch.arange(-140, 140, dtype=torch.float64) + 0.5)[None, :] * s[:, None].double()).contiguous()
    ref = torch.fake_quantize_per_channel_affine(ties, s, z, 0, -128, 127)
    assert torch.equal(A.fake_quantize(ties, s, z, -128, 127, axis=0), ref)


# ------------------------------------------------------------------------------------------ properties


@PROPS
@given(values=float_lists, bits=bits_st, scheme=schemes, signed=st.booleans())
def test_roundtrip_error_at_most_half_step(values, bits, scheme, signed):
    x = torch.tensor(values, dtype=torch.float32)
    q, scale, zp = A.quantize_tensor(x, bits, scheme=scheme, signed=signed)
    x_hat = A.dequantize(q, scale, zp)
    # min-max qparams put every x inside the grid; float32 arithmetic (x * (1/scale), then
    # (q - zp) * scale) adds a few ulps of |x| on top of the exact bound scale/2.
    slack = 4 * torch.finfo(torch.float32).eps * (x.abs().max() + scale)
    assert bool(((x_hat - x).abs() <= scale / 2 + slack).all())


@PROPS
@given(values=float_lists, bits=bits_st, scheme=schemes, signed=st.booleans(), restricted=st.booleans())
def test_zero_exactly_representable(values, bits, scheme, signed, restricted):
    if restricted and (not signed or bits < 2):
        return
    x = torch.tensor(values + [0.0], dtype=torch.float32)
    x_hat = A.fake_quantize_tensor(x, bits, scheme=scheme, signed=signed, restricted=restricted)
    assert x_hat[-1].item() == 0.0


@PROPS
@given(values=float_lists, bits=bits_st, scheme=schemes, convention=st.sampled_from(A.CONVENTIONS))
def test_quantize_monotone(values, bits, scheme, convention):
    x = torch.sort(torch.tensor(values, dtype=torch.float32)).values
    scale, zp = A.calc_qparams(x, bits, symmetric=scheme == "symmetric")
    qmin, qmax = A.qrange(bits)
    q = A.quantize(x, scale, zp, qmin, qmax, convention=convention).long()
    assert bool((q[1:] >= q[:-1]).all())


@PROPS
@given(values=float_lists, bits=bits_st, scheme=schemes, signed=st.booleans())
def test_fake_quantize_idempotent(values, bits, scheme, signed):
    x = torch.tensor(values, dtype=torch.float32)
    scale, zp = A.calc_qparams(x, bits, signed=signed, symmetric=scheme == "symmetric")
    qmin, qmax = A.qrange(bits, signed)
    once = A.fake_quantize(x, scale, zp, qmin, qmax)
    assert torch.equal(A.fake_quantize(once, scale, zp, qmin, qmax), once)


@PROPS
@given(
    seed=st.integers(0, 10_000),
    shape=st.sampled_from([(4, 6), (3, 5, 2), (6,), (2, 3, 4, 2)]),
    bits=st.integers(2, 8),
    scheme=schemes,
    data=st.data(),
)
def test_per_channel_equals_per_tensor_slice_by_slice(seed, shape, bits, scheme, data):
    x = _random(shape, seed, heavy=True)
    axis = data.draw(st.integers(0, len(shape) - 1))
    got = A.fake_quantize_tensor(x, bits, scheme=scheme, granularity="channel", axis=axis)
    for i in range(x.shape[axis]):
        piece = x.select(axis, i)
        assert torch.equal(got.select(axis, i), A.fake_quantize_tensor(piece, bits, scheme=scheme))


@PROPS
@given(seed=st.integers(0, 10_000), group_size=st.sampled_from([1, 2, 3, 6]), bits=st.integers(2, 8), scheme=schemes)
def test_per_group_equals_per_tensor_group_by_group(seed, group_size, bits, scheme):
    x = _random((4, 12), seed, heavy=True)
    got = A.fake_quantize_tensor(x, bits, scheme=scheme, granularity="group", axis=1, group_size=group_size)
    for row in range(4):
        for start in range(0, 12, group_size):
            piece = x[row, start : start + group_size]
            want = A.fake_quantize_tensor(piece, bits, scheme=scheme)
            assert torch.equal(got[row, start : start + group_size], want)


@PROPS
@given(values=float_lists, bits=bits_st)
def test_conventions_agree_off_ties(values, bits):
    x = torch.tensor(values, dtype=torch.float32)
    scale, zp = A.calc_qparams(x, bits)
    qmin, qmax = A.qrange(bits)
    a = A.quantize(x, scale, zp, qmin, qmax).long()
    b = A.quantize(x, scale, zp, qmin, qmax, convention="shift_then_round").long()
    t = x * (1.0 / scale)
    tie = t - torch.floor(t) == 0.5
    assert bool((a[~tie] == b[~tie]).all())
    assert bool(((a - b).abs() <= 1).all())


# ----------------------------------------------------------------------------- cross-checks vs PyTorch

OBSERVER_CASES = [
    # (dtype, qscheme, quant_min, quant_max, reduce_range) -> helpers (bits, signed, restricted)
    (torch.qint8, torch.per_tensor_affine, None, None, False, (8, True, False)),
    (torch.quint8, torch.per_tensor_affine, None, None, False, (8, False, False)),
    (torch.qint8, torch.per_tensor_symmetric, None, None, False, (8, True, False)),
    (torch.quint8, torch.per_tensor_symmetric, None, None, False, (8, False, False)),
    (torch.qint8, torch.per_tensor_affine, None, None, True, (7, True, False)),
    (torch.quint8, torch.per_tensor_affine, None, None, True, (7, False, False)),
    (torch.qint8, torch.per_tensor_symmetric, None, None, True, (7, True, False)),
    (torch.qint8, torch.per_tensor_affine, -127, 127, False, (8, True, True)),
    (torch.qint8, torch.per_tensor_symmetric, -127, 127, False, (8, True, True)),
    (torch.qint8, torch.per_tensor_affine, -8, 7, False, (4, True, False)),
    (torch.qint8, torch.per_tensor_symmetric, -7, 7, False, (4, True, True)),
    (torch.quint8, torch.per_tensor_affine, 0, 15, False, (4, False, False)),
    (torch.qint8, torch.per_tensor_affine, -2, 1, False, (2, True, False)),
]


def _case_id(case):
    dtype, qscheme, lo, hi, rr, _ = case
    rng = "full" if lo is None else f"{lo}..{hi}"
    return f"{str(dtype).split('.')[-1]}-{str(qscheme).split('_')[-1]}-{rng}{'-rr' if rr else ''}"


@pytest.mark.parametrize("case", OBSERVER_CASES, ids=[_case_id(c) for c in OBSERVER_CASES])
@pytest.mark.parametrize("data", ["normal", "heavy", "positive", "negative", "minus2to2"])
def test_minmax_observer_qparams_bit_exact(case, data):
    dtype, qscheme, lo, hi, rr, (bits, signed, restricted) = case
    x = {
        "normal": _random(1000, 3),
        "heavy": _random(1000, 4, heavy=True) * 7,
        "positive": _random(1000, 5).abs() + 0.3,
        "negative": -_random(1000, 6).abs() - 0.1,
        "minus2to2": torch.tensor([-2.0, 0.5, 2.0]),
    }[data]
    t_scale, t_zp, qmin, qmax = _torch_qparams(x, dtype, qscheme, lo, hi, rr)
    assert (qmin, qmax) == A.qrange(bits, signed, restricted)
    scale, zp = A.calc_qparams(
        x, bits, signed=signed, symmetric=qscheme == torch.per_tensor_symmetric, restricted=restricted
    )
    assert scale.item() == t_scale.item()  # bit-exact float32
    assert zp.item() == t_zp.item()


def test_unsigned_symmetric_custom_range_middle_code():
    # Documented difference: for a *custom* unsigned range torch picks the lower middle code
    # (qmin + qmax) // 2, for the default 0..255 it picks 128; helpers always take the upper middle
    # (qmin + qmax + 1) // 2, which equals torch's default. The scale is bit-equal either way.
    x = _random(500, 7)
    t_scale, t_zp, qmin, qmax = _torch_qparams(x, torch.quint8, torch.per_tensor_symmetric, 0, 15)
    scale, zp = A.calc_qparams(x, 4, signed=False, symmetric=True)
    assert scale.item() == t_scale.item()
    assert (qmin + qmax) // 2 == t_zp.item() and zp.item() == (qmin + qmax + 1) // 2 == t_zp.item() + 1


@pytest.mark.parametrize("qscheme", [torch.per_channel_affine, torch.per_channel_symmetric])
@pytest.mark.parametrize("dtype", [torch.qint8, torch.quint8])
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_per_channel_observer_qparams_bit_exact(qscheme, dtype, axis):
    x = _random((5, 6, 7), 11, heavy=True)
    t_scale, t_zp, _, _ = _torch_qparams(x, dtype, qscheme, ch_axis=axis)
    scale, zp = A.calc_qparams(
        x, 8, signed=dtype == torch.qint8, symmetric=qscheme == torch.per_channel_symmetric, axis=axis
    )
    assert torch.equal(scale, t_scale.float())
    assert torch.equal(zp.long(), t_zp.long())


@pytest.mark.parametrize("dtype", [torch.qint8, torch.quint8])
@pytest.mark.parametrize("kind", ["random", "ties", "ties_pow2"])
@pytest.mark.parametrize("zp_choice", ["observer", "odd", "even"])
def test_quantize_per_tensor_bit_exact(dtype, kind, zp_choice):
    signed = dtype == torch.qint8
    qmin, qmax = A.qrange(8, signed)
    x0 = _random(2000, 21, heavy=True)
    scale, zp = A.calc_qparams(x0, 8, signed=signed)
    if kind == "ties_pow2":
        scale = torch.tensor(2.0**-5)
    zp = {"observer": int(zp), "odd": qmin + 77, "even": qmin + 100}[zp_choice]
    x = x0 if kind == "random" else _ties(float(scale), zp, qmin, qmax)
    if kind == "ties_pow2":  # exact ties: x * (1/scale) is exactly k + 0.5
        t = x * (1.0 / scale)
        assert bool((t - torch.floor(t) == 0.5).all())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = torch.quantize_per_tensor(x, float(scale), zp, dtype)
    q = A.quantize(x, scale, zp, qmin, qmax)
    assert q.dtype == (torch.int8 if signed else torch.uint8)
    assert torch.equal(q, ref.int_repr())
    assert torch.equal(A.dequantize(q, scale, zp), ref.dequantize())


def test_shift_then_round_is_off_by_one_vs_torch_on_ties():
    scale, zp = 2.0**-5, 3  # odd zero_point, exact ties
    x = _ties(scale, zp, -128, 127)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = torch.quantize_per_tensor(x, scale, zp, torch.qint8).int_repr().long()
    other = A.quantize(x, scale, zp, -128, 127, convention="shift_then_round").long()
    diff = other - ref
    inside = (ref > -128) & (ref < 127)
    assert bool((diff[inside].abs() == 1).all())  # every interior tie is off by one code
    assert torch.equal(A.quantize(x, scale, zp, -128, 127).long(), ref)


@pytest.mark.parametrize("dtype", [torch.qint8, torch.quint8])
@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("kind", ["random", "ties"])
def test_quantize_per_channel_bit_exact(dtype, axis, kind):
    signed = dtype == torch.qint8
    qmin, qmax = A.qrange(8, signed)
    x = _random((6, 40), 31, heavy=True)
    scale, zp = A.calc_qparams(x, 8, signed=signed, axis=axis)
    if kind == "ties":
        scale = 2.0 ** -torch.arange(2, 2 + x.shape[axis], dtype=torch.float32)
        n = x.shape[1 - axis]
        k = torch.arange(n, dtype=torch.float32) - n // 2 + 0.5
        x = (k[None, :] * scale[:, None]) if axis == 0 else (scale[None, :] * k[:, None])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = torch.quantize_per_channel(x, scale.double(), zp.long(), axis, dtype)
    q = A.quantize(x, scale, zp, qmin, qmax, axis=axis)
    assert torch.equal(q, ref.int_repr())
    assert torch.equal(A.dequantize(q, scale, zp, axis=axis), ref.dequantize())


@pytest.mark.parametrize("bits", [2, 3, 4, 7, 8])
@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("kind", ["random", "ties", "ties_pow2"])
def test_fake_quantize_per_tensor_bit_exact(bits, signed, kind):
    qmin, qmax = A.qrange(bits, signed)
    x0 = _random(3000, 41, heavy=True)
    scale, zp = A.calc_qparams(x0, bits, signed=signed)
    if kind == "ties_pow2":
        scale = torch.tensor(2.0**-3)
    x = x0 if kind == "random" else _ties(float(scale), int(zp), qmin, qmax)
    ref = torch.fake_quantize_per_tensor_affine(x, float(scale), int(zp), qmin, qmax)
    assert torch.equal(A.fake_quantize(x, scale, zp, qmin, qmax), ref)


@pytest.mark.parametrize("bits", [3, 4, 8])
@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("symmetric", [False, True])
def test_fake_quantize_per_channel_bit_exact(bits, axis, symmetric):
    qmin, qmax = A.qrange(bits)
    x = _random((4, 5, 6), 51, heavy=True) * 3
    scale, zp = A.calc_qparams(x, bits, symmetric=symmetric, axis=axis)
    ref = torch.fake_quantize_per_channel_affine(x, scale, zp, axis, qmin, qmax)
    assert torch.equal(A.fake_quantize(x, scale, zp, qmin, qmax, axis=axis), ref)


def test_fake_quantize_per_channel_ties_bit_exact():
    scale = torch.tensor([0.1, 0.03, 2.0**-4], dtype=torch.float32)
    zp = torch.tensor([-3, 5, 0], dtype=torch.int32)
    k = torch.arange(-130, 130, dtype=torch.float32) + 0.5
    x = k[None, :] * scale[:, None]
    ref = torch.fake_quantize_per_channel_affine(x, scale, zp, 0, -128, 127)
    assert torch.equal(A.fake_quantize(x, scale, zp, -128, 127, axis=0), ref)


def test_fake_quantize_tensor_matches_torch_observer_pipeline():
    x = _random((8, 16), 61, heavy=True)
    t_scale, t_zp, qmin, qmax = _torch_qparams(x, torch.qint8, torch.per_channel_symmetric, ch_axis=0)
    ref = torch.fake_quantize_per_channel_affine(x, t_scale.float(), t_zp.int(), 0, qmin, qmax)
    got = A.fake_quantize_tensor(x, 8, scheme="symmetric", granularity="channel", axis=0)
    assert torch.equal(got, ref)


# --------------------------------------------------------------------------------------------- bad input

X = torch.randn(4, 6)


@pytest.mark.parametrize("bits", [0, 17, -1])
def test_bad_bits_value(bits):
    with pytest.raises(ValueError, match="bits"):
        A.qrange(bits)
    with pytest.raises(ValueError, match="bits"):
        A.affine_qparams(-1.0, 1.0, bits)
    with pytest.raises(ValueError, match="bits"):
        A.calc_qparams(X, bits)
    with pytest.raises(ValueError, match="bits"):
        A.quantize_tensor(X, bits)
    with pytest.raises(ValueError, match="bits"):
        A.fake_quantize_tensor(X, bits)


@pytest.mark.parametrize("bits", [8.0, "8", True, None])
def test_bad_bits_type(bits):
    with pytest.raises(TypeError, match="bits"):
        A.qrange(bits)
    with pytest.raises(TypeError, match="bits"):
        A.fake_quantize_tensor(X, bits)


def test_qrange_bad_flags():
    with pytest.raises(ValueError, match="restricted"):
        A.qrange(8, signed=False, restricted=True)
    with pytest.raises(ValueError, match="restricted"):
        A.qrange(1, signed=True, restricted=True)
    with pytest.raises(TypeError, match="signed"):
        A.qrange(8, signed=1)
    with pytest.raises(TypeError, match="restricted"):
        A.qrange(8, restricted="yes")
    with pytest.raises(ValueError, match="restricted"):
        A.quantize_tensor(X, 8, signed=False, restricted=True)
    with pytest.raises(ValueError, match="restricted"):
        A.affine_qparams(-1.0, 1.0, 8, signed=False, restricted=True)


def test_affine_qparams_bad_input():
    with pytest.raises(ValueError, match="x_min"):
        A.affine_qparams(2.0, 1.0)
    with pytest.raises(ValueError, match="x_min"):
        A.affine_qparams(torch.tensor([0.0, 3.0]), torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="finite"):
        A.affine_qparams(float("nan"), 1.0)
    with pytest.raises(ValueError, match="finite"):
        A.affine_qparams(-1.0, float("inf"))
    with pytest.raises(ValueError, match="non-empty"):
        A.affine_qparams(torch.tensor([]), torch.tensor([]))
    with pytest.raises(ValueError, match="same shape"):
        A.affine_qparams(torch.zeros(2), torch.ones(3))
    with pytest.raises(TypeError, match="symmetric"):
        A.affine_qparams(-1.0, 1.0, symmetric="yes")


@pytest.mark.parametrize(
    "fn",
    [
        lambda x: A.calc_qparams(x),
        lambda x: A.quantize(x, 0.1, 0, -128, 127),
        lambda x: A.fake_quantize(x, 0.1, 0, -128, 127),
        lambda x: A.quantize_tensor(x),
        lambda x: A.fake_quantize_tensor(x),
        lambda x: A.mse(x, x),
        lambda x: A.sqnr_db(x, x),
    ],
    ids=["calc_qparams", "quantize", "fake_quantize", "quantize_tensor", "fake_quantize_tensor", "mse", "sqnr_db"],
)
def test_bad_x(fn):
    for bad in (torch.tensor([1.0, float("nan")]), torch.tensor([float("inf"), 0.0]), torch.tensor([-float("inf")])):
        with pytest.raises(ValueError, match="x.*finite"):
            fn(bad)
    with pytest.raises(ValueError, match="x must be a non-empty"):
        fn(torch.tensor([]))
    with pytest.raises(TypeError, match="x must be a (floating-point|float32)"):
        fn(torch.arange(4))
    with pytest.raises(TypeError, match="x must be a (floating-point|float32)"):
        fn(torch.ones(3, dtype=torch.bool))
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        fn([1.0, 2.0])


@pytest.mark.parametrize("scale", [0.0, -0.1, float("nan"), float("inf"), torch.tensor([0.1, 0.0])])
def test_bad_scale(scale):
    x = torch.randn(2, 3)
    axis = 0 if isinstance(scale, torch.Tensor) else None
    with pytest.raises(ValueError, match="scale"):
        A.quantize(x, scale, 0, -128, 127, axis=axis)
    with pytest.raises(ValueError, match="scale"):
        A.fake_quantize(x, scale, 0 if axis is None else torch.zeros(2, dtype=torch.int32), -128, 127, axis=axis)
    with pytest.raises(ValueError, match="scale"):
        A.dequantize(torch.zeros(2, 3, dtype=torch.int8), scale, 0, axis=axis)


def test_bad_scale_types_and_shapes():
    with pytest.raises(TypeError, match="scale"):
        A.quantize(X, "0.1", 0, -128, 127)
    with pytest.raises(TypeError, match="scale"):
        A.quantize(X, torch.tensor(1), 0, -128, 127)  # integer tensor
    with pytest.raises(ValueError, match="scale"):
        A.quantize(X, torch.ones(3) * 0.1, 0, -128, 127, axis=0)  # axis 0 has 4 channels
    with pytest.raises(ValueError, match="scale"):
        A.quantize(X, torch.ones(2) * 0.1, 0, -128, 127)  # per-tensor needs one scale
    with pytest.raises(ValueError, match="scale"):
        A.fake_quantize(
            X, torch.ones(4, 2) * 0.1, torch.zeros(4, 2, dtype=torch.int32), -128, 127, axis=1, group_size=2
        )


def test_bad_zero_point():
    with pytest.raises(ValueError, match="zero_point"):
        A.quantize(X, 0.1, 128, -128, 127)
    with pytest.raises(ValueError, match="zero_point"):
        A.quantize(X, 0.1, -1, 0, 255)
    with pytest.raises(ValueError, match="zero_point"):
        A.fake_quantize(X, 0.1, 300, 0, 255)
    with pytest.raises(ValueError, match="zero_point"):
        A.quantize(X, 0.1, 0.5, -128, 127)
    with pytest.raises(ValueError, match="zero_point"):
        A.quantize(X, 0.1, float("nan"), -128, 127)
    with pytest.raises(TypeError, match="zero_point"):
        A.quantize(X, 0.1, torch.tensor(True), -128, 127)
    with pytest.raises(ValueError, match="zero_point"):
        A.quantize(X, torch.full((4,), 0.1), torch.zeros(3, dtype=torch.int32), -128, 127, axis=0)
    with pytest.raises(ValueError, match="zero_point"):
        A.dequantize(torch.zeros(4, 6, dtype=torch.int8), torch.full((4,), 0.1), torch.zeros(3), axis=0)


def test_bad_qmin_qmax():
    with pytest.raises(ValueError, match="qmin"):
        A.quantize(X, 0.1, 0, 5, 5)
    with pytest.raises(ValueError, match="qmin"):
        A.fake_quantize(X, 0.1, 0, 10, -10)
    with pytest.raises(TypeError, match="qmin"):
        A.quantize(X, 0.1, 0, -128.0, 127)
    with pytest.raises(TypeError, match="qmax"):
        A.fake_quantize(X, 0.1, 0, -128, "127")
    with pytest.raises(ValueError, match="qmax - qmin"):
        A.quantize(X, 0.1, 0, -40000, 40000)
    with pytest.raises(ValueError, match="qmin"):
        A.quantize(X, 0.1, 0, -(2**17), 0)


def test_bad_granularity_arguments():
    with pytest.raises(ValueError, match="granularity"):
        A.quantize_tensor(X, 8, granularity="row")
    with pytest.raises(ValueError, match="granularity"):
        A.fake_quantize_tensor(X, 8, granularity="per_channel")
    with pytest.raises(ValueError, match="group_size"):
        A.fake_quantize_tensor(X, 8, granularity="group", axis=1)
    with pytest.raises(ValueError, match="group_size"):
        A.fake_quantize_tensor(X, 8, granularity="group", axis=1, group_size=4)  # 6 % 4 != 0
    with pytest.raises(ValueError, match="group_size"):
        A.calc_qparams(X, 8, axis=1, group_size=5)
    with pytest.raises(ValueError, match="group_size"):
        A.calc_qparams(X, 8, group_size=2)  # no axis
    with pytest.raises(ValueError, match="group_size"):
        A.quantize(X, 0.1, 0, -128, 127, axis=1, group_size=0)
    with pytest.raises(TypeError, match="group_size"):
        A.fake_quantize(X, 0.1, 0, -128, 127, axis=1, group_size=2.0)
    with pytest.raises(ValueError, match="axis"):
        A.calc_qparams(X, 8, axis=2)
    with pytest.raises(ValueError, match="axis"):
        A.quantize_tensor(X, 8, granularity="channel", axis=-3)
    with pytest.raises(TypeError, match="axis"):
        A.quantize(X, 0.1, 0, -128, 127, axis=0.0)
    with pytest.raises(ValueError, match="axis"):
        A.dequantize(torch.zeros(4, 6, dtype=torch.int8), 0.1, 0, axis=5)


def test_bad_scheme_and_convention_names():
    with pytest.raises(ValueError, match="scheme"):
        A.quantize_tensor(X, 8, scheme="asymmetric")
    with pytest.raises(ValueError, match="scheme"):
        A.fake_quantize_tensor(X, 8, scheme="scale")
    with pytest.raises(ValueError, match="convention"):
        A.quantize(X, 0.1, 0, -128, 127, convention="round_half_up")


def test_dequantize_bad_zero_point():
    q = torch.zeros(3, dtype=torch.int8)
    with pytest.raises(TypeError, match="zero_point"):
        A.dequantize(q, 0.1, "0")
    with pytest.raises(ValueError, match="zero_point"):
        A.dequantize(q, 0.1, 0.5)
    with pytest.raises(TypeError, match="zero_point"):
        A.dequantize(q, 0.1, torch.tensor(False))


def test_dequantize_bad_q():
    with pytest.raises(TypeError, match="q must be an integer"):
        A.dequantize(torch.zeros(3), 0.1, 0)
    with pytest.raises(TypeError, match="q must be an integer"):
        A.dequantize(torch.zeros(3, dtype=torch.bool), 0.1, 0)
    with pytest.raises(ValueError, match="q must be a non-empty"):
        A.dequantize(torch.zeros(0, dtype=torch.int8), 0.1, 0)
    with pytest.raises(TypeError, match="q must be a torch.Tensor"):
        A.dequantize([1, 2], 0.1, 0)


def test_mse_sqnr_bad_pairs():
    with pytest.raises(ValueError, match="same shape"):
        A.mse(torch.zeros(3), torch.zeros(4))
    with pytest.raises(ValueError, match="same shape"):
        A.sqnr_db(torch.zeros(3), torch.zeros(3, 1))
    with pytest.raises(ValueError, match="x_hat"):
        A.mse(torch.zeros(3), torch.tensor([0.0, float("nan"), 1.0]))
    with pytest.raises(TypeError, match="x_hat"):
        A.sqnr_db(torch.zeros(3), torch.zeros(3, dtype=torch.int32))


# ------------------------------------------------------------------------------- fake_quantize_weight


@pytest.mark.parametrize("scheme", ["affine", "symmetric"])
def test_fake_quantize_weight_granularities(scheme):
    w = _random((8, 4, 3, 3), 71, heavy=True)
    rows = w.reshape(8, -1)
    got = A.fake_quantize_weight(w, 4, scheme=scheme, granularity="tensor")
    assert torch.equal(got, A.fake_quantize_tensor(w, 4, scheme=scheme))
    got = A.fake_quantize_weight(w, 4, scheme=scheme, granularity="channel")
    assert torch.equal(got, A.fake_quantize_tensor(w, 4, scheme=scheme, granularity="channel", axis=0))
    got = A.fake_quantize_weight(w, 4, scheme=scheme, granularity="group", group_size=12)  # 36 = 3 * 12
    want = A.fake_quantize_tensor(rows, 4, scheme=scheme, granularity="group", axis=1, group_size=12)
    assert torch.equal(got, want.reshape(w.shape))
    # 36 inputs, groups of 16: groups [0:16], [16:32] and the padded tail [32:36] quantized on its own
    got = A.fake_quantize_weight(w, 4, scheme=scheme, granularity="group", group_size=16).reshape(8, -1)
    for start, stop in [(0, 16), (16, 32), (32, 36)]:
        for r in range(8):
            assert torch.equal(got[r, start:stop], A.fake_quantize_tensor(rows[r, start:stop], 4, scheme=scheme))


def test_fake_quantize_weight_bad_input():
    w = torch.randn(4, 6)
    with pytest.raises(ValueError, match="w must be a weight"):
        A.fake_quantize_weight(torch.randn(6))
    with pytest.raises(TypeError, match="w must be a floating-point"):
        A.fake_quantize_weight(torch.ones(4, 6, dtype=torch.int8))
    with pytest.raises(ValueError, match="w must contain only finite"):
        A.fake_quantize_weight(torch.full((2, 2), float("nan")))
    with pytest.raises(ValueError, match="w must be a non-empty"):
        A.fake_quantize_weight(torch.zeros(0, 3))
    with pytest.raises(ValueError, match="bits"):
        A.fake_quantize_weight(w, 17)
    with pytest.raises(ValueError, match="scheme"):
        A.fake_quantize_weight(w, 8, scheme="asymmetric")
    with pytest.raises(ValueError, match="granularity"):
        A.fake_quantize_weight(w, 8, granularity="row")
    with pytest.raises(ValueError, match="group_size"):
        A.fake_quantize_weight(w, 8, granularity="group")
    with pytest.raises(ValueError, match="group_size"):
        A.fake_quantize_weight(w, 8, granularity="group", group_size=0)
    with pytest.raises(ValueError, match="group_size"):
        A.fake_quantize_weight(w, 8, granularity="channel", group_size=2)


# ---------------------------------------------------------------------------------------------
# the exercises' checkers: the right answer passes, every classic wrong answer is rejected
# ---------------------------------------------------------------------------------------------

_EPS32 = torch.finfo(torch.float32).eps


def _symmetric(*, divisor=None, ignore_restricted=False, signed_max=False, eps=True, zero_point=0):
    """Symmetric qparams with one classic mistake switched on (the defaults are right)."""

    def fn(x, bits, restricted=False):
        from helpers.affine import qrange

        lo, hi = qrange(bits, restricted=restricted and not ignore_restricted)
        amax = x.max().clamp(min=0) if signed_max else torch.maximum(-x.min().clamp(max=0), x.max().clamp(min=0))
        scale = amax / (divisor(bits) if divisor else float(hi - lo) / 2)
        return (torch.clamp(scale, min=_EPS32) if eps else scale), zero_point

    return fn


def test_check_symmetric_qparams(capsys):
    from helpers.affine import check_symmetric_qparams

    assert check_symmetric_qparams(_symmetric())
    assert "correct" in capsys.readouterr().out
    wrong = {
        "qmax 2^(b-1)": _symmetric(divisor=lambda b: float(2 ** (b - 1))),
        "always /(2^(b-1)-1)": _symmetric(divisor=lambda b: float(2 ** (b - 1) - 1)),
        "restricted ignored": _symmetric(ignore_restricted=True),
        "max x, not max |x|": _symmetric(signed_max=True),
        "no eps (zero tensor)": _symmetric(eps=False),
        "nonzero zero point": _symmetric(zero_point=1),
    }
    for name, fn in wrong.items():
        assert not check_symmetric_qparams(fn, quiet=True), name
    assert not check_symmetric_qparams(None, quiet=True)
    assert not check_symmetric_qparams(lambda x, b, r=False: 0.1, quiet=True)  # not a tuple


def test_check_prediction():
    from helpers.affine import check_prediction, fake_quantize_tensor, sqnr_db

    x = torch.randn(50_000, generator=torch.Generator().manual_seed(9))
    measured = sqnr_db(x, fake_quantize_tensor(x, 6))
    fit = (6.01, -8.6)
    right = fit[0] * 6 + fit[1]
    assert check_prediction(right, measured, x, fit, quiet=True)
    u = torch.rand(50_000, generator=torch.Generator().manual_seed(9)) * 2 - 1
    wrong = {
        "6.02 dB/bit without the offset": (6.02 * 6, measured, x),
        "fit at 8 bits": (fit[0] * 8 + fit[1], measured, x),
        "measured at 8 bits": (right, sqnr_db(x, fake_quantize_tensor(x, 8)), x),
        "20 log10 of a power ratio": (right, 2 * measured, x),
        "symmetric instead of min-max affine": (right, sqnr_db(x, fake_quantize_tensor(x, 6, scheme="symmetric")), x),
        "uniform data": (right, sqnr_db(u, fake_quantize_tensor(u, 6)), u),
        "too few samples": (right, measured, x[:1000]),
        "measured is the prediction": (right, right, x),
        "unanswered": (None, None, None),
    }
    for name, (p, m, s) in wrong.items():
        assert not check_prediction(p, m, s, fit, quiet=True), name


def test_check_clip():
    from helpers.affine import check_clip, fake_quantize_range, fake_quantize_weight, mse

    w = torch.randn(64, 128, generator=torch.Generator().manual_seed(0)) * 0.05
    m = w.abs().max().item()
    assert check_clip(0.5, w, quiet=True)
    assert mse(w, fake_quantize_range(w, -0.5 * m, 0.5 * m, 3, scheme="symmetric")) < mse(
        w, fake_quantize_weight(w, 3, granularity="tensor")
    )  # the checker's torch computation agrees with the helpers
    for wrong in (1.0, 80, 50.0, 0.05, 0.0, -0.5, 1.5, None, "0.5", True):
        assert not check_clip(wrong, w, quiet=True), wrong


# ---------------------------------------------------------------------------------------------
# as strict as torch: half/double inputs agree with torch's kernels; what torch turns into garbage is refused by name
# ---------------------------------------------------------------------------------------------


def _bit_equal(ours: torch.Tensor, ref: torch.Tensor) -> bool:
    """Same dtype, same values and the same sign on every zero (torch never returns -0.0 here)."""
    return ours.dtype == ref.dtype and torch.equal(ours, ref) and torch.equal(torch.signbit(ours), torch.signbit(ref))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_fake_quantize_per_tensor_equals_torch_in_every_dtype(dtype):
    x = (torch.randn(20_000, generator=torch.Generator().manual_seed(0)) * 3).to(dtype)
    x[:500] = -torch.rand(500, generator=torch.Generator().manual_seed(1)).to(dtype) * 0.01  # round to -0.0
    for scale, zp in ((0.02, 3), (0.0123, -7), (0.25, 0)):
        ref = torch.fake_quantize_per_tensor_affine(x, scale, zp, -128, 127)  # computes in float32, returns dtype
        assert _bit_equal(A.fake_quantize(x, scale, zp, -128, 127), ref)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_fake_quantize_equals_torch_on_every_half_bit_pattern(dtype):
    x = torch.arange(-(2**15), 2**15, dtype=torch.int32).to(torch.int16).view(dtype)
    x = x[torch.isfinite(x) & (x.float().abs() < 3e38)].reshape(1, -1).repeat(3, 1)
    for scale, zp in ((0.02, 3), (1e-3, -128), (7.0, 0)):
        ref = torch.fake_quantize_per_tensor_affine(x, scale, zp, -128, 127)
        assert _bit_equal(A.fake_quantize(x, scale, zp, -128, 127), ref)
    s = torch.tensor([0.02, 1e-3, 7.0])
    x = x[:, (x[0].double().abs() / 1e-3) < 2**62]  # see test_per_channel_torch_wraps_past_int64 below
    for z in (torch.tensor([3, -128, 0], dtype=torch.int32), torch.tensor([2.5, -3.0, 0.0])):
        ref = torch.fake_quantize_per_channel_affine(x, s, z, 0, -128, 127)
        assert _bit_equal(A.fake_quantize(x, s, z, -128, 127, axis=0), ref)


def test_per_channel_torch_wraps_past_int64():
    # torch's per-channel fake-quant casts round(x / scale) to int64 before clamping, so |x / scale| >= 2**63
    # wraps to quant_min; its per-tensor fake-quant and quantize_per_channel saturate, and so does the helper
    x = torch.tensor([[1e20, 1e19, 9e18, -1e20]])
    s, z = torch.tensor([1.0]), torch.tensor([0], dtype=torch.int32)
    assert torch.fake_quantize_per_channel_affine(x, s, z, 0, -128, 127).tolist() == [[-128.0, -128.0, 127.0, -128.0]]
    assert torch.fake_quantize_per_tensor_affine(x, 1.0, 0, -128, 127).tolist() == [[127.0, 127.0, 127.0, -128.0]]
    assert torch.quantize_per_channel(x, s, z.long(), 0, torch.qint8).int_repr().tolist() == [[127, 127, 127, -128]]
    assert A.fake_quantize(x, s, z, -128, 127, axis=0).tolist() == [[127.0, 127.0, 127.0, -128.0]]


@pytest.mark.parametrize("x_dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("zp_dtype", [torch.int32, torch.float32, torch.float16])
def test_fake_quantize_per_channel_equals_torch_for_every_zero_point_dtype(x_dtype, zp_dtype):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(16, 512, generator=g) * 30
    x[:, :64] = (torch.randint(-400, 400, (16, 64), generator=g).float() + 0.5) * 0.25  # ties at scale 0.25
    x[:, 64:80] = -torch.rand(16, 16, generator=g) * 0.1  # round to -0.0
    x = x.to(x_dtype)
    s = torch.rand(16, generator=g) * 0.05 + 1e-3
    s[:6] = 0.25
    for qmin, qmax in ((-128, 127), (0, 255), (-8, 7)):
        if zp_dtype == torch.int32:
            z = torch.randint(qmin, qmax + 1, (16,), generator=g, dtype=torch.int32)
        else:  # torch's float rule: fractional zero points allowed; whole odd ones round ties unlike int32's
            z = torch.rand(16, generator=g) * 20 - 10
            z[:8] = torch.round(z[:8])
            z[0], z[1], z[2], z[3] = 1.0, 3.0, -0.0, 0.0
            z = z.to(zp_dtype)
        ref = torch.fake_quantize_per_channel_affine(x, s, z, 0, qmin, qmax)
        assert _bit_equal(A.fake_quantize(x, s, z, qmin, qmax, axis=0), ref)


def test_float_zero_points_follow_torchs_float_rule_on_ties():
    x = torch.tensor([[0.5, 1.5, 2.5, -0.5]] * 2)
    s = torch.ones(2)
    z_int, z_float = torch.tensor([1, 2], dtype=torch.int32), torch.tensor([1.0, 2.0])
    assert A.fake_quantize(x, s, z_int, -128, 127, axis=0).tolist() == [[0.0, 2.0, 2.0, 0.0]] * 2
    # round(x + 1) on ties: 1.5 -> 2, 2.5 -> 2, 3.5 -> 4, 0.5 -> 0, then minus 1; an even zero point changes nothing
    assert A.fake_quantize(x, s, z_float, -128, 127, axis=0).tolist() == [[1.0, 1.0, 3.0, -1.0], [0.0, 2.0, 2.0, 0.0]]


def test_dtypes_torch_refuses_are_refused_by_name():
    x, x2 = torch.randn(6), torch.randn(2, 3)
    for dtype in (torch.float16, torch.bfloat16, torch.float64):
        with pytest.raises(RuntimeError):
            torch.quantize_per_tensor(x.to(dtype), 0.1, 0, torch.qint8)
        with pytest.raises(TypeError, match="x must be a float32 tensor.*x.float()"):
            A.quantize(x.to(dtype), 0.1, 0, -128, 127)
        with pytest.raises(TypeError, match="x must be a float32 tensor"):
            A.quantize_tensor(x.to(dtype), 8)
    # quantizing x.float() is what a caller must do for torch too, and then the codes agree
    xh = x.half()
    codes = torch.quantize_per_tensor(xh.float(), 0.02, 3, torch.qint8).int_repr()
    assert torch.equal(A.quantize(xh.float(), 0.02, 3, -128, 127), codes)
    zp32 = torch.zeros(2, dtype=torch.int32)
    for dtype in (torch.float16, torch.float64):
        s = torch.tensor([0.1, 0.2], dtype=dtype)
        with pytest.raises(RuntimeError, match="Scale must be Float"):
            torch.fake_quantize_per_channel_affine(x2, s, zp32, 0, -128, 127)
        with pytest.raises(TypeError, match="scale must be a float32 tensor"):
            A.fake_quantize(x2, s, zp32, -128, 127, axis=0)
    for dtype in (torch.int64, torch.int16, torch.int8, torch.float64):
        z = torch.zeros(2, dtype=dtype)
        with pytest.raises(RuntimeError, match="Zero-point must be Int32, Float or Half"):
            torch.fake_quantize_per_channel_affine(x2, torch.tensor([0.1, 0.2]), z, 0, -128, 127)
        with pytest.raises(TypeError, match="zero_point must be an int32, float32 or float16 tensor"):
            A.fake_quantize(x2, torch.tensor([0.1, 0.2]), z, -128, 127, axis=0)
    with pytest.raises(ValueError, match="zero_point must contain only finite"):
        A.fake_quantize(x2, torch.tensor([0.1, 0.2]), torch.tensor([float("nan"), 0.0]), -128, 127, axis=0)


@pytest.mark.parametrize(
    "scale",
    [1e39, 1e-46, 1e-40, torch.tensor([0.1, 1e39], dtype=torch.float64), torch.tensor([1e-40], dtype=torch.float64)],
)
def test_scales_torch_turns_into_garbage_are_refused(scale):
    # torch.quantize_per_tensor(x, 1e39, ...) gives all-zero codes and its fake-quant NaN; 1e-46 saturates every code
    x = torch.ones(2) if not isinstance(scale, torch.Tensor) or scale.numel() == 1 else torch.ones(2, 3)
    kw = {} if not isinstance(scale, torch.Tensor) or scale.numel() == 1 else {"axis": 0}
    zp = 0 if not kw else torch.zeros(2, dtype=torch.int32)
    for fn in (A.quantize, A.fake_quantize):
        with pytest.raises(ValueError, match="scale must be a normal float32"):
            fn(x, scale, zp, -128, 127, **kw)
    with pytest.raises(ValueError, match="scale must be a normal float32"):
        A.dequantize(x.to(torch.int8), scale, zp, **kw)


def test_ranges_float32_cannot_hold_are_refused():
    with pytest.raises(TypeError, match="x_min"):
        A.affine_qparams(None, 1.0)
    with pytest.raises(TypeError, match="x_max"):
        A.affine_qparams(0.0, "1")
    with pytest.raises(ValueError, match="float32's range"):
        A.affine_qparams(-1e39, 1.0)
    with pytest.raises(ValueError, match="overflowed"):
        A.affine_qparams(-3e38, 3e38)  # torch's MinMaxObserver returns scale inf here
    with pytest.raises(TypeError, match="x must be a float32 tensor"):  # torch's quantize takes float32 only
        A.quantize(torch.tensor([1e39], dtype=torch.float64), 0.1, 0, -128, 127)
    with pytest.raises(ValueError, match="float32 can represent"):
        A.fake_quantize(torch.tensor([-1e39], dtype=torch.float64), 0.1, 0, -128, 127)
    s, z = A.affine_qparams(-1e38, 1e38)  # the largest range float32 still holds
    assert math.isfinite(s.item()) and z.item() in (-1, 0)
