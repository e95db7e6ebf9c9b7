"""The from-scratch bitsandbytes references (helpers.bnb) against bitsandbytes 0.50 itself."""

import bitsandbytes as bnb
import bitsandbytes.functional as F
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from helpers import bnb as R


def _outlier_input(shape=(3, 24, 384), cols=(5, 77, 300), gain=(30.0, 12.0, 8.0), seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g)
    for c, k in zip(cols, gain):
        x[..., c] *= k
    return x


def _bnb_int8(linear: nn.Linear, threshold: float) -> nn.Module:
    m = bnb.nn.Linear8bitLt(linear.in_features, linear.out_features, has_fp16_weights=False, threshold=threshold)
    m.load_state_dict(linear.state_dict())
    return m.to("cpu").eval()


# ----------------------------------------------------------------------------- code tables


def test_dynamic_code_equals_bitsandbytes():
    assert torch.equal(R.dynamic_code(), F.create_dynamic_map(signed=True))
    assert torch.equal(R.dynamic_code(signed=False), F.create_dynamic_map(signed=False))
    code = R.dynamic_code()
    assert code.numel() == 256 and bool((code[1:] >= code[:-1]).all()) and float(code[-1]) == 1.0


def test_code_4bit_tables():
    nf4 = R.code_4bit("nf4")
    assert nf4.numel() == 16 and bool((nf4[1:] > nf4[:-1]).all())
    assert float(nf4[0]) == -1.0 and float(nf4[7]) == 0.0 and float(nf4[15]) == 1.0
    fp4 = R.code_4bit("fp4")
    assert float(fp4.abs().max()) == 1.0
    # bitsandbytes' FP4: smallest magnitude 1/192 (the value 0.0625 of its 0..12 grid, scaled by 1/12)
    assert torch.isclose(fp4[1], torch.tensor(1 / 192))


def test_nf4_table_agrees_with_lesson_03_when_available():
    nonuniform = pytest.importorskip("helpers.nonuniform")
    if not hasattr(nonuniform, "nf4_levels"):
        pytest.skip("helpers.nonuniform has no nf4_levels yet")
    assert torch.allclose(nonuniform.nf4_levels().float(), R.code_4bit("nf4"), atol=1e-6)


# ----------------------------------------------------------------------------- blockwise 8-bit


SIZES = (0, 1, 2, 63, 64, 65, 4095, 4097)
BLOCKSIZES_8BIT = (1, 2, 3, 7, 63, 64, 65, 100, 256, 4096, 2**18 + 5)


def _same_8bit(x, blocksize):
    q_b, state = F.quantize_blockwise(x, blocksize=blocksize)
    q_r, absmax = R.blockwise_quantize(x, blocksize=blocksize)
    assert q_r.dtype == torch.uint8 and q_r.shape == x.shape
    assert torch.equal(q_r, q_b), (blocksize, int((q_r != q_b).sum()))
    assert torch.equal(absmax, state.absmax)
    return q_r, absmax, q_b, state


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_blockwise_8bit_bit_exact_every_size_and_blocksize(n, dtype):
    """Codes, absmax and the dequantized values equal bitsandbytes' on every size, including a short last block."""
    g = torch.Generator().manual_seed(n)
    x = (torch.randn(n, generator=g) * 10 ** torch.empty(n).uniform_(-3, 1, generator=g)).to(dtype)
    for blocksize in BLOCKSIZES_8BIT:
        q, absmax, q_b, state = _same_8bit(x, blocksize)
        if n:
            x_hat = R.blockwise_dequantize(q, absmax, blocksize=blocksize)  # float32; bitsandbytes returns x's dtype
            assert torch.equal(x_hat.to(dtype), F.dequantize_blockwise(q_b, state))


def test_blockwise_8bit_bit_exact_on_adversarial_values():
    """Exact midpoints between codes and their float32 neighbours, the codes themselves, +-1, +-0, subnormals,
    the grid points' midpoints of the 65536-point search table, an all-zero block, NaN and +-inf."""
    code = R.dynamic_code()
    mid = 0.5 * (code[:-1] + code[1:])
    up, down = torch.tensor(2.0), torch.tensor(-2.0)
    k = torch.arange(R.LUT_SIZE - 1, dtype=torch.float64)
    grid_mid = (-1 + (2 * k + 1) / (R.LUT_SIZE - 1)).float()
    values = torch.cat(
        [
            mid,
            torch.nextafter(mid, up),
            torch.nextafter(mid, down),
            code,
            grid_mid,
            torch.nextafter(grid_mid, up),
            torch.nextafter(grid_mid, down),
            torch.tensor([0.0, -0.0, 1.0, -1.0, 1e-40, -1e-40, 1e-45, 3e-39]),
        ]
    )
    values = values[values.abs() <= 1]
    blocks = values[: values.numel() // 255 * 255].reshape(-1, 255)
    x = torch.cat([blocks, torch.ones(blocks.shape[0], 1)], 1).flatten()  # absmax 1: the values are the scaled ones
    _same_8bit(x, 256)
    special = torch.cat([values[:300], torch.tensor([float("nan"), float("inf"), -float("inf"), 0.0])])
    for blocksize in (1, 2, 3, 5, 8, 64, special.numel()):
        for scale in (1.0, 1e-39, 1e30):  # subnormal blocks (infinite 1/absmax) and huge ones
            q_b, state = F.quantize_blockwise(special * scale, blocksize=blocksize)
            q_r, absmax = R.blockwise_quantize(special * scale, blocksize=blocksize)
            assert torch.equal(q_r, q_b) and torch.equal(absmax, state.absmax), (blocksize, scale)
    _same_8bit(torch.zeros(512), 256)  # all-zero blocks: absmax 0, code 0
    _same_8bit(-torch.zeros(300), 256)


def test_blockwise_8bit_nan_and_inf_as_bitsandbytes():
    """bitsandbytes leaves NaN out of a block's absmax and gives NaN code 0, which decodes to -0.993 * absmax
    (not NaN); inf makes the absmax inf, so every finite value of its block decodes to 0. The reference does the same."""
    x = torch.tensor([float("nan"), 1.0, -2.0, 0.5, 4.0, float("inf"), -1.0, 0.25])
    q, absmax, _, _ = _same_8bit(x, 4)
    assert absmax.tolist() == [2.0, float("inf")] and int(q[0]) == 0
    x_hat = R.blockwise_dequantize(q, absmax, blocksize=4)
    assert float(x_hat[0]) == pytest.approx(-0.993 * 2.0, rel=1e-3)
    assert not x_hat[4:].isfinite().any()  # the code nearest 0 on the grid is not 0 itself: times inf, inf


def test_lookup_table_is_nearest_code_of_each_grid_point():
    code = R.dynamic_code()
    lut = R.lookup_table(code)
    grid = -1.0 + (2.0 * torch.arange(R.LUT_SIZE, dtype=torch.float32)) / (R.LUT_SIZE - 1)
    dist = (grid.double().unsqueeze(1) - code.double().unsqueeze(0)).abs()
    best = dist.min(1).values
    assert bool((dist[torch.arange(R.LUT_SIZE), lut.long()] <= best + 1e-7).all())
    # near 0 the dynamic code is denser than the grid (step 2/65535): codes with no grid point of their own
    assert torch.unique(lut).numel() < 256


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1), st.sampled_from([16, 64, 256]), st.floats(0.01, 100.0))
def test_blockwise_roundtrip_error_bounded(seed, blocksize, scale):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(4 * blocksize, generator=g) * scale
    q, absmax = R.blockwise_quantize(x, blocksize=blocksize)
    x_hat = R.blockwise_dequantize(q, absmax, blocksize=blocksize)
    # largest gap of the dynamic code is between 0.979 and 0.993 ... its half bounds the scaled error of an
    # exact nearest-code search; bitsandbytes' CPU search first rounds x/absmax to the nearest of 65536 grid points
    # (at most 1/65535 away), so its bound is half the largest gap plus half a grid step
    code = R.dynamic_code()
    half_gap = float((code[1:] - code[:-1]).max()) / 2
    err = (x_hat - x).reshape(-1, blocksize).abs() / absmax.unsqueeze(1)
    assert float(err.max()) <= half_gap + 1 / (R.LUT_SIZE - 1) + 1e-6
    # no value decodes beyond its block's absmax; a positive maximum is exact (the code holds +1.0
    # but its most negative entry is -0.993: the dynamic code is not symmetric)
    blocks, x_blocks = x_hat.reshape(-1, blocksize), x.reshape(-1, blocksize)
    assert bool((blocks.abs().amax(1) <= absmax).all())
    positive = x_blocks.amax(1) == absmax
    assert torch.equal(blocks.amax(1)[positive], absmax[positive])


def test_blocks_localize_an_outlier():
    x = torch.randn(4096)
    x[10] = 500.0
    err_small = (R.blockwise_dequantize(*R.blockwise_quantize(x, blocksize=64), blocksize=64) - x).pow(2).mean()
    err_big = (R.blockwise_dequantize(*R.blockwise_quantize(x, blocksize=4096), blocksize=4096) - x).pow(2).mean()
    assert err_small < err_big / 10


# ----------------------------------------------------------------------------- LLM.int8()


@pytest.mark.parametrize("threshold", [0.0, 6.0])
@pytest.mark.parametrize("outliers", [False, True])
def test_llm_int8_matches_linear8bitlt(threshold, outliers):
    """Tolerance: 0 on CPUs with AVX-512 (bnb uses torch._int_mm, exact like the reference); elsewhere bnb
    accumulates the int8 product in float32 before casting to int32, so allow a relative 1e-5."""
    torch.manual_seed(1)
    linear = nn.Linear(384, 256)
    x = _outlier_input() if outliers else torch.randn(3, 24, 384)
    with torch.no_grad():
        y_bnb = _bnb_int8(linear, threshold)(x)
        y_ref = R.llm_int8_linear(x, linear.weight, linear.bias, threshold)
    assert y_ref.dtype == y_bnb.dtype == torch.float32
    torch.testing.assert_close(y_ref, y_bnb, rtol=1e-5, atol=1e-5 * float(y_bnb.abs().max()))
    if outliers and threshold > 0:
        assert R.outlier_columns(x, threshold).tolist() == [5, 77, 300]


def test_outlier_decomposition_helps_and_threshold_zero_is_vectorwise():
    torch.manual_seed(2)
    linear = nn.Linear(384, 128)
    x = _outlier_input()
    with torch.no_grad():
        y = linear(x)
        err = {t: (R.llm_int8_linear(x, linear.weight, linear.bias, t) - y).pow(2).mean() for t in (0.0, 6.0)}
        err_pt = (R.per_tensor_int8_linear(x, linear.weight, linear.bias) - y).pow(2).mean()
    assert err[6.0] < err[0.0] < err_pt
    q, row_absmax, cols = R.int8_vectorwise_quantize(x.reshape(-1, 384), 6.0)
    assert q.dtype == torch.int8 and bool((q[:, cols] == 0).all())
    assert float(row_absmax.max()) < 6.0  # outlier values are left out of the row scales


def test_vectorwise_quant_matches_bnb_function():
    x = _outlier_input().reshape(-1, 384).half()
    for t in (0.0, 6.0):
        q_b, s_b, c_b = F.int8_vectorwise_quant(x.clone(), threshold=t)
        q_r, s_r, c_r = R.int8_vectorwise_quantize(x, t)
        assert torch.equal(q_b, q_r) and torch.equal(s_b, s_r)
        assert (c_b is None and c_r.numel() == 0) or torch.equal(c_b, c_r)


def test_int8_ref_linear_module():
    torch.manual_seed(3)
    linear = nn.Linear(384, 64)
    x = _outlier_input()
    for scheme in ("per_tensor", "vectorwise", "llm_int8"):
        m = R.Int8RefLinear(linear, scheme)
        assert m(x).shape == (3, 24, 64)
    m = R.Int8RefLinear(linear, "llm_int8", 6.0)
    m(x)
    assert m.last_outlier_fraction == pytest.approx(3 / 384)


# ----------------------------------------------------------------------------- 4-bit


@pytest.mark.parametrize("quant_type", ["nf4", "fp4"])
@pytest.mark.parametrize("blocksize", [32, 64, 128])
def test_4bit_codes_bit_exact(quant_type, blocksize):
    x = torch.randn(96, 384)
    x[0, :blocksize] = 0.0  # an all-zero block
    x[1, 3] = 0.0
    packed_b, state = F.quantize_4bit(x, blocksize=blocksize, quant_type=quant_type, compress_statistics=False)
    packed_r, absmax = R.quantize_4bit(x, blocksize, quant_type)
    assert torch.equal(packed_r, packed_b)
    assert torch.equal(R.unpack_nibbles(packed_r), R.unpack_nibbles(packed_b))
    assert torch.equal(absmax, state.absmax)
    x_hat = R.dequantize_4bit(packed_r, absmax, x.shape, blocksize, quant_type)
    assert torch.equal(x_hat, F.dequantize_4bit(packed_b, state))


def test_nf4_beats_fp4_on_gaussian_blocks():
    x = torch.randn(512, 512)
    mse = {}
    for qt in ("nf4", "fp4"):
        packed, absmax = R.quantize_4bit(x, 64, qt)
        mse[qt] = (R.dequantize_4bit(packed, absmax, x.shape, 64, qt) - x).pow(2).mean()
    assert mse["nf4"] < mse["fp4"]


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 15), min_size=1, max_size=65))
def test_pack_unpack_roundtrip(codes):
    q = torch.tensor(codes, dtype=torch.uint8)
    packed = R.pack_nibbles(q)
    assert packed.numel() == (len(codes) + 1) // 2
    assert torch.equal(R.unpack_nibbles(packed, len(codes)), q)


def test_double_quant_against_bitsandbytes():
    """offset, the second-level absmax and the 8-bit codes of the constants are bit-exact (a short last group too)."""
    for shape in ((384, 1536), (333, 64)):  # 9216 constants = 36 groups of 256; 333 = 1 group + 77
        x = torch.randn(*shape)
        packed, state = F.quantize_4bit(x, blocksize=64, quant_type="nf4", compress_statistics=True)
        _, absmax = R.quantize_4bit(x, 64, "nf4")
        dq = R.double_quantize(absmax)
        assert torch.equal(dq.offset, state.offset)
        assert torch.equal(dq.absmax2, state.state2.absmax)
        assert torch.equal(dq.q, state.absmax)
        x_hat = R.dequantize_4bit(packed, R.double_dequantize(dq), x.shape, 64, "nf4")
        assert torch.equal(x_hat, F.dequantize_4bit(packed, state).reshape(x.shape))
        rel = (R.double_dequantize(dq) - absmax).abs() / absmax
        assert float(rel.max()) < 0.02


@pytest.mark.parametrize("quant_type", ["nf4", "fp4"])
@pytest.mark.parametrize("n", SIZES)
def test_4bit_bit_exact_every_size_and_blocksize(quant_type, n):
    """Every block size bitsandbytes' 4-bit quantizer takes, on sizes it does not divide (short last block, odd count)."""
    g = torch.Generator().manual_seed(n)
    x = torch.randn(n, generator=g) * 3
    for blocksize in R.BLOCKSIZES_4BIT:
        for dtype in (torch.float32, torch.float16, torch.bfloat16):
            packed_b, state = F.quantize_4bit(
                x.to(dtype), blocksize=blocksize, quant_type=quant_type, compress_statistics=False
            )
            packed_r, absmax = R.quantize_4bit(x.to(dtype), blocksize, quant_type)
            assert torch.equal(packed_r, packed_b) and torch.equal(absmax, state.absmax), (blocksize, dtype)
            if n:  # float32 result; bitsandbytes returns x's dtype
                x_hat = R.dequantize_4bit(packed_r, absmax, (n,), blocksize, quant_type)
                assert torch.equal(x_hat.to(dtype), F.dequantize_4bit(packed_b, state).reshape(n))


def test_4bit_adversarial_values_bit_exact():
    """Midpoints between NF4/FP4 codes, zeros, subnormals, an all-zero short last block, NaN and inf."""
    for quant_type in ("nf4", "fp4"):
        code = R.code_4bit(quant_type).sort().values
        mid = 0.5 * (code[:-1] + code[1:])
        x = torch.cat(
            [
                mid,
                torch.nextafter(mid, torch.tensor(2.0)),
                torch.nextafter(mid, torch.tensor(-2.0)),
                code,
                torch.ones(1),
                torch.tensor([0.0, -0.0, 1e-40, float("nan"), float("inf"), -float("inf")]),
                torch.zeros(33),
            ]
        )
        for blocksize in (32, 64):
            packed_b, state = F.quantize_4bit(x, blocksize=blocksize, quant_type=quant_type, compress_statistics=False)
            packed_r, absmax = R.quantize_4bit(x, blocksize, quant_type)
            assert torch.equal(packed_r, packed_b), (quant_type, blocksize)
            assert torch.equal(absmax.nan_to_num(7.0), state.absmax.nan_to_num(7.0))


def test_bits_per_param_formula():
    n = 4096 * 4096
    assert R.bits_per_param_4bit(n, 64) == pytest.approx(4.5)
    bpp = R.bits_per_param_4bit(n, 64, double_quant=True)
    assert bpp == pytest.approx(4 + 8 / 64 + 32 / (64 * 256) + 32 / n, rel=1e-12)  # + the fp32 offset
    assert 4.126 < bpp < 4.128
    assert R.bits_per_param_4bit(n, 64, tables=True) > 4.5
    # a short last block still stores one absmax; an odd count one more nibble
    assert R.bits_per_param_4bit(65, 64) == pytest.approx((8 * 33 + 2 * 32) / 65)


@pytest.mark.parametrize("double_quant", [False, True])
def test_storage_accounting_matches_real_tensor_bytes(double_quant):
    linear = nn.Linear(1536, 384, bias=False)
    m = bnb.nn.Linear4bit(1536, 384, bias=False, quant_type="nf4", compress_statistics=double_quant)
    m.load_state_dict(linear.state_dict())
    m = m.to("cpu")
    qs = m.weight.quant_state
    n = linear.weight.numel()
    # measured from the tensors themselves (packed bytes, absmax, nested state, tables)
    bits = 8 * R.storage_bytes(m)
    assert bits == pytest.approx(R.bits_per_param_4bit(n, 64, double_quant, tables=True) * n)
    assert 8 * R.storage_bytes(m, include_tables=False) == pytest.approx(R.bits_per_param_4bit(n, 64, double_quant) * n)
    # numel() of the packed weight is half the parameters: the classic counting mistake
    assert m.weight.numel() == n // 2 and m.weight.dtype == torch.uint8
    assert qs.absmax.dtype == (torch.uint8 if double_quant else torch.float32)


def test_storage_bytes_int8_counts_row_scales():
    linear = nn.Linear(384, 256)
    m = _bnb_int8(linear, 6.0)
    with torch.no_grad():
        m(torch.randn(2, 384))
    assert R.storage_bytes(m) == 384 * 256 + 256 * 4 + 256 * 4  # int8 weight, fp32 SCB, fp32 bias
    assert R.storage_bytes(linear) == (384 * 256 + 256) * 4


def test_optimizer_state_bytes_8bit_adam():
    torch.manual_seed(0)
    big, small = nn.Linear(256, 64), nn.Linear(64, 10)
    params = list(big.parameters()) + list(small.parameters())
    opt8 = bnb.optim.Adam8bit(params, lr=1e-3)
    opt32 = torch.optim.Adam(params, lr=1e-3)
    for opt in (opt8, opt32):
        opt.zero_grad()
        small(torch.relu(big(torch.randn(8, 256)))).sum().backward()
        opt.step()
    b8, b32 = R.optimizer_state_bytes(opt8), R.optimizer_state_bytes(opt32)
    # 32-bit: two fp32 moments per parameter (+ a step scalar per tensor)
    assert b32 >= 2 * 4 * sum(p.numel() for p in params)
    # 8-bit: only the 16384-element weight gets uint8 moments (min_8bit_size=4096); the rest stays fp32
    big_w = 16384
    expected = 2 * big_w + 2 * 4 * (big_w // 256) + 2 * 4 * (sum(p.numel() for p in params) - big_w)
    assert expected <= b8 <= expected + 2 * 256 * 4 + 64


# ----------------------------------------------------------------------------- bad input


def test_bad_inputs():
    x = torch.randn(4, 64)
    w = torch.randn(8, 64)
    with pytest.raises(ValueError, match="threshold"):
        R.llm_int8_linear(x, w, threshold=-1.0)
    with pytest.raises(ValueError, match="threshold"):
        R.outlier_columns(x, -0.5)
    with pytest.raises(ValueError, match="threshold"):
        R.int8_vectorwise_quantize(x, -2.0)
    with pytest.raises(TypeError, match="x"):
        R.llm_int8_linear(x.long(), w)
    with pytest.raises(ValueError, match="weight"):
        R.llm_int8_linear(x, torch.randn(8, 32))
    with pytest.raises(ValueError, match="bias"):
        R.llm_int8_linear(x, w, torch.randn(3))
    with pytest.raises(ValueError, match="weight"):
        R.per_tensor_int8_linear(x, torch.randn(8, 32))
    with pytest.raises(ValueError, match="x must be 2-d"):
        R.int8_vectorwise_quantize(torch.randn(2, 3, 4))
    for blocksize in (0, -64):  # bitsandbytes: "blocksize must be positive"
        with pytest.raises(ValueError, match="blocksize"):
            F.quantize_blockwise(torch.randn(256), blocksize=blocksize)
        with pytest.raises(ValueError, match="blocksize"):
            R.blockwise_quantize(torch.randn(256), blocksize=blocksize)
    for blocksize in (64.0, True, None):
        with pytest.raises(TypeError, match="blocksize"):
            R.blockwise_quantize(torch.randn(256), blocksize=blocksize)
    for blocksize in (16, 48, 8192):  # bitsandbytes' 4-bit quantizer: "invalid blocksize"
        with pytest.raises(ValueError, match="blocksize"):
            F.quantize_4bit(torch.randn(256), blocksize=blocksize)
        with pytest.raises(ValueError, match="blocksize"):
            R.quantize_4bit(torch.randn(256), blocksize=blocksize)
        with pytest.raises(ValueError, match="blocksize"):
            R.bits_per_param_4bit(256, blocksize)
    with pytest.raises(TypeError, match="blocksize"):
        R.quantize_4bit(torch.randn(256), blocksize=64.0)
    for dtype in (torch.float64, torch.int32):  # bitsandbytes quantizes 16/32-bit floats only
        with pytest.raises(TypeError, match="x must be a float16, bfloat16 or float32"):
            R.blockwise_quantize(torch.ones(64, dtype=dtype))
        with pytest.raises(TypeError, match="x must be a float16, bfloat16 or float32"):
            R.quantize_4bit(torch.ones(64, dtype=dtype))
    with pytest.raises(ValueError, match="16/32-bit"):
        F.quantize_blockwise(torch.ones(64, dtype=torch.float64))
    with pytest.raises(ValueError, match="blocksize2"):
        R.double_quantize(torch.rand(10), blocksize2=0)
    with pytest.raises(ValueError, match="quant_type"):
        R.quantize_4bit(torch.randn(64), quant_type="int4")
    with pytest.raises(ValueError, match="quant_type"):
        R.code_4bit("nf3")
    with pytest.raises(ValueError, match="code"):
        R.blockwise_quantize(torch.randn(64), code=torch.tensor([-2.0, 0.0, 2.0]), blocksize=64)
    with pytest.raises(TypeError, match="code"):  # bitsandbytes reads a float64 table as float32 garbage
        R.blockwise_quantize(torch.randn(64), code=R.dynamic_code().double(), blocksize=64)
    with pytest.raises(ValueError, match="code"):
        R.blockwise_quantize(torch.randn(64), code=R.dynamic_code().flip(0), blocksize=64)
    with pytest.raises(ValueError, match="code"):
        R.blockwise_quantize(torch.randn(64), code=R.code_4bit("nf4"), blocksize=64)
    with pytest.raises(TypeError, match="q"):
        R.blockwise_dequantize(torch.zeros(64, dtype=torch.int8), torch.ones(1), blocksize=64)
    with pytest.raises(ValueError, match="absmax"):
        R.blockwise_dequantize(torch.zeros(64, dtype=torch.uint8), torch.ones(2), blocksize=64)
    with pytest.raises(ValueError, match="q"):
        R.pack_nibbles(torch.tensor([3, 16], dtype=torch.uint8))
    with pytest.raises(TypeError, match="packed"):
        R.unpack_nibbles(torch.zeros(4, dtype=torch.int32))
    with pytest.raises(ValueError, match="shape"):
        R.dequantize_4bit(torch.zeros(1, dtype=torch.uint8), torch.ones(1), (0,), 64)
    with pytest.raises(TypeError, match="dq"):
        R.double_dequantize((1, 2, 3, 4))
    with pytest.raises(ValueError, match="absmax"):
        R.double_quantize(torch.rand(4, 4))
    with pytest.raises(ValueError, match="numel"):
        R.bits_per_param_4bit(0)
    with pytest.raises(TypeError, match="signed"):
        R.dynamic_code(signed=1)
    with pytest.raises(TypeError, match="model"):
        R.storage_bytes("model")
    with pytest.raises(TypeError, match="optimizer"):
        R.optimizer_state_bytes(nn.Linear(2, 2))
    with pytest.raises(TypeError, match="linear"):
        R.Int8RefLinear(nn.Conv2d(1, 1, 1))
    with pytest.raises(ValueError, match="scheme"):
        R.Int8RefLinear(nn.Linear(4, 4), scheme="per_row")
    with pytest.raises(ValueError, match="blocksize"):
        R.check_blocksize(0)
    with pytest.raises(ValueError, match="packed"):
        R.dequantize_4bit(torch.zeros(3, dtype=torch.uint8), torch.ones(1), (4,), 64)
    with pytest.raises(TypeError, match="absmax"):
        R.blockwise_dequantize(torch.zeros(64, dtype=torch.uint8), torch.ones(1, dtype=torch.float64), blocksize=64)


# ----------------------------------------------------------------------------- 8-bit Adam


def _adam_pair(opt_a, opt_b, steps=6, shape=(64, 256), seed=0):
    """Run two optimizers on copies of one parameter with the same gradients; return the two parameters."""
    g = torch.Generator().manual_seed(seed)
    p0 = torch.randn(*shape, generator=g) * 0.1
    pa, pb = nn.Parameter(p0.clone()), nn.Parameter(p0.clone())
    oa, ob = opt_a([pa]), opt_b([pb])
    for _ in range(steps):
        grad = torch.randn(*shape, generator=g)
        pa.grad, pb.grad = grad.clone(), grad.clone()
        oa.step()
        ob.step()
    return pa, pb, oa, ob


def test_adam8bit_ref_first_step_equals_bitsandbytes():
    pa, pb, oa, ob = _adam_pair(lambda p: bnb.optim.Adam8bit(p, lr=1e-2), lambda p: R.Adam8bitRef(p, lr=1e-2), 1)
    assert torch.equal(pa, pb)  # from zero moments the first step is sign(g) * lr in both
    sa, sb = oa.state[pa], ob.state[pb]
    assert sb["state1"].dtype == torch.uint8 and sb["state2"].dtype == torch.uint8
    assert sb["absmax1"].numel() == pa.numel() // 256
    # the first moment lands on the same dynamic-code index; bnb's CPU kernel searches approximately
    assert (sa["state1"].flatten() == sb["state1"]).float().mean() > 0.99
    assert torch.allclose(sa["absmax1"], sb["absmax1"]) and torch.allclose(sa["absmax2"], sb["absmax2"])


def test_adam8bit_ref_tracks_adam_and_keeps_small_tensors_in_full_precision():
    pa, pb, _, ob = _adam_pair(lambda p: torch.optim.Adam(p, lr=1e-2), lambda p: R.Adam8bitRef(p, lr=1e-2), 10)
    assert (pa - pb).abs().max() < 0.3 * 1e-2 * 10  # 8-bit moments: close to 32-bit Adam, not equal
    small = nn.Parameter(torch.randn(10, dtype=torch.float64))
    opt = R.Adam8bitRef([small], lr=0.1)
    small.grad = torch.ones_like(small)
    opt.step()
    assert set(opt.state[small]) == {"step", "exp_avg", "exp_avg_sq"}
    assert opt.state[small]["exp_avg"].dtype == torch.float64
    assert torch.allclose(opt.state[small]["exp_avg"], torch.full_like(small, 0.1))


def test_adam8bit_ref_pads_a_last_short_block_and_validates():
    p = nn.Parameter(torch.randn(4100, dtype=torch.float64))  # 16 full blocks of 256 and a short one
    opt = R.Adam8bitRef([p], lr=1e-3)
    p.grad = torch.randn_like(p)
    opt.step()
    assert opt.state[p]["absmax1"].numel() == 17 and torch.isfinite(p).all()
    with pytest.raises(ValueError, match="lr"):
        R.Adam8bitRef([p], lr=0.0)
    with pytest.raises(ValueError, match="betas"):
        R.Adam8bitRef([p], betas=(0.9, 1.0))
    with pytest.raises(TypeError, match="betas"):
        R.Adam8bitRef([p], betas=0.9)
    with pytest.raises(ValueError, match="blocksize"):
        R.Adam8bitRef([p], blocksize=0)


# ----------------------------------------------------------------------------- exercises


def _int8_blocks(x, blocksize, *, absmax=lambda b: b.abs().amax(1, keepdim=True), rnd=torch.round, magnitude=False):
    blocks = x.reshape(-1, blocksize)
    a = absmax(blocks)
    v = blocks.abs() if magnitude else blocks
    return (rnd(v / a * 127).clamp(-127, 127) * a / 127).reshape(x.shape)


def test_exercise_absmax_int8_blockwise_solution_and_classic_wrong_answers():
    assert R.check_absmax_int8_blockwise(lambda x, bs: _int8_blocks(x, bs), quiet=True)
    wrong = {
        "one absmax for the whole tensor": lambda x, bs: _int8_blocks(
            x.reshape(1, -1), x.numel(), absmax=lambda b: b.abs().amax()
        ).reshape(x.shape),
        "nearest code by truncation": lambda x, bs: _int8_blocks(x, bs, rnd=torch.trunc),
        "absmax without abs (sign forgotten)": lambda x, bs: _int8_blocks(
            x, bs, absmax=lambda b: b.amax(1, keepdim=True)
        ),
        "codes of |x| (sign dropped)": lambda x, bs: _int8_blocks(x, bs, magnitude=True),
        "255 levels (127.5)": lambda x, bs: (
            torch.round(x.reshape(-1, bs) / x.reshape(-1, bs).abs().amax(1, keepdim=True) * 127.5)
            * x.reshape(-1, bs).abs().amax(1, keepdim=True)
            / 127.5
        ).reshape(x.shape),
    }
    for name, fn in wrong.items():
        assert not R.check_absmax_int8_blockwise(fn, quiet=True), name
    assert not R.check_absmax_int8_blockwise(None, quiet=True)


def test_exercise_dq_bits_solution_and_classic_wrong_answers():
    def solution(n, bs):
        blocks = -(-n // bs)
        return (8 * -(-n // 2) + 8 * blocks + 32 * -(-blocks // 256) + 32) / n

    assert R.check_dq_bits(solution, quiet=True)
    wrong = {
        "offset forgotten": lambda n, bs: solution(n, bs) - 32 / n,
        "second-level absmax forgotten": lambda n, bs: (4 * n + 8 * -(-n // bs) + 32) / n,
        "block counts rounded down": lambda n, bs: (4 * n + 8 * (n // bs) + 32 * (n // bs // 256) + 32) / n,
        "the large-tensor formula": lambda n, bs: 4 + 8 / bs + 32 / (bs * 256) + 32 / n,
        "absmax kept in 32 bits": lambda n, bs: R.bits_per_param_4bit(n, bs, double_quant=False),
    }
    for name, fn in wrong.items():
        assert not R.check_dq_bits(fn, quiet=True), name
