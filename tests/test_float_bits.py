"""helpers.float_bits: format table vs torch.finfo, bits vs struct and torch's float dtypes (bit-exact), properties, bad input."""

import math
import struct

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers.float_bits import (
    FORMATS,
    FloatBits,
    classify,
    decode,
    encode,
    float_bits,
    format_info,
    format_table,
    round_to_format,
    ulp,
    value_from_bits,
)

NARROW = ("fp16", "bf16", "fp8_e4m3", "fp8_e5m2")  # small enough to enumerate every code
VIEW = {1: torch.uint8, 2: torch.int16, 4: torch.int32}


def torch_codes(x: torch.Tensor, fmt: str) -> torch.Tensor:
    """Bit patterns torch's own cast produces, as int64 in 0..2^bits-1."""
    dtype = format_info(fmt).torch_dtype
    y = x.to(torch.float32).to(dtype)
    return y.view(VIEW[dtype.itemsize]).to(torch.int64) & (2 ** (8 * dtype.itemsize) - 1)


def torch_round(x: torch.Tensor, fmt: str) -> torch.Tensor:
    return x.to(torch.float32).to(format_info(fmt).torch_dtype).to(torch.float32)


def assert_same_floats(a: torch.Tensor, b: torch.Tensor) -> None:
    """Equal bit for bit (so -0.0 != +0.0), except that any NaN matches any NaN."""
    assert a.dtype == b.dtype == torch.float32
    assert torch.equal(torch.isnan(a), torch.isnan(b))
    keep = ~torch.isnan(a)
    assert torch.equal(a[keep].view(torch.int32), b[keep].view(torch.int32))


def wide_random(n: int = 20000, seed: int = 0) -> torch.Tensor:
    """Values spread over ~60 orders of magnitude, both signs, plus specials."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, generator=g) * torch.exp(torch.randn(n, generator=g) * 12)
    specials = torch.tensor([0.0, -0.0, math.inf, -math.inf, math.nan, 1e-45, -1e-45, 1e-40, 3.4e38, -3.4e38])
    return torch.cat([x, specials])


def all_codes(fmt: str) -> torch.Tensor:
    return torch.arange(2 ** format_info(fmt).bits, dtype=torch.int64)


def midpoints(fmt: str) -> torch.Tensor:
    """Exact midpoints between every pair of adjacent finite non-negative values of ``fmt`` (ties)."""
    v = decode(all_codes(fmt)[: 2 ** (format_info(fmt).bits - 1)], fmt).to(torch.float64)
    v = v[torch.isfinite(v)]
    mid = (v[:-1] + v[1:]) / 2
    assert torch.equal(mid.to(torch.float32).to(torch.float64), mid), "midpoints must be exact in float32"
    return mid.to(torch.float32)


# ---------------------------------------------------------------- format table


@pytest.mark.parametrize("fmt", FORMATS)
def test_format_table_matches_torch_finfo(fmt):
    info = format_info(fmt)
    fi = torch.finfo(info.torch_dtype)
    assert info.bits == fi.bits == 1 + info.exp_bits + info.man_bits
    assert info.max == fi.max
    assert info.smallest_normal == fi.smallest_normal == fi.tiny
    assert info.eps == fi.eps
    # smallest subnormal: the pattern 0...01 viewed as the torch dtype
    one = torch.tensor([1], dtype=VIEW[info.torch_dtype.itemsize]).view(info.torch_dtype).to(torch.float64)
    assert info.smallest_subnormal == float(one[0])


def test_format_table_rows_and_known_layouts():
    rows = format_table()
    assert [r.name for r in rows] == list(FORMATS)
    layout = {r.name: (r.exp_bits, r.man_bits, r.bias) for r in rows}
    assert layout == {
        "fp32": (8, 23, 127),
        "fp16": (5, 10, 15),
        "bf16": (8, 7, 127),
        "fp8_e4m3": (4, 3, 7),
        "fp8_e5m2": (5, 2, 15),
    }
    assert format_info("fp16").max == 65504.0 and format_info("fp8_e4m3").max == 448.0
    assert format_info("fp8_e5m2").max == 57344.0
    assert not format_info("fp8_e4m3").has_inf and format_info("fp8_e5m2").has_inf


# ---------------------------------------------------------------- bit-exact cross-checks


@pytest.mark.parametrize("fmt", NARROW)
def test_decode_every_code_matches_torch_view(fmt):
    info = format_info(fmt)
    codes = all_codes(fmt)
    raw = codes.to(torch.int32) if info.bits == 8 else codes
    as_view = raw.to(VIEW[info.torch_dtype.itemsize]).view(info.torch_dtype).to(torch.float32)
    assert_same_floats(decode(codes, fmt), as_view)


def test_decode_fp32_random_codes_match_torch_view():
    codes = torch.randint(0, 2**32, (20000,), dtype=torch.int64)
    as_int32 = torch.where(codes >= 2**31, codes - 2**32, codes).to(torch.int32)
    assert_same_floats(decode(codes, "fp32"), as_int32.view(torch.float32))


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_to_format_and_encode_match_torch_on_random_values(fmt):
    x = wide_random()
    assert_same_floats(round_to_format(x, fmt), torch_round(x, fmt))
    nan = torch.isnan(x)
    assert torch.equal(encode(x, fmt)[~nan], torch_codes(x, fmt)[~nan])


@pytest.mark.parametrize("fmt", NARROW)
def test_ties_round_half_to_even_like_torch(fmt):
    mid = midpoints(fmt)
    x = torch.cat([mid, -mid])
    assert_same_floats(round_to_format(x, fmt), torch_round(x, fmt))
    finite = torch.isfinite(round_to_format(mid, fmt)) & (round_to_format(mid, fmt) < format_info(fmt).max)
    assert bool((encode(mid[finite], fmt) % 2 == 0).all()), "a tie must land on an even mantissa"
    # one float32 step either side of a tie decides it: below goes down, above goes up
    below = torch.nextafter(mid, torch.zeros_like(mid))
    above = torch.nextafter(mid, torch.full_like(mid, math.inf))
    for y in (below, above):
        assert_same_floats(round_to_format(y, fmt), torch_round(y, fmt))


@pytest.mark.parametrize("fmt", FORMATS)
def test_subnormal_values_round_like_torch(fmt):
    info = format_info(fmt)
    k = torch.linspace(0, 4 * 2**info.man_bits, 4001, dtype=torch.float64)
    x = (k * info.smallest_subnormal / 4).to(torch.float32)  # quarter steps through the subnormal range
    x = torch.cat([x, -x])
    assert_same_floats(round_to_format(x, fmt), torch_round(x, fmt))


def test_fp32_bits_match_struct():
    g = torch.Generator().manual_seed(1)
    values = (
        torch.randn(300, generator=g, dtype=torch.float64) * torch.exp(torch.randn(300, generator=g) * 20)
    ).tolist()
    values += [85.125, 0.1, -2.5, 1e-40, 1e-45, 3.4e38, 0.0, -0.0]
    for v in values:
        (expected,) = struct.unpack(">I", struct.pack(">f", v))
        rec = float_bits(v, "fp32")
        assert rec.code == expected, v
        assert rec.bits == format(expected, "032b")


def test_worked_example_85_125():
    rec = float_bits(85.125, "fp32")
    assert str(rec) == "0 10000101 01010100100000000000000"
    assert (rec.biased_exponent, rec.unbiased_exponent, rec.kind) == (133, 6, "normal")
    assert len(rec.mantissa) == 23 and rec.value == 85.125 and rec.error == 0.0


def test_overflow_behaviour_per_format():
    x = torch.tensor([65504.0, 65519.0, 65520.0, 1e6, math.inf, -math.inf])
    assert round_to_format(x, "fp16").tolist() == [65504.0, 65504.0, math.inf, math.inf, math.inf, -math.inf]
    assert round_to_format(torch.tensor([3.4e38]), "bf16").item() == math.inf
    # torch's float8_e4m3fn cast saturates: no inf, not NaN, even for inf input
    e4 = round_to_format(torch.tensor([464.0, 465.0, 480.0, 1e6, math.inf, -math.inf]), "fp8_e4m3")
    assert e4.tolist() == [448.0, 448.0, 448.0, 448.0, 448.0, -448.0]
    e5 = round_to_format(torch.tensor([57344.0, 61439.0, 61440.0, -1e9]), "fp8_e5m2")
    assert e5.tolist() == [57344.0, 57344.0, math.inf, -math.inf]


def test_special_values_classes_and_bits():
    assert float_bits(0.0, "fp16").kind == "zero" and float_bits(-0.0, "fp16").sign == "1"
    assert float_bits(2.0**-24, "fp16").bits == "0000000000000001"
    assert float_bits(2.0**-24, "fp16").kind == "subnormal"
    assert float_bits(2.0**-24, "fp16").unbiased_exponent == -14
    assert float_bits(2.0**-9, "fp8_e4m3").bits == "00000001"
    assert float_bits(math.inf, "fp16").bits == "0111110000000000"
    assert float_bits(-math.inf, "bf16").kind == "inf"
    nan = float_bits(math.nan, "fp8_e4m3")
    assert nan.kind == "nan" and nan.bits == "01111111" and nan.unbiased_exponent is None
    assert float_bits(math.nan, "fp32").bits == "0" + "1" * 8 + "1" + "0" * 22
    assert classify(torch.tensor([0.0, 1e-6, 1.0, 7e4, math.nan]), "fp16") == [
        "zero",
        "subnormal",
        "normal",
        "inf",
        "nan",
    ]


def test_float_bits_rounding_error_and_tensor_input():
    rec = float_bits(0.1, "fp16")
    assert rec.value == 0.0999755859375 and rec.error == pytest.approx(rec.value - 0.1, abs=0)
    assert float_bits(torch.tensor([0.1], dtype=torch.float64), "bf16").value == float_bits(0.1, "bf16").value
    assert isinstance(rec, FloatBits) and rec.fmt == "fp16"
    assert math.isnan(float_bits(math.inf, "fp16").error)


def test_value_from_bits_strings_and_ints():
    assert value_from_bits("0 10000101 01010100100000000000000", "fp32").value == 85.125
    assert value_from_bits("0_11110_1111111111", "fp16").value == 65504.0
    assert value_from_bits(0x7E, "fp8_e4m3").value == 448.0
    assert value_from_bits(0x7F, "fp8_e4m3").kind == "nan"
    assert value_from_bits(0x7C, "fp8_e5m2").kind == "inf"
    assert value_from_bits("1 0000 000", "fp8_e4m3").value == 0.0 and value_from_bits(0x80, "fp8_e4m3").sign == "1"


@pytest.mark.parametrize("fmt", FORMATS)
def test_ulp_is_eps_at_one_and_the_gap_to_the_next_code(fmt):
    info = format_info(fmt)
    assert float(ulp(torch.tensor([1.0]), fmt)[0]) == info.eps
    x = torch.tensor([1e-3, 0.3, 1.0, 7.0, 100.0, info.smallest_subnormal, info.smallest_normal])
    r = round_to_format(x, fmt)
    nxt = decode(encode(r, fmt) + 1, fmt).to(torch.float64)
    assert torch.equal(ulp(x, fmt), nxt - r.to(torch.float64))


def test_ulp_is_nan_outside_the_range_even_where_the_cast_saturates():
    # fp16: 65519 rounds to max 65504 (ulp 32); 65520 = max + ulp/2 is a tie that rounds past max (inf)
    got = ulp(torch.tensor([65504.0, 65519.0, 65520.0, 1000.0, math.inf, math.nan]), "fp16")
    assert got[:2].tolist() == [32.0, 32.0] and got[3] == 0.5 and bool(got[[2, 4, 5]].isnan().all())
    # fp8_e4m3: 464 = 448 + 16 ties to 448 (even mantissa 110); above it the cast saturates to 448,
    # but 1000 has no ulp in the format (not the gap at 448)
    x = torch.tensor([448.0, 464.0, 464.03125, 480.0, 1000.0, -1000.0, math.inf])
    got = ulp(x, "fp8_e4m3")
    assert got[:2].tolist() == [32.0, 32.0] and bool(got[2:].isnan().all())
    assert x.to(torch.float8_e4m3fn).float()[2:].abs().tolist() == [448.0] * 5  # what torch 2.14.1's CPU cast does


@pytest.mark.parametrize("fmt", ["fp16", "bf16", "fp8_e5m2"])
def test_ulp_is_nan_exactly_where_torchs_cast_overflows(fmt):
    info = format_info(fmt)
    hi = min(info.max * 1.1, torch.finfo(torch.float32).max)  # bf16's max * 1.1 is past float32's
    x = torch.linspace(info.max * 0.9, hi, 20001, dtype=torch.float64).to(torch.float32)
    x = torch.cat([x, -x])
    assert torch.equal(ulp(x, fmt).isnan(), x.to(info.torch_dtype).float().isinf())


# ---------------------------------------------------------------- properties

finite32 = st.floats(allow_nan=False, allow_infinity=False, width=32)


@settings(max_examples=200, deadline=None)
@given(v=st.floats(width=32), fmt=st.sampled_from(FORMATS))
def test_property_bits_round_trip(v, fmt):
    rec = float_bits(v, fmt)
    back = value_from_bits(rec.bits, fmt)
    if math.isnan(rec.value):
        assert math.isnan(back.value)
    else:
        assert struct.pack(">f", back.value) == struct.pack(">f", rec.value)
        assert back.code == rec.code and back.kind == rec.kind


@settings(max_examples=100, deadline=None)
@given(xs=st.lists(finite32, min_size=1, max_size=40), fmt=st.sampled_from(FORMATS))
def test_property_round_is_idempotent_and_monotone(xs, fmt):
    x = torch.tensor(sorted(xs), dtype=torch.float32)
    r = round_to_format(x, fmt)
    assert_same_floats(round_to_format(r, fmt), r)
    assert bool((r[1:] >= r[:-1]).all())


@settings(max_examples=100, deadline=None)
@given(v=finite32, fmt=st.sampled_from(NARROW))
def test_property_error_at_most_half_ulp_in_range(v, fmt):
    info = format_info(fmt)
    if abs(v) > info.max:
        return
    r = float(round_to_format(torch.tensor([v]), fmt)[0])
    if math.isinf(r):  # past max + half an ulp: overflow, checked elsewhere
        return
    half = float(ulp(torch.tensor([v]), fmt)[0]) / 2
    assert abs(r - v) <= half


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "call",
    [
        lambda f: format_info(f),
        lambda f: round_to_format(torch.ones(3), f),
        lambda f: encode(torch.ones(3), f),
        lambda f: decode(torch.zeros(3, dtype=torch.int64), f),
        lambda f: float_bits(1.0, f),
        lambda f: value_from_bits("0", f),
        lambda f: ulp(torch.ones(3), f),
        lambda f: classify(torch.ones(3), f),
    ],
)
def test_unknown_format_name_lists_the_allowed_names(call):
    with pytest.raises(ValueError, match="fmt must be one of .*'fp16'.*'fp8_e5m2'"):
        call("fp64")
    with pytest.raises(TypeError, match="fmt"):
        call(16)


@pytest.mark.parametrize("fn", [round_to_format, encode, ulp, classify])
def test_tensor_functions_reject_bad_tensors(fn):
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        fn([1.0, 2.0], "fp16")
    with pytest.raises(TypeError, match="x must be a floating-point tensor"):
        fn(torch.tensor([1, 2]), "fp16")
    with pytest.raises(ValueError, match="x must be a non-empty tensor"):
        fn(torch.tensor([]), "fp16")


def test_decode_rejects_bad_codes():
    with pytest.raises(TypeError, match="codes must be an integer tensor"):
        decode(torch.tensor([1.0]), "fp16")
    with pytest.raises(TypeError, match="codes"):
        decode([1, 2], "fp16")
    with pytest.raises(ValueError, match=r"codes must be in 0\.\.255"):
        decode(torch.tensor([256]), "fp8_e4m3")
    with pytest.raises(ValueError, match="codes"):
        decode(torch.tensor([-1]), "fp16")
    with pytest.raises(ValueError, match="codes"):
        decode(torch.tensor([], dtype=torch.int64), "fp16")


def test_float_bits_rejects_bad_values():
    with pytest.raises(TypeError, match="value must be a real number"):
        float_bits("1.0", "fp16")
    with pytest.raises(TypeError, match="value"):
        float_bits(True, "fp16")
    with pytest.raises(ValueError, match="value must be a single number"):
        float_bits(torch.ones(2), "fp16")
    with pytest.raises(TypeError, match="value must be a floating-point tensor"):
        float_bits(torch.tensor([1]), "fp16")


def test_value_from_bits_rejects_bad_patterns():
    with pytest.raises(ValueError, match="bits must contain only '0' and '1'"):
        value_from_bits("0102", "fp8_e4m3")
    with pytest.raises(ValueError, match="bits must contain only"):
        value_from_bits("", "fp8_e4m3")
    with pytest.raises(ValueError, match="bits must have exactly 16 binary digits for fp16, got 15"):
        value_from_bits("0" * 15, "fp16")
    with pytest.raises(ValueError, match=r"bits must be an integer in 0\.\.255"):
        value_from_bits(256, "fp8_e5m2")
    with pytest.raises(ValueError, match="bits"):
        value_from_bits(-1, "fp8_e5m2")
    with pytest.raises(TypeError, match="bits must be a str"):
        value_from_bits(1.0, "fp16")
    with pytest.raises(TypeError, match="bits"):
        value_from_bits(True, "fp16")


# ---------------------------------------------------------------------------------------------
# the exercises' checkers: the right answer passes, every classic wrong answer is rejected
# ---------------------------------------------------------------------------------------------


def _decoder(*, bias_off=0, subnormal="right", specials=True, sign=True):
    """A decoder with one classic mistake switched on (the defaults decode correctly)."""

    def fn(bits, exp_bits, man_bits):
        s, e, m = int(bits[0]), int(bits[1 : 1 + exp_bits], 2), int(bits[1 + exp_bits :], 2)
        bias = 2 ** (exp_bits - 1) - 1 + bias_off
        if specials and e == 2**exp_bits - 1:
            magnitude = math.inf if m == 0 else math.nan
        elif e == 0 and subnormal == "right":
            magnitude = m / 2**man_bits * 2.0 ** (1 - bias)
        elif e == 0 and subnormal == "minus bias":
            magnitude = m / 2**man_bits * 2.0 ** (-bias)
        else:  # "hidden one": the normal formula everywhere
            magnitude = (1 + m / 2**man_bits) * 2.0 ** (e - bias)
        return -magnitude if (s and sign) else magnitude

    return fn


def test_check_decode_passes_the_right_decoder(capsys):
    from helpers.float_bits import check_decode

    assert check_decode(_decoder())
    assert "correct (131355 cases)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("mistake", "where"),
    [
        ({"bias_off": 1}, "case 'normal: fp8_e5m2"),  # bias 2^(E-1) instead of 2^(E-1) - 1
        ({"subnormal": "hidden one"}, "case 'smallest subnormal"),  # no subnormal case
        ({"subnormal": "minus bias"}, "case 'smallest subnormal"),  # subnormal exponent -bias, not 1 - bias
        ({"specials": False}, "case 'inf"),  # all-ones exponent decoded as a normal number
        ({"sign": False}, "case 'negative"),  # sign ignored
    ],
)
def test_check_decode_rejects_classic_mistakes(mistake, where, capsys):
    from helpers.float_bits import check_decode

    assert not check_decode(_decoder(**mistake), quiet=True)
    assert not check_decode(_decoder(**mistake))
    assert where in capsys.readouterr().out


def test_check_decode_rejects_inf_for_nan_and_a_stub(capsys):
    from helpers.float_bits import check_decode

    def no_nan(bits, exp_bits, man_bits):  # every all-ones exponent is inf
        e = int(bits[1 : 1 + exp_bits], 2)
        if e == 2**exp_bits - 1:
            return -math.inf if bits[0] == "1" else math.inf
        return _decoder()(bits, exp_bits, man_bits)

    def stub(bits, exp_bits, man_bits):
        raise NotImplementedError

    assert not check_decode(no_nan, quiet=True)
    assert not check_decode(stub) and not check_decode(None)
    assert capsys.readouterr().out.count("not written yet") == 2


def test_check_first_gap():
    from helpers.float_bits import check_first_gap

    assert check_first_gap(2049, 257, quiet=True)  # 2^(M+1) + 1, found by torch's casts
    for fp16, bf16 in [(2048, 256), (1025, 129), (2047, 255), (257, 2049), (2049, 256), (None, 257), ("2049", 257)]:
        assert not check_first_gap(fp16, bf16, quiet=True), (fp16, bf16)


def test_check_halving_bit():
    from helpers.float_bits import check_halving_bit

    assert check_halving_bit(8, quiet=True)
    for wrong in (23, 7, 9, 0, 31, None, 8.0, "8", True):
        assert not check_halving_bit(wrong, quiet=True), wrong


def test_double_inputs_round_as_torch_casts_them():
    # torch's CPU cast from float64 goes through float32 (a double rounding): 1 + ulp/2 + 2^-40 becomes the tie
    # 1 + ulp/2 in float32 and then rounds to even (1.0), not up; round_to_format does the same
    for fmt in ("fp16", "bf16", "fp8_e4m3", "fp8_e5m2"):
        info = format_info(fmt)
        g = torch.Generator().manual_seed(2)
        x = torch.cat(
            [
                torch.tensor([1 + 2.0 ** -(info.man_bits + 1) + 2.0**-40], dtype=torch.float64),
                torch.randn(5000, generator=g, dtype=torch.float64) * 4,
            ]
        )
        ref = x.to(info.torch_dtype).to(torch.float32)
        assert torch.equal(round_to_format(x, fmt), ref), fmt
        assert round_to_format(x[:1], fmt).item() == 1.0


def test_oversized_python_numbers_are_refused_by_name():
    from helpers.float_bits import float_bits_view

    with pytest.raises(ValueError, match="value must be a number a float64 can hold"):
        float_bits(10**400, "fp16")
    with pytest.raises(ValueError, match="value must be a number a float64 can hold"):
        float_bits_view(-(10**400), "fp32")
    assert float_bits(10**300, "fp16").kind == "inf"  # a big int that float64 holds overflows fp16 like torch's cast
