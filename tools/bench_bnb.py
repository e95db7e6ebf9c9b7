"""Benchmark: the from-scratch bitsandbytes references vs bitsandbytes itself on CPU (ratios printed)."""

from __future__ import annotations

import logging

import torch

from helpers import bnb as R
from tools._timing import compare

N = 16 * 2**20


def run() -> dict:
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    import bitsandbytes as bnb
    import bitsandbytes.functional as F

    torch.manual_seed(0)
    x = torch.randn(N)
    out = {
        "nf4_quantize_16M": compare(
            "NF4 quantize, 16M values, blocksize 64",
            lambda: R.quantize_4bit(x, 64, "nf4"),
            lambda: F.quantize_4bit(x, blocksize=64, quant_type="nf4", compress_statistics=False),
        ),
        "fp4_quantize_16M": compare(
            "FP4 quantize, 16M values, blocksize 64",
            lambda: R.quantize_4bit(x, 64, "fp4"),
            lambda: F.quantize_4bit(x, blocksize=64, quant_type="fp4", compress_statistics=False),
        ),
        "blockwise8_quantize_16M": compare(
            "8-bit dynamic blockwise quantize, 16M, bs 4096",
            lambda: R.blockwise_quantize(x, blocksize=4096),
            lambda: F.quantize_blockwise(x, blocksize=4096),
        ),
        "blockwise8_quantize_16M_bs64": compare(
            "8-bit dynamic blockwise quantize, 16M, bs 64",
            lambda: R.blockwise_quantize(x, blocksize=64),
            lambda: F.quantize_blockwise(x, blocksize=64),
        ),
    }
    # the reference is bitsandbytes' CPU kernel bit for bit (tests/test_bnb.py); check it on the timed input too
    assert torch.equal(R.blockwise_quantize(x, blocksize=4096)[0], F.quantize_blockwise(x, blocksize=4096)[0])
    linear = torch.nn.Linear(4096, 4096)
    # Both sides hold int8 weights quantized once (Linear8bitLt stores weight + SCB); timed: the forward pass.
    w_q, w_absmax, _ = R.int8_vectorwise_quantize(linear.weight.detach())
    a = torch.randn(512, 4096)
    a[:, :8] *= 20  # a few outlier features
    for threshold in (0.0, 6.0):
        m = bnb.nn.Linear8bitLt(4096, 4096, has_fp16_weights=False, threshold=threshold)
        m.load_state_dict(linear.state_dict())
        m = m.to("cpu").eval()
        out[f"llm_int8_matmul_t{threshold:g}"] = compare(
            f"LLM.int8 512x4096 @ 4096x4096, threshold {threshold:g}",
            lambda t=threshold: R.llm_int8_matmul(a, w_q, w_absmax, linear.bias, t),
            lambda m=m: m(a),
            repeats=5,
        )
    return out
