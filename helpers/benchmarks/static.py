"""Benchmark: eager static int8 vs fp32 on torchvision's quantizable ResNet-18 / MobileNetV2 and on Darknet-19.

Untrained weights (``weights=None``): this measures serialized size and latency, not accuracy.
Batch 1, 224×224, 2 threads, ``x86`` engine and qconfig; calibration on a few random images.
Darknet-19 is measured twice in int8: as published (LeakyReLU, which eager mode cannot fuse, so
it runs as a separate quantized op) and with ReLU (fused into the conv) to show that op's cost.
Taught in 05_ptsq (the notebook uses ``eager_static_int8`` and ``size_and_latency``).
"""

from __future__ import annotations

import copy
import statistics
import warnings

import torch
from torch import nn

from helpers._validate import check_choice, check_int
from helpers.measure import Timing, latency_ratio, measure_latency, serialized_size

__all__ = ["build_fp32", "eager_static_int8", "size_and_latency", "run", "MODELS"]

MODELS = ("resnet18", "mobilenet_v2", "darknet19", "darknet19_relu")


def build_fp32(name: str) -> nn.Module:
    """An untrained fp32 model in eval mode: torchvision quantizable ResNet-18/MobileNetV2, or Darknet-19."""
    check_choice(name, "name", MODELS)
    torch.manual_seed(0)
    if name == "resnet18":
        from torchvision.models.quantization import resnet18

        return resnet18(weights=None, quantize=False).eval()
    if name == "mobilenet_v2":
        from torchvision.models.quantization import mobilenet_v2

        return mobilenet_v2(weights=None, quantize=False).eval()
    from helpers.darknet import Darknet19

    return Darknet19(leaky=name == "darknet19").eval()


def eager_static_int8(model: nn.Module, calib: torch.Tensor, engine: str = "x86") -> nn.Module:
    """Eager static int8 copy of ``model``: fuse, ``get_default_qconfig(engine)``, prepare, calibrate, convert.

    torchvision's quantizable models fuse themselves (``fuse_model()``) and carry Quant/DeQuant stubs;
    a ``Darknet19`` is wrapped in ``QuantWrapper`` and fused with ``darknet19_fuse_groups``.
    """
    import torch.ao.quantization as tq

    from helpers.darknet import Darknet19, darknet19_fuse_groups

    check_choice(engine, "engine", tuple(torch.backends.quantized.supported_engines))
    if not isinstance(calib, torch.Tensor) or calib.ndim != 4 or len(calib) == 0:
        raise ValueError("calib must be a non-empty (N, C, H, W) float tensor of calibration images")
    torch.backends.quantized.engine = engine
    m = copy.deepcopy(model).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if isinstance(m, Darknet19):
            m = tq.QuantWrapper(tq.fuse_modules(m, darknet19_fuse_groups(m))).eval()
        elif hasattr(m, "fuse_model"):
            m.fuse_model(is_qat=False)
        else:
            raise TypeError("model must be a torchvision quantizable model (fuse_model) or a Darknet19")
        m.qconfig = tq.get_default_qconfig(engine)
        tq.prepare(m, inplace=True)
        with torch.no_grad():
            for img in calib:
                m(img[None])
        tq.convert(m, inplace=True)
    return m


def size_and_latency(fp32: nn.Module, int8: nn.Module, x: torch.Tensor, *, repeats: int = 10, warmup: int = 2) -> dict:
    """Serialized sizes (bytes) and median latencies (ms, 2 threads) of ``fp32`` and ``int8`` on ``x``, and their ratios.

    After ``warmup`` calls each, the two models run alternately ``repeats`` times (interleaved timing).
    """
    repeats = check_int(repeats, "repeats", lo=1)
    warmup = check_int(warmup, "warmup", lo=0)
    s32, s8 = serialized_size(fp32), serialized_size(int8)
    measure_latency(lambda: fp32(x), warmup=warmup, repeats=1, threads=2)
    measure_latency(lambda: int8(x), warmup=warmup, repeats=1, threads=2)
    # interleave the two models run by run, so a load change on a shared machine hits both alike
    runs32, runs8 = [], []
    for _ in range(repeats):
        runs32.append(measure_latency(lambda: fp32(x), warmup=0, repeats=1, threads=2).median_ms)
        runs8.append(measure_latency(lambda: int8(x), warmup=0, repeats=1, threads=2).median_ms)
    t32 = Timing(statistics.median(runs32), min(runs32), max(runs32), repeats, warmup, 2)
    t8 = Timing(statistics.median(runs8), min(runs8), max(runs8), repeats, warmup, 2)
    return {
        "fp32_bytes": s32,
        "int8_bytes": s8,
        "size_ratio": s8 / s32,
        "fp32_ms": t32.median_ms,
        "int8_ms": t8.median_ms,
        "speedup": latency_ratio(t32, t8),
    }


def run(repeats: int = 20, calib_images: int = 4, resolution: int = 224) -> dict:
    torch.manual_seed(0)
    calib = torch.randn(calib_images, 3, resolution, resolution)
    x = torch.randn(1, 3, resolution, resolution)
    out = {}
    print(f"batch 1, {resolution}x{resolution}, 2 threads, engine x86, {calib_images} random calibration images")
    for name in MODELS:
        fp32 = build_fp32(name)
        int8 = eager_static_int8(fp32, calib)
        r = size_and_latency(fp32, int8, x, repeats=repeats)
        out[name] = {k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()}
        print(
            f"{name:<15s} size {r['fp32_bytes'] / 1e6:6.1f} -> {r['int8_bytes'] / 1e6:5.1f} MB ({r['size_ratio']:.3f}x)   "
            f"latency fp32 {r['fp32_ms']:7.1f} ms  int8 {r['int8_ms']:7.1f} ms  fp32/int8 {r['speedup']:4.2f}x",
            flush=True,
        )
    return out
