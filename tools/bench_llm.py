"""Benchmark: lesson 09's round-to-nearest encoders vs gguf's (llama.cpp's numpy) Q4_1 / Q8_0 encoders.

Same matrix (the shape of SmolLM2's ``mlp.down_proj``, 576 × 1536, times 8 rows), same codes
(``tests/test_llm.py`` checks them byte for byte); the ratio is helper time / gguf time.
Also the packed int8 / int4 weight-only kernels that 09_llm's decoding speed uses vs an fp32
matrix-vector product. Taught in 09_llm.
"""

from __future__ import annotations

import torch

from helpers import llm
from tools._timing import compare


def run() -> dict:
    from gguf import GGMLQuantizationType
    from gguf.quants import quantize

    torch.manual_seed(0)
    w = torch.randn(8 * 576, 1536) * 0.05
    w_np = w.numpy()
    out = {
        "q4_1_encode": compare(
            "Q4_1 encode (4-bit, groups of 32, float min)",
            lambda: llm.rtn_quantize(w, 4, 32, zero_point="float", param_dtype=torch.float16),
            lambda: quantize(w_np, GGMLQuantizationType.Q4_1),
            repeats=5,
        ),
        "q8_0_encode": compare(
            "Q8_0 encode (8-bit symmetric, groups of 32)",
            lambda: llm.rtn_quantize(w, 8, 32, symmetric=True, param_dtype=torch.float16),
            lambda: quantize(w_np, GGMLQuantizationType.Q8_0),
            repeats=5,
        ),
    }
    lin = torch.nn.Linear(1536, 8 * 576, bias=False)
    x = torch.randn(1, 1536)
    for fmt in ("int8", "int4"):
        packed = llm.PackedLinear(lin, fmt, group_size=32)
        with torch.no_grad():
            out[f"{fmt}_matvec"] = compare(
                f"{fmt} weight-only mat-vec vs fp32 (4608x1536)",
                lambda packed=packed: packed(x),
                lambda: lin(x),
                repeats=20,
            )
    return out


if __name__ == "__main__":
    run()
