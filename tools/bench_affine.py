"""Benchmark: the affine helpers vs PyTorch's kernels on 16M float32 values (goal: ratio <= 2)."""

from __future__ import annotations

import warnings

import torch

from helpers.affine import calc_qparams, fake_quantize, quantize
from tools._timing import compare

N = 16 * 2**20


def run() -> dict:
    torch.manual_seed(0)
    x = torch.randn(N)
    scale, zero_point = calc_qparams(x)
    s, z = float(scale), int(zero_point)
    out = {
        "fake_quantize_per_tensor_16M": compare(
            "fake-quantize per-tensor, 16M values",
            lambda: fake_quantize(x, scale, zero_point, -128, 127),
            lambda: torch.fake_quantize_per_tensor_affine(x, s, z, -128, 127),
        )
    }
    w = x.reshape(4096, 4096)
    ch_scale, ch_zp = calc_qparams(w, axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out["quantize_per_channel_16M"] = compare(
            "quantize per-channel (4096x4096), int8 codes",
            lambda: quantize(w, ch_scale, ch_zp, -128, 127, axis=0),
            lambda: torch.quantize_per_channel(w, ch_scale.double(), ch_zp.long(), 0, torch.qint8),
        )
    out["fake_quantize_per_channel_16M"] = compare(
        "fake-quantize per-channel (4096x4096)",
        lambda: fake_quantize(w, ch_scale, ch_zp, -128, 127, axis=0),
        lambda: torch.fake_quantize_per_channel_affine(w, ch_scale, ch_zp, 0, -128, 127),
    )
    return out
