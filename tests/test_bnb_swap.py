"""Tests of the bitsandbytes layer-swapping helpers in helpers.bnb (swap_linears, bnb_int8, bnb_4bit)."""

import copy
import logging

import pytest
import torch
from torch import nn

from helpers.bnb import bnb_4bit, bnb_int8, llm_int8_linear, swap_linears

logging.getLogger("bitsandbytes").setLevel(logging.ERROR)


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 32))


def test_swap_linears_replaces_every_plain_linear_and_leaves_the_original():
    model = _mlp()
    swapped = swap_linears(model, lambda lin: bnb_int8(lin, threshold=6.0))
    assert all(type(m) is nn.Linear for m in (model[0], model[2]))
    assert type(swapped[0]).__name__ == "Linear8bitLt" and type(swapped[2]).__name__ == "Linear8bitLt"
    assert isinstance(swapped[1], nn.ReLU)


def test_bnb_int8_matches_the_reference_in_eval_mode():
    lin = _mlp()[0]
    x = torch.randn(16, 64)
    x[:, 3] *= 20  # one outlier column, above the 6.0 threshold
    layer = bnb_int8(lin, threshold=6.0).eval()
    with torch.no_grad():
        got = layer(x).float()
        ref = llm_int8_linear(x, lin.weight, lin.bias, threshold=6.0)
    torch.testing.assert_close(got, ref, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("quant_type", ["nf4", "fp4"])
def test_bnb_4bit_close_to_float_and_packed(quant_type):
    lin = _mlp()[0]
    layer = bnb_4bit(lin, quant_type, 64, double_quant=True, compute_dtype=torch.float32).eval()
    x = torch.randn(8, 64)
    with torch.no_grad():
        rel = (layer(x) - lin(x)).norm() / lin(x).norm()
    assert rel < 0.2
    assert layer.weight.numel() == lin.weight.numel() // 2  # two 4-bit codes per byte


def test_bad_inputs():
    lin = nn.Linear(64, 8)
    with pytest.raises(TypeError, match="model"):
        swap_linears("model", lambda lin: lin)
    with pytest.raises(TypeError, match="factory"):
        swap_linears(_mlp(), None)
    with pytest.raises(TypeError, match="linear"):
        bnb_int8(nn.Conv2d(1, 1, 1))
    with pytest.raises(ValueError, match="threshold"):
        bnb_int8(lin, threshold=-1.0)
    with pytest.raises(TypeError, match="linear"):
        bnb_4bit(nn.Conv2d(1, 1, 1))
    with pytest.raises(ValueError, match="quant_type"):
        bnb_4bit(lin, "int4")
    with pytest.raises(ValueError, match="blocksize"):
        bnb_4bit(lin, "nf4", 48)


def test_llm_int8_matmul_equals_linear_with_prequantized_weights():
    from helpers.bnb import int8_vectorwise_quantize, llm_int8_matmul

    lin = _mlp()[0]
    x = torch.randn(24, 64)
    x[:, 5] *= 30
    w_q, w_absmax, _ = int8_vectorwise_quantize(lin.weight.detach())
    for t in (0.0, 6.0):
        assert torch.equal(
            llm_int8_matmul(x, w_q, w_absmax, lin.bias.detach(), t), llm_int8_linear(x, lin.weight, lin.bias, t)
        )
    with pytest.raises(ValueError, match="w_q"):
        llm_int8_matmul(x, w_q.float().to(torch.int32), w_absmax)
    with pytest.raises(ValueError, match="w_absmax"):
        llm_int8_matmul(x, w_q, w_absmax[:3])
    with pytest.raises(ValueError, match="bias"):
        llm_int8_matmul(x, w_q, w_absmax, torch.zeros(3))
    with pytest.raises(ValueError, match="threshold"):
        llm_int8_matmul(x, w_q, w_absmax, None, -2.0)


def test_float64_layers_compute_what_the_float32_layers_compute():
    from helpers.bnb import torch_dynamic_int8

    lin32 = _mlp()[0]
    lin64 = copy.deepcopy(lin32).double()
    x32 = torch.randn(24, 64)
    x32[:, 5] *= 30  # an outlier column
    x64 = x32.double()
    with torch.no_grad():
        for t in (0.0, 6.0):  # float64 in, float64 out, bit for bit the reference
            y = bnb_int8(lin64, t).eval()(x64)
            assert y.dtype == torch.float64
            assert torch.equal(y, llm_int8_linear(x64, lin64.weight, lin64.bias, t))
        # 4-bit: quantized from the float32 cast, computes in float32, returns float64
        m32, m64 = bnb_4bit(lin32, "nf4", 64, True, torch.float32).eval(), bnb_4bit(lin64, "nf4", 64, True).eval()
        assert m64.compute_dtype == torch.float32
        assert torch.equal(m64(x64), m32(x32).double())
        # torch.ao dynamic int8: the module quantize_dynamic inserts, fed the float32 cast
        dyn = torch.ao.quantization.quantize_dynamic(nn.Sequential(lin32), {nn.Linear}, dtype=torch.qint8)
        got = torch_dynamic_int8(lin64)(x64)
        assert got.dtype == torch.float64 and torch.equal(got, dyn(x32).double())
    with pytest.raises(ValueError, match="compute_dtype"):
        bnb_4bit(lin64, "nf4", 64, True, torch.float64)
    with pytest.raises(TypeError, match="linear"):
        torch_dynamic_int8(nn.Conv2d(1, 1, 1))
