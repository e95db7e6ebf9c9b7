"""Benchmark: eager static int8 vs fp32 on torchvision's quantizable ResNet-18 / MobileNetV2 and on Darknet-19.

Untrained weights (``weights=None``): this measures serialized size and latency, not accuracy.
Batch 1, 224×224, 2 threads, ``x86`` engine and qconfig; calibration on a few random images.
Darknet-19 is measured twice in int8: as published (LeakyReLU, which eager mode cannot fuse, so
it runs as a separate quantized op) and with ReLU (fused into the conv) to show that op's cost.
The models and the measurement come from ``helpers.static`` (lesson 05 uses them too).
"""

from __future__ import annotations

import torch

from helpers.static import MODELS, build_fp32, eager_static_int8, size_and_latency

__all__ = ["run"]


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
