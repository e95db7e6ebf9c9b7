"""Benchmark: the from-scratch block-format encoders/decoders vs gguf's numpy reference (ratios printed).

gguf (llama.cpp's Python package) encodes Q8_0/Q4_0/Q4_1/MXFP4 and decodes those plus Q4_K/NVFP4 in
numpy; the course's helpers do the same in vectorized torch, byte-exact (tests/test_block_formats.py).
"""

from __future__ import annotations

import numpy as np
import torch

from helpers import block_formats as bf
from tools._timing import compare

N_ROWS, WIDTH = 1024, 4096  # 4M values: one large LLM projection's worth


def run() -> dict:
    from gguf import GGMLQuantizationType as T
    from gguf.quants import dequantize, quantize

    torch.manual_seed(0)
    x = torch.randn(N_ROWS, WIDTH) * 0.02
    xn = x.numpy()
    out = {}
    for fmt, t in {"q8_0": T.Q8_0, "q4_0": T.Q4_0, "q4_1": T.Q4_1, "mxfp4": T.MXFP4}.items():
        ties = "gguf" if fmt == "mxfp4" else "even"
        out[f"{fmt}_encode_4M"] = compare(
            f"{fmt} encode, 4M values",
            lambda f=fmt, ti=ties: bf.encode(x, f, ties=ti),
            lambda t=t: quantize(xn, t),
            repeats=3,
        )
    for fmt, t in {"q4_0": T.Q4_0, "q4_k": T.Q4_K, "nvfp4": T.NVFP4}.items():
        ts = bf.nvfp4_tensor_scale(x) if fmt == "nvfp4" else None
        data = bf.encode(x, fmt, tensor_scale=ts)
        scale = np.float32(ts or 1.0)
        out[f"{fmt}_decode_4M"] = compare(
            f"{fmt} decode, 4M values",
            lambda d=data, f=fmt, s=ts: bf.decode(d, f, tensor_scale=s),
            lambda d=data, t=t, s=scale: dequantize(d, t) * s,
            repeats=3,
        )
    return out
