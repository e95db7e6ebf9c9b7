"""The runtimes a user would deploy with, timed honestly beside eager PyTorch.

Taught in 04_dynamic, 05_static and 08_recipes (every speed-up is given against eager fp32 *and*
against the best fp32 path measured in the same loop); used by the benchmark (``tools/bench_static``, ``tools/bench_dynamic``).

* :func:`time_interleaved` times several paths in one loop: each round runs every path, in a
  shuffled order, a few calls in a row; the first call of each block is a switch-in warm-up (its
  caches and thread pool were just used by another path) and is not recorded. Each path gets a
  :class:`PathTiming` — median with its spread (min and p90).
* :func:`speed_table` turns timings into rows with the ratio to eager fp32 and to the best fp32
  path (the lowest median among the fp32 paths), :func:`format_speed_table` prints them.
* ONNX Runtime: :func:`export_onnx` (``torch.onnx``; cached on disk, keyed by the weights and
  shapes; nothing downloads), :func:`ort_session` (intra-op threads = torch's, **thread spinning
  off** — ORT's spinning workers otherwise keep the cores busy after a call and slow the torch call
  that follows), :func:`optimize_transformer` (attention / LayerNorm / GELU fusion),
  :func:`quantize_dynamic_onnx` and :func:`quantize_static_onnx` (``onnxruntime.quantization``).
* :func:`compile_fp32`: ``torch.compile`` with inductor and weight freezing, compiled once.
* :func:`matmul_peaks`: this machine's fp32 (``torch.mm``) and int8 (``torch._int_mm``) matmul
  throughput at a compute-bound shape and at batch-1 (matrix-vector) shapes — the roofline that a
  model's FLOPs per second are compared with.

``onnxruntime`` and ``onnx`` are imported only when an ONNX function is called.
"""

from __future__ import annotations

import hashlib
import math
import os
import pathlib
import random
import re
import statistics
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

import torch
from torch import nn

from helpers._validate import check_choice, check_int

__all__ = [
    "PathTiming",
    "time_interleaved",
    "speed_table",
    "format_speed_table",
    "onnx_cache_dir",
    "export_onnx",
    "export_encoder",
    "ort_session",
    "optimize_transformer",
    "quantize_dynamic_onnx",
    "quantize_static_onnx",
    "compile_fp32",
    "matmul_peaks",
]


# ----------------------------------------------------------------------------- timing


class PathTiming(NamedTuple):
    """Latency of one path in :func:`time_interleaved`: median and spread (ms) over ``samples`` calls."""

    median_ms: float
    min_ms: float
    p90_ms: float
    max_ms: float
    samples: int
    threads: int


def _p90(sorted_ms: list[float]) -> float:
    """Nearest-rank 90th percentile of an ascending list (one of the samples, never interpolated)."""
    return sorted_ms[max(0, math.ceil(0.9 * len(sorted_ms)) - 1)]


def _timing(samples: list[float], threads: int) -> PathTiming:
    s = sorted(samples)
    return PathTiming(statistics.median(s), s[0], _p90(s), s[-1], len(s), threads)


def time_interleaved(
    paths: Mapping[str, Callable[[], object]],
    *,
    rounds: int = 10,
    calls_per_round: int = 3,
    warmup: int = 2,
    threads: int | None = 2,
    seed: int = 0,
) -> dict[str, PathTiming]:
    """Time every path of ``paths`` (name -> zero-argument callable) in one interleaved loop.

    After ``warmup`` calls of each path, each of ``rounds`` rounds runs the paths in a shuffled
    order (``random.Random(seed)``), ``calls_per_round`` calls of a path in a row. With more than one
    call per block the first is the switch-in call and is not recorded, so each path gets
    ``rounds * (calls_per_round - 1)`` samples (``rounds`` samples when ``calls_per_round == 1``).
    A burst of load on the machine hits every path alike. ``threads`` fixes
    ``torch.set_num_threads`` for the loop (restored afterwards; ``None`` keeps it). Runs under
    ``torch.inference_mode``. Create ONNX Runtime sessions with :func:`ort_session` (spinning off).
    """
    if not isinstance(paths, Mapping) or not paths:
        raise ValueError("paths must be a non-empty dict name -> zero-argument callable")
    for name, fn in paths.items():
        if not isinstance(name, str):
            raise TypeError(f"paths keys must be str names, got {type(name).__name__}")
        if not callable(fn):
            raise TypeError(f"paths[{name!r}] must be callable, got {type(fn).__name__}")
    rounds = check_int(rounds, "rounds", lo=1)
    calls_per_round = check_int(calls_per_round, "calls_per_round", lo=1, hi=100)
    warmup = check_int(warmup, "warmup", lo=0)
    seed = check_int(seed, "seed")
    before = torch.get_num_threads()
    if threads is not None:
        threads = check_int(threads, "threads", lo=1, hi=256)
        torch.set_num_threads(threads)
    rng = random.Random(seed)
    names = list(paths)
    samples: dict[str, list[float]] = {n: [] for n in names}
    skip = 1 if calls_per_round > 1 else 0
    try:
        with torch.inference_mode():
            for name in names:
                for _ in range(warmup):
                    paths[name]()
            for _ in range(rounds):
                order = names[:]
                rng.shuffle(order)
                for name in order:
                    fn = paths[name]
                    for i in range(calls_per_round):
                        start = time.perf_counter()
                        fn()
                        dt = (time.perf_counter() - start) * 1e3
                        if i >= skip:
                            samples[name].append(dt)
        used = torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
    return {n: _timing(samples[n], used) for n in names}


def speed_table(timings: Mapping[str, PathTiming], *, eager: str, fp32: Iterable[str]) -> list[dict]:
    """Rows ``name, median_ms, min_ms, p90_ms, vs_eager, vs_best_fp32, is_fp32, best_fp32`` in ``timings`` order.

    ``eager`` names the eager fp32 path; ``fp32`` names every fp32 path (``eager`` included or not);
    the best fp32 path is the one with the lowest median among them. ``vs_eager`` and
    ``vs_best_fp32`` are baseline median / path median: > 1 means the path is faster.
    """
    if not isinstance(timings, Mapping) or not timings:
        raise ValueError("timings must be a non-empty dict name -> PathTiming (from time_interleaved)")
    for name, t in timings.items():
        if not isinstance(t, PathTiming):
            raise TypeError(f"timings[{name!r}] must be a PathTiming, got {type(t).__name__}")
    check_choice(eager, "eager", tuple(timings))
    if isinstance(fp32, str):
        raise TypeError("fp32 must be an iterable of path names, not one string")
    fp32 = list(fp32)
    for name in fp32:
        check_choice(name, "fp32", tuple(timings))
    fp32_set = set(fp32) | {eager}
    best = min((n for n in timings if n in fp32_set), key=lambda n: timings[n].median_ms)
    base_eager, base_best = timings[eager].median_ms, timings[best].median_ms
    return [
        {
            "name": name,
            "median_ms": t.median_ms,
            "min_ms": t.min_ms,
            "p90_ms": t.p90_ms,
            "vs_eager": base_eager / t.median_ms,
            "vs_best_fp32": base_best / t.median_ms,
            "is_fp32": name in fp32_set,
            "best_fp32": best,
        }
        for name, t in timings.items()
    ]


def format_speed_table(rows: list[dict]) -> str:
    """A plain-text table of :func:`speed_table` rows; the best fp32 path is marked with ``*``."""
    if not isinstance(rows, list) or not rows:
        raise ValueError("rows must be the non-empty list returned by speed_table")
    need = {"name", "median_ms", "min_ms", "p90_ms", "vs_eager", "vs_best_fp32", "best_fp32"}
    for row in rows:
        if not isinstance(row, dict) or not need <= set(row):
            raise ValueError(f"rows must be speed_table rows with keys {sorted(need)}")
    width = max(len(r["name"]) for r in rows) + 2
    lines = [f"{'path':<{width}s} {'median ms':>10s} {'min-p90 ms':>17s} {'vs eager':>9s} {'vs best fp32':>13s}"]
    for r in rows:
        mark = "*" if r["name"] == r["best_fp32"] else " "
        spread = f"{r['min_ms']:.2f}-{r['p90_ms']:.2f}"
        lines.append(
            f"{r['name'] + mark:<{width}s} {r['median_ms']:10.2f} {spread:>17s} "
            f"{r['vs_eager']:8.2f}x {r['vs_best_fp32']:12.2f}x"
        )
    lines.append(f"(* best fp32 path: {rows[0]['best_fp32']}; ratios = baseline median / path median, > 1 is faster)")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- ONNX Runtime


class _Quiet:
    """Silences ``onnxruntime.quantization``'s advice printed through the root logger (and warnings)."""

    def __enter__(self):
        import logging

        self._level = logging.root.level
        logging.root.setLevel(logging.ERROR)
        self._warn = warnings.catch_warnings()
        self._warn.__enter__()
        warnings.simplefilter("ignore")
        return self

    def __exit__(self, *exc):
        import logging

        self._warn.__exit__(*exc)
        logging.root.setLevel(self._level)
        return False


_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,80}$")


def onnx_cache_dir() -> pathlib.Path:
    """Folder of the exported and quantized ONNX files: ``$XDG_CACHE_HOME/quantization-course/onnx`` (default ``~/.cache``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "quantization-course" / "onnx"


def _check_onnx_path(path: Any, name: str = "path") -> pathlib.Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a path to an .onnx file, got {type(path).__name__}")
    path = pathlib.Path(path)
    if path.suffix != ".onnx" or not path.is_file():
        raise ValueError(f"{name} must be an existing .onnx file, got {str(path)!r}")
    return path


def _hash_model(model: nn.Module, example_inputs: tuple, extra: str) -> str:
    h = hashlib.sha256(extra.encode())
    h.update(type(model).__qualname__.encode())
    for key, t in model.state_dict().items():
        h.update(key.encode())
        h.update(str((tuple(t.shape), t.dtype)).encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    for x in example_inputs:
        h.update(str((tuple(x.shape), x.dtype)).encode())
    return h.hexdigest()[:16]


def _hash_file(path: pathlib.Path) -> str:
    st = path.stat()
    return hashlib.sha256(f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:12]


def _check_names(value: Any, name: str) -> list[str]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not value:
        raise TypeError(f"{name} must be a non-empty list of str, got {value!r}")
    if not all(isinstance(v, str) and v for v in value):
        raise TypeError(f"{name} must hold non-empty str names, got {value!r}")
    return list(value)


def export_onnx(
    model: nn.Module,
    example_inputs: tuple,
    name: str,
    *,
    input_names: list[str],
    output_names: list[str],
    dynamic_axes: dict | None = None,
) -> pathlib.Path:
    """``model`` exported to ONNX (opset 17) with ``torch.onnx.export``; the file's path.

    Cached under :func:`onnx_cache_dir` as ``<name>-<hash>.onnx``, the hash covering the weights,
    the input shapes and dtypes, the names and ``dynamic_axes``: a second call is a file lookup.
    Uses the TorchScript exporter (``dynamo=False``, about 1 s for ResNet-18 here) and falls back to
    the dynamo exporter where that one is gone. ``example_inputs`` is a tuple of tensors passed
    positionally.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(example_inputs, tuple) or not example_inputs:
        raise TypeError("example_inputs must be a non-empty tuple of tensors")
    if not all(isinstance(x, torch.Tensor) for x in example_inputs):
        raise TypeError("example_inputs must hold only torch.Tensor values")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"name must be 1-80 characters of letters, digits, '_', '.', '-', got {name!r}")
    input_names = _check_names(input_names, "input_names")
    output_names = _check_names(output_names, "output_names")
    if len(input_names) != len(example_inputs):
        raise ValueError(f"input_names must name each of the {len(example_inputs)} example inputs, got {input_names}")
    if dynamic_axes is not None:
        if not isinstance(dynamic_axes, dict):
            raise TypeError(f"dynamic_axes must be None or a dict name -> {{axis: label}}, got {dynamic_axes!r}")
        unknown = [k for k in dynamic_axes if k not in input_names + output_names]
        if unknown:
            raise ValueError(f"dynamic_axes keys must be among input_names/output_names, got {unknown}")
    extra = repr((name, input_names, output_names, sorted((dynamic_axes or {}).items(), key=str), torch.__version__))
    out = onnx_cache_dir() / f"{name}-{_hash_model(model, example_inputs, extra)}.onnx"
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".tmp{os.getpid()}.onnx")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            kwargs = dict(input_names=input_names, output_names=output_names, opset_version=17)
            try:
                torch.onnx.export(model, example_inputs, str(tmp), dynamic_axes=dynamic_axes, dynamo=False, **kwargs)
            except (TypeError, ValueError, RuntimeError, NotImplementedError):
                # the TorchScript exporter is gone (or refuses this model): the dynamo exporter
                torch.onnx.export(model, example_inputs, str(tmp), dynamic_axes=dynamic_axes, dynamo=True, **kwargs)
        os.replace(tmp, out)
    finally:
        model.train(was_training)
        tmp.unlink(missing_ok=True)
    return out


class _EncoderOutput(nn.Module):
    """A Hugging Face encoder as a function of three tensors returning ``last_hidden_state``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids):
        return self.model(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state


ENCODER_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def export_encoder(model: nn.Module, batch: Mapping[str, torch.Tensor], name: str) -> pathlib.Path:
    """A BERT-style Hugging Face encoder (MiniLM) exported for ONNX Runtime; ``last_hidden_state`` out.

    ``batch`` is a tokenizer output (``input_ids``, ``attention_mask``, ``token_type_ids``); batch and
    sequence axes are dynamic. A copy of ``model`` is switched to the plain ("eager") attention
    before export: the SDPA attention that transformers picks by default exports to a graph in
    which :func:`optimize_transformer` cannot find the attention pattern (it then fuses only the
    LayerNorms). Cached like :func:`export_onnx`.
    """
    import copy

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(batch, Mapping) or any(k not in batch for k in ENCODER_INPUTS):
        raise ValueError(f"batch must be a tokenizer output with keys {list(ENCODER_INPUTS)}")
    work = copy.deepcopy(model).eval()
    if hasattr(work, "set_attn_implementation"):
        work.set_attn_implementation("eager")
    elif hasattr(work, "config"):
        work.config._attn_implementation = "eager"
    axes = {k: {0: "batch", 1: "seq"} for k in (*ENCODER_INPUTS, "last_hidden_state")}
    return export_onnx(
        _EncoderOutput(work),
        tuple(batch[k] for k in ENCODER_INPUTS),
        name,
        input_names=list(ENCODER_INPUTS),
        output_names=["last_hidden_state"],
        dynamic_axes=axes,
    )


def ort_session(path: str | os.PathLike, *, threads: int | None = None):
    """An ``onnxruntime.InferenceSession`` on the CPU: full graph optimizations, spinning off.

    ``threads`` intra-op threads (default ``torch.get_num_threads()``, so ORT and PyTorch use the
    same cores), one inter-op thread, and ``session.intra_op.allow_spinning = 0``: idle workers
    sleep instead of spinning, so they do not steal the cores from a torch call that follows.
    """
    path = _check_onnx_path(path)
    threads = torch.get_num_threads() if threads is None else check_int(threads, "threads", lo=1, hi=256)
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def optimize_transformer(path: str | os.PathLike, *, num_heads: int, hidden_size: int) -> pathlib.Path:
    """A BERT-style encoder's ONNX file with attention, LayerNorm and GELU fused (``onnxruntime.transformers``).

    ``optimizer.optimize_model(model_type="bert")``; export with :func:`export_encoder` so that the
    attention is found (MiniLM: 6 ``Attention``, 12 ``SkipLayerNormalization``, 6 ``BiasGelu``). The fused graph is written beside ``path``
    (``<stem>.bert.onnx``) and reused while it is newer than ``path``.
    """
    path = _check_onnx_path(path)
    num_heads = check_int(num_heads, "num_heads", lo=1, hi=1024)
    hidden_size = check_int(hidden_size, "hidden_size", lo=1)
    if hidden_size % num_heads:
        raise ValueError(f"hidden_size must be a multiple of num_heads, got {hidden_size} and {num_heads}")
    out = path.with_name(f"{path.stem}.bert{num_heads}x{hidden_size}.onnx")
    if out.is_file() and out.stat().st_mtime_ns >= path.stat().st_mtime_ns:
        return out
    import logging

    from onnxruntime.transformers import optimizer

    logging.getLogger("onnxruntime.transformers").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fused = optimizer.optimize_model(
            str(path), model_type="bert", num_heads=num_heads, hidden_size=hidden_size, opt_level=0
        )
    tmp = out.with_suffix(f".tmp{os.getpid()}.onnx")
    fused.save_model_to_file(str(tmp))
    os.replace(tmp, out)
    return out


def quantize_dynamic_onnx(
    path: str | os.PathLike, *, per_channel: bool = True, reduce_range: bool = False
) -> pathlib.Path:
    """Dynamic int8 (``onnxruntime.quantization.quantize_dynamic``): int8 weights, uint8 activations quantized per call.

    ``per_channel`` gives each output channel of a weight its own scale; ``reduce_range`` uses 7-bit
    weights: ONNX Runtime's advice for x86 CPUs without VNNI, whose u8 x s8 kernel adds products in pairs
    into a saturating int16 (``vpmaddubsw``, lesson 05's Pitfall 4); with VNNI the sums are exact either
    way. Written beside ``path`` and reused while newer.
    """
    path = _check_onnx_path(path)
    for flag, flag_name in ((per_channel, "per_channel"), (reduce_range, "reduce_range")):
        if not isinstance(flag, bool):
            raise TypeError(f"{flag_name} must be True or False, got {flag!r}")
    tag = f"dyn-{'pc' if per_channel else 'pt'}{'-rr' if reduce_range else ''}"
    out = path.with_name(f"{path.stem}.{tag}.onnx")
    if out.is_file() and out.stat().st_mtime_ns >= path.stat().st_mtime_ns:
        return out
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = out.with_suffix(f".tmp{os.getpid()}.onnx")
    with _Quiet():
        quantize_dynamic(
            str(path),
            str(tmp),
            per_channel=per_channel,
            reduce_range=reduce_range,
            weight_type=QuantType.QInt8,
            # fused contrib ops (Attention, SkipLayerNormalization) defeat ONNX shape inference: their outputs are float
            extra_options={"DefaultTensorType": 1},  # onnx.TensorProto.FLOAT
        )
    os.replace(tmp, out)
    return out


_QTYPES = {"uint8": "QUInt8", "int8": "QInt8"}
_FORMATS = ("QDQ", "QOperator")


def quantize_static_onnx(
    path: str | os.PathLike,
    calibration: list[dict[str, Any]],
    *,
    per_channel: bool = True,
    activation_type: str = "uint8",
    weight_type: str = "int8",
    quant_format: str = "QDQ",
    reduce_range: bool = False,
) -> pathlib.Path:
    """Static int8 (``onnxruntime.quantization.quantize_static``, MinMax calibration on ``calibration``).

    ``calibration`` is a list of feeds (input name -> numpy array), one per calibration batch.
    ``activation_type="uint8"`` with int8 weights is U8S8, the combination x86 int8 kernels are
    built for; ``"int8"`` activations (S8S8 — ORT's own default) run no faster than fp32 on
    many x86 CPUs. ``reduce_range`` quantizes weights to 7 bits, as ``quantize_dynamic_onnx``'s
    (the guard against int16 pair saturation on x86 CPUs without VNNI). Written beside ``path``,
    the name keyed by the settings and a hash of the data.
    """
    path = _check_onnx_path(path)
    if not isinstance(calibration, list) or not calibration:
        raise ValueError("calibration must be a non-empty list of feeds (dict input name -> numpy array)")
    import numpy as np

    h = hashlib.sha256()
    for i, feed in enumerate(calibration):
        if not isinstance(feed, dict) or not feed:
            raise TypeError(f"calibration[{i}] must be a dict input name -> numpy array, got {type(feed).__name__}")
        for key in sorted(feed):
            value = feed[key]
            if not isinstance(key, str) or not isinstance(value, np.ndarray):
                raise TypeError(f"calibration[{i}] must map str input names to numpy arrays, got {key!r}")
            h.update(key.encode())
            h.update(str((value.shape, value.dtype.str)).encode())
            h.update(np.ascontiguousarray(value).tobytes())
    for flag, flag_name in ((per_channel, "per_channel"), (reduce_range, "reduce_range")):
        if not isinstance(flag, bool):
            raise TypeError(f"{flag_name} must be True or False, got {flag!r}")
    check_choice(activation_type, "activation_type", tuple(_QTYPES))
    check_choice(weight_type, "weight_type", tuple(_QTYPES))
    check_choice(quant_format, "quant_format", _FORMATS)
    tag = (
        f"{quant_format.lower()}-{'pc' if per_channel else 'pt'}{'-rr' if reduce_range else ''}"
        f"-a{activation_type}-w{weight_type}-{h.hexdigest()[:8]}"
    )
    out = path.with_name(f"{path.stem}.{tag}.onnx")
    if out.is_file() and out.stat().st_mtime_ns >= path.stat().st_mtime_ns:
        return out
    from onnxruntime import quantization as oq

    class _Reader(oq.CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(calibration)

        def get_next(self):
            return next(self._it, None)

    tmp = out.with_suffix(f".tmp{os.getpid()}.onnx")
    with _Quiet():
        oq.quantize_static(
            str(path),
            str(tmp),
            _Reader(),
            quant_format=getattr(oq.QuantFormat, quant_format),
            per_channel=per_channel,
            reduce_range=reduce_range,
            activation_type=getattr(oq.QuantType, _QTYPES[activation_type]),
            weight_type=getattr(oq.QuantType, _QTYPES[weight_type]),
            calibrate_method=oq.CalibrationMethod.MinMax,
        )
    os.replace(tmp, out)
    for leftover in path.parent.glob("augmented_model*.onnx"):  # calibration scratch of older ORT versions
        leftover.unlink(missing_ok=True)
    return out


# ----------------------------------------------------------------------------- torch.compile


def compile_fp32(model: nn.Module, example_inputs: tuple) -> Callable[..., Any]:
    """``torch.compile(model)`` with inductor and weight freezing, compiled now on ``example_inputs``.

    ``model``: an ``nn.Module`` (switched to eval mode) or a ``torch.export`` graph module such as
    torchao pt2e's converted int8 model (compiled as it is: inductor then lowers its q/dq pairs to
    int8 kernels).

    Freezing folds the (eval-mode) weights into the graph as constants, so inductor can pre-pack
    them for its GEMM/convolution kernels, as a deployment would. The returned callable runs under
    ``torch.no_grad``; other input shapes trigger a recompilation (``dynamic=False``).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(example_inputs, tuple) or not example_inputs:
        raise TypeError("example_inputs must be a non-empty tuple of inputs")
    import torch._inductor.config as inductor_config

    if model.training:
        try:
            model.eval()
        except NotImplementedError:  # a torch.export graph (e.g. pt2e's converted model) has no train/eval switch
            pass
    compiled = torch.compile(model, backend="inductor", dynamic=False)

    def run(*args, **kwargs):
        with torch.no_grad(), inductor_config.patch(freezing=True):
            return compiled(*args, **kwargs)

    run(*example_inputs)
    return run


# ----------------------------------------------------------------------------- roofline


def _rate(fn: Callable[[], object], ops: float, repeats: int, trials: int = 3) -> float:
    """Giga-operations per second: the best of ``trials`` medians of ``repeats`` timed calls each."""
    fn()
    fn()
    best = math.inf
    for _ in range(trials):
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        best = min(best, statistics.median(times))
    return ops / best / 1e9


def matmul_peaks(*, threads: int | None = None, size: int = 1024, gemv: int = 2048, repeats: int = 15) -> dict:
    """This machine's matmul throughput: fp32 ``torch.mm`` (GFLOP/s) and int8 ``torch._int_mm`` (GOP/s).

    ``compute_*``: a ``size``×``size``×``size`` product (compute-bound: each weight byte is reused
    ``size`` times). ``batch1_*``: one row times a ``gemv``×``gemv`` weight (memory-bound: each weight
    byte is used once), with the weight bytes streamed per second (``*_gbs``). ``batch16_*``: 16 rows.
    One multiply-add counts as 2 operations. Each figure is the best of 3 medians of ``repeats``
    calls: a peak, which a transient stall of the machine should not lower. The int8 product goes through ``helpers.kernels``'s
    guard: ``int8_exact_kernel`` is False where ``torch._int_mm`` was replaced by the exact (slow)
    float64 product on this CPU. Medians of ``repeats`` calls with ``threads`` torch threads
    (default: the current setting).
    """
    from helpers.kernels import INT_MM_GUARDED

    size = check_int(size, "size", lo=32, hi=8192)
    gemv = check_int(gemv, "gemv", lo=32, hi=16384)
    repeats = check_int(repeats, "repeats", lo=1)
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(check_int(threads, "threads", lo=1, hi=256))
    gen = torch.Generator().manual_seed(0)
    out: dict[str, Any] = {"threads": torch.get_num_threads(), "int8_exact_kernel": not INT_MM_GUARDED}
    try:
        with torch.inference_mode():
            for label, m, k in (("compute", size, size), ("batch1", 1, gemv), ("batch16", 16, gemv)):
                a = torch.randn(m, k, generator=gen)
                w = torch.randn(k, k, generator=gen)
                a8 = torch.randint(-128, 128, (m, k), dtype=torch.int8, generator=gen)
                w8 = torch.randint(-128, 128, (k, k), dtype=torch.int8, generator=gen)
                ops = 2.0 * m * k * k
                out[f"{label}_shape"] = [m, k, k]
                out[f"{label}_fp32_gflops"] = _rate(lambda a=a, w=w: torch.mm(a, w), ops, repeats)
                out[f"{label}_int8_gops"] = _rate(lambda a=a8, w=w8: torch._int_mm(a, w), ops, repeats)
                if m == 1:
                    out["batch1_fp32_weight_gbs"] = out["batch1_fp32_gflops"] * 2  # 4 bytes per 2 ops
                    out["batch1_int8_weight_gbs"] = out["batch1_int8_gops"] / 2  # 1 byte per 2 ops
    finally:
        torch.set_num_threads(before)
    out["int8_over_fp32_compute"] = out["compute_int8_gops"] / out["compute_fp32_gflops"]
    out["int8_over_fp32_batch1"] = out["batch1_int8_gops"] / out["batch1_fp32_gflops"]
    return out
