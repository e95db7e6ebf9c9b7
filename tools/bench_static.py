"""Benchmark: ResNet-18, MobileNetV2 and Darknet-19 in every runtime a user could deploy, timed in one loop.

Untrained weights (``weights=None``, BatchNorm statistics re-estimated on the random calibration
images so that activations are unit-scale): this measures size, latency and agreement with fp32,
not accuracy. Batch 1, 224×224, 2 threads; calibration on a few random images. Per model, interleaved
(``helpers.runtimes.time_interleaved``, spinning ORT threads off):

* fp32: eager; ``torch.compile`` (inductor, freezing); ONNX Runtime (full graph optimizations);
* int8: the course's eager static model (``helpers.static.eager_static_int8``, ``x86`` engine);
  torchao pt2e with ``X86InductorQuantizer``, compiled with inductor (how pt2e is meant to run);
  ONNX Runtime static QDQ, per-channel, uint8 activations × int8 weights (U8S8) and, to show the
  trap, int8 × int8 (S8S8, ORT's default activation type).

Ratios against eager fp32 and against the best fp32 path; each path's FLOPs per second as a % of
the matching matmul peak; fidelity of the int8 paths as top-1 agreement and logit SQNR against
fp32 on a few random inputs. Serialized sizes of eager fp32 and int8, also for Darknet-19 with
ReLU (what eager fusion can fold). Darknet-19 is the published LeakyReLU version (lesson 05).
"""

from __future__ import annotations

import copy
import math
import time
import warnings

import torch

from helpers import runtimes as rt
from helpers.measure import serialized_size
from helpers.static import MODELS, build_fp32, eager_static_int8, settle_batchnorm
from tools._timing import model_flops, model_table

__all__ = ["run", "TIMED"]

#: the models timed in every runtime (darknet19_relu: sizes only)
TIMED = ("resnet18", "mobilenet_v2", "darknet19")


def _pt2e_int8(model: torch.nn.Module, x: torch.Tensor, calib: torch.Tensor):
    """torchao pt2e int8 (X86InductorQuantizer, default config), compiled with inductor + freezing."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
        X86InductorQuantizer,
        get_default_x86_inductor_quantization_config,
    )

    exported = torch.export.export(copy.deepcopy(model), (x,)).module()
    quantizer = X86InductorQuantizer().set_global(get_default_x86_inductor_quantization_config())
    prepared = prepare_pt2e(exported, quantizer)
    with torch.no_grad():
        for img in calib:
            prepared(img[None])
    return rt.compile_fp32(convert_pt2e(prepared), (x,))


def _sqnr_db(ref: torch.Tensor, out: torch.Tensor) -> float:
    ref, out = ref.double(), out.double()
    noise = float(((ref - out) ** 2).sum())
    return math.inf if noise == 0 else 10 * math.log10(float((ref**2).sum()) / noise)


def _fidelity(fns: dict, fp32, inputs: torch.Tensor) -> dict:
    """Top-1 agreement and logit SQNR (dB) of each int8 path against eager fp32 on ``inputs`` (one at a time)."""
    with torch.inference_mode():
        ref = torch.cat([fp32(img[None]) for img in inputs])
        out = {}
        for name, fn in fns.items():
            got = torch.cat([torch.as_tensor(fn(img[None])) for img in inputs]).float()
            out[name] = {
                "top1_agree": float((got.argmax(1) == ref.argmax(1)).double().mean()),
                "sqnr_db": _sqnr_db(ref, got),
            }
    return out


def _one_model(name: str, calib: torch.Tensor, x: torch.Tensor, probes: torch.Tensor, rounds: int) -> dict:
    fp32 = settle_batchnorm(build_fp32(name), calib)
    t0 = time.perf_counter()
    int8 = eager_static_int8(fp32, calib)
    compiled = rt.compile_fp32(fp32, (x,))
    t_compile = time.perf_counter() - t0
    try:
        pt2e = _pt2e_int8(fp32, x, calib)
        pt2e_error = None
    except Exception as exc:  # noqa: BLE001 - the benchmark reports a path it cannot build instead of failing
        pt2e, pt2e_error = None, f"{type(exc).__name__}: {exc}"[:300]
        print(f"pt2e + inductor not available for {name}: {pt2e_error}")
    t_pt2e = time.perf_counter() - t0 - t_compile
    onnx_path = rt.export_onnx(fp32, (x,), f"bench_{name}", input_names=["x"], output_names=["logits"])
    feeds = [{"x": img[None].numpy()} for img in calib]
    u8s8 = rt.quantize_static_onnx(onnx_path, feeds, activation_type="uint8")
    s8s8 = rt.quantize_static_onnx(onnx_path, feeds, activation_type="int8")
    sessions = {k: rt.ort_session(p) for k, p in (("fp32", onnx_path), ("u8s8", u8s8), ("s8s8", s8s8))}
    t_ort = time.perf_counter() - t0 - t_compile - t_pt2e

    def ort(kind):
        sess = sessions[kind]
        return lambda inp: sess.run(None, {"x": inp.numpy()})[0]

    fns = {
        "fp32 eager": fp32,
        "fp32 torch.compile (inductor, freezing)": compiled,
        "fp32 ONNX Runtime": ort("fp32"),
        "int8 course eager static (x86)": int8,
        "int8 torchao pt2e + X86InductorQuantizer + compile": pt2e,
        "int8 ONNX Runtime static QDQ per-channel U8S8": ort("u8s8"),
        "int8 ONNX Runtime static QDQ per-channel S8S8 (ORT default)": ort("s8s8"),
    }
    fns = {k: v for k, v in fns.items() if v is not None}
    precision = {k: k.split()[0] for k in fns}
    fidelity = _fidelity({k: v for k, v in fns.items() if precision[k] == "int8"}, fp32, probes)
    fidelity["fp32 ONNX Runtime"] = _fidelity({"o": fns["fp32 ONNX Runtime"]}, fp32, probes)["o"]
    paths = {k: (lambda fn=fn: fn(x)) for k, fn in fns.items()}
    out = model_table(
        f"{name}, batch 1, 224x224",
        paths,
        eager="fp32 eager",
        precision=precision,
        flops=model_flops(lambda: fp32(x)),
        fidelity=fidelity,
        rounds=rounds,
    )
    out["fp32_bytes"] = serialized_size(fp32)
    out["int8_bytes"] = serialized_size(int8)
    out["size_ratio"] = round(out["int8_bytes"] / out["fp32_bytes"], 4)
    out["setup_seconds"] = {
        "eager_int8_and_compile": round(t_compile, 1),
        "pt2e_and_compile": round(t_pt2e, 1),
        "onnx_export_and_quantize": round(t_ort, 1),
    }
    if pt2e_error:
        out["pt2e_error"] = pt2e_error
    return out


def run(rounds: int = 10, calib_images: int = 4, probe_images: int = 8, resolution: int = 224) -> dict:
    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    calib = torch.randn(calib_images, 3, resolution, resolution)
    x = torch.randn(1, 3, resolution, resolution)
    probes = torch.randn(probe_images, 3, resolution, resolution)
    print(
        f"batch 1, {resolution}x{resolution}, 2 threads, engine x86, {calib_images} random calibration images, "
        f"fidelity on {probe_images} other random images; {rounds} rounds x 3 calls per path (first of each "
        "block not recorded)"
    )
    out: dict = {"models": {}, "sizes": {}}
    for name in TIMED:
        out["models"][name] = _one_model(name, calib, x, probes, rounds)
    for name in MODELS:
        if name in out["models"]:
            m = out["models"][name]
            out["sizes"][name] = {k: m[k] for k in ("fp32_bytes", "int8_bytes", "size_ratio")}
            continue
        fp32 = build_fp32(name)
        s32, s8 = serialized_size(fp32), serialized_size(eager_static_int8(fp32, calib))
        out["sizes"][name] = {"fp32_bytes": s32, "int8_bytes": s8, "size_ratio": round(s8 / s32, 4)}
    for name, s in out["sizes"].items():
        print(
            f"{name:<15s} size {s['fp32_bytes'] / 1e6:6.1f} -> {s['int8_bytes'] / 1e6:5.1f} MB ({s['size_ratio']:.3f}x)"
        )
    return out
