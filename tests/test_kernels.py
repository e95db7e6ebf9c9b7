"""The shared exact int8 GEMM: exact on every CPU kernel, and the int16 saturation it guards against."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers.kernels import int8_matmul, int_mm_is_exact, saturating_int8_matmul


def _exact(a, b):
    return (a.long() @ b.long()).int()


@settings(max_examples=40, deadline=None)
@given(m=st.integers(1, 40), k=st.integers(1, 70), n=st.integers(1, 40), seed=st.integers(0, 2**16))
def test_int8_matmul_equals_exact_integer_product(m, k, n, seed):
    g = torch.Generator().manual_seed(seed)
    a = torch.randint(-128, 128, (m, k), dtype=torch.int8, generator=g)
    b = torch.randint(-128, 128, (k, n), dtype=torch.int8, generator=g)
    assert torch.equal(int8_matmul(a, b), _exact(a, b))


@pytest.mark.parametrize("value", [127, -128])
def test_int8_matmul_worst_case_does_not_saturate(value):
    # 127 x 127 pairs overflow an int16 pair sum; a saturating kernel would return a clipped result
    a = torch.full((33, 256), value, dtype=torch.int8)
    b = torch.full((256, 24), 127, dtype=torch.int8)
    got = int8_matmul(a, b)
    assert got.dtype == torch.int32 and torch.equal(got, _exact(a, b))


def test_int8_matmul_transposed_and_size_one_operands():
    a = torch.randint(-128, 128, (1, 64), dtype=torch.int8)
    w = torch.randint(-128, 128, (48, 64), dtype=torch.int8)
    assert torch.equal(int8_matmul(a, w.t()), _exact(a, w.t()))
    col = torch.randint(-128, 128, (1, 5), dtype=torch.int8).t()  # (5, 1) with odd strides
    assert torch.equal(
        int8_matmul(torch.ones(3, 5, dtype=torch.int8), col), _exact(torch.ones(3, 5, dtype=torch.int8), col)
    )


def test_probe_is_a_bool_and_cached():
    assert isinstance(int_mm_is_exact("cpu"), bool)
    assert int_mm_is_exact("cpu") is int_mm_is_exact("cpu")


def test_int8_matmul_bad_input():
    a = torch.zeros(2, 3, dtype=torch.int8)
    with pytest.raises(TypeError, match="int8"):
        int8_matmul(a.float(), a.t())
    with pytest.raises(ValueError, match="a.shape"):
        int8_matmul(a, a)
    with pytest.raises(TypeError):
        int8_matmul([1], a)
    with pytest.raises(ValueError):
        int8_matmul(torch.zeros(0, 3, dtype=torch.int8), a.t())


def test_saturating_matmul_matches_exact_when_pairs_fit_and_clips_when_not():
    g = torch.Generator().manual_seed(0)
    a7 = torch.randint(0, 128, (8, 31), generator=g)  # 7-bit activations: |pair| <= 2*127*128 < 32768
    b = torch.randint(-128, 128, (31, 5), dtype=torch.int8, generator=g)
    assert torch.equal(saturating_int8_matmul(a7, b), _exact(a7, b))
    a8 = torch.full((2, 4), 255)
    w = torch.full((4, 1), 127, dtype=torch.int8)
    # two pairs of 255*127 + 255*127 = 64770 each, each clipped to 32767
    assert saturating_int8_matmul(a8, w).tolist() == [[2 * 32767], [2 * 32767]]
    assert _exact(a8, w).tolist() == [[4 * 255 * 127], [4 * 255 * 127]]


def test_saturating_matmul_bad_input():
    with pytest.raises(TypeError, match="b must be int8"):
        saturating_int8_matmul(torch.zeros(2, 2, dtype=torch.int32), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="0..255"):
        saturating_int8_matmul(torch.full((2, 2), 300), torch.zeros(2, 2, dtype=torch.int8))
    with pytest.raises(ValueError, match="a and b"):
        saturating_int8_matmul(torch.zeros(2, 3, dtype=torch.int32), torch.zeros(2, 2, dtype=torch.int8))


def test_torch_int_mm_is_exact_after_import():
    # whatever the CPU's kernel does, after importing helpers.kernels torch._int_mm itself returns exact sums
    from helpers import kernels

    a = torch.full((32, 64), 127, dtype=torch.int8)
    assert torch.equal(torch._int_mm(a, a.t().contiguous()), _exact(a, a.t()))
    assert kernels.int_mm_is_exact("cpu")
    assert isinstance(kernels.INT_MM_GUARDED, bool)
