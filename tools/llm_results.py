"""Full-model numbers of lesson 09 (SmolLM2-135M perplexities), written to ``data/llm_results.json``.

The whole table (4 methods × 4 bit widths × 2 group sizes, GPTQ/AWQ calibrated layer by layer,
plus W8A8 and the pitfalls) takes about half an hour on 2 threads, far beyond the lesson's
two-minute budget, so it is computed here once and the notebook loads the file. Everything is
deterministic: no randomness, fixed token streams (their SHA-256 is recorded), float32 forward
passes on one CPU code path. ``tests/test_llm_results.py`` re-derives one layer's numbers from
scratch and compares. Run (about 30 min, under the heavy-work lock)::

    python -m tools.llm_results            # everything
    python -m tools.llm_results --only key # only the entries the lesson asserts on

Taught in 09_llm.
"""

from __future__ import annotations

import argparse
import copy
import json
import pathlib
import platform
import sys
import time

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from helpers import llm, smollm  # noqa: E402

OUT = pathlib.Path(__file__).resolve().parent.parent / "data" / "llm_results.json"
N_EVAL = 4096
N_CALIB = 8192
WINDOW = 512
METHODS = ("rtn", "hqq", "awq", "gptq")
BITS = (8, 4, 3, 2)
GROUPS = (32, 64)
GPTQ_KW = {"act_order": True, "damp": 0.01}
SQ_ALPHA = 0.8
LAYER = 11  # the layer the notebook looks at (the outlier channels of its down_proj input)


def _key(method: str, bits: int, group: int, zero_point: str) -> str:
    return f"{method}/{bits}/{group}/{zero_point}"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=("key", "all"), default="all")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    base, tok = smollm.load_smollm()
    ev = smollm.eval_tokens(tok, N_EVAL)
    cal = smollm.calibration_tokens(tok, N_CALIB)
    res = json.loads(OUT.read_text()) if OUT.is_file() else {}
    res.setdefault("perplexity", {})
    res["meta"] = {
        "model": smollm.GGUF_NAME,
        "eval_tokens": N_EVAL,
        "calibration_tokens": N_CALIB,
        "window": WINDOW,
        "eval_text_sha256": smollm.text_sha256(smollm.eval_text()),
        "calibration_text_sha256": smollm.text_sha256(smollm.calibration_text()),
        "gptq": GPTQ_KW,
        "awq_grid": 20,
        "hqq_iters": 20,
        "smoothquant_alpha": SQ_ALPHA,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "command": "python -m tools.llm_results",
    }

    def save() -> None:
        OUT.write_text(json.dumps(res, indent=1, sort_keys=True) + "\n")

    def evaluate(key: str, fn) -> None:
        if key in res["perplexity"]:
            return
        work = copy.deepcopy(base)  # a fresh copy: W8A8 swaps modules, the others change weights in place
        t = time.perf_counter()
        info = fn(work)
        dt = time.perf_counter() - t
        ppl = smollm.perplexity(work, ev, WINDOW)
        res["perplexity"][key] = {"ppl": round(ppl, 4), "seconds": round(dt, 1)}
        if key == "gptq/3/64/int":  # layer 0's errors, re-derived from scratch by tests/test_llm.py
            res["gptq_layer0_errors"] = {k: round(v, 6) for k, v in info["errors"].items() if k.startswith("0.")}
        print(f"{key:28s} ppl {ppl:9.3f}  {dt:6.1f} s", flush=True)
        save()

    def quant(method, bits, group, zero_point="int", calibration=cal):
        def fn(model):
            kw = GPTQ_KW if method == "gptq" else {}
            return llm.quantize_model(
                model,
                method,
                bits,
                group,
                zero_point=zero_point,
                calibration=calibration if method in ("gptq", "awq") else None,
                **kw,
            )

        return fn

    evaluate("reference", lambda model: None)
    key = [
        ("rtn", 3, 64, "int"),
        ("rtn", 3, 64, "float"),
        ("hqq", 3, 64, "float"),
        ("awq", 3, 64, "int"),
        ("gptq", 3, 64, "int"),
        ("rtn", 8, 64, "int"),
        ("rtn", 4, 32, "float"),
    ]
    for m, b, g, z in key:
        evaluate(_key(m, b, g, z), quant(m, b, g, z))
    evaluate("w8a8/tensor", lambda model: llm.w8a8_model(model, "tensor"))
    evaluate("w8a8/token", lambda model: llm.w8a8_model(model, "token"))
    for a in (0.5, SQ_ALPHA):
        evaluate(
            f"w8a8/tensor/smoothquant/{a}",
            lambda model, a=a: (llm.smoothquant_model(model, cal, a), llm.w8a8_model(model, "tensor")),
        )
    if args.only == "key":
        return

    # pitfalls: lm_head (tied to the embedding) quantized too; GPTQ calibrated on the evaluation text
    def with_head(model):
        llm.quantize_model(model, "rtn", 3, 64)
        head = model.lm_head.weight
        head.data.copy_(llm.fake_quantize_rtn(head, 3, 64))

    evaluate("pitfall/rtn/3/64/int+lm_head", with_head)
    evaluate("pitfall/gptq/3/64/int/calibrated_on_eval", quant("gptq", 3, 64, "int", calibration=ev))
    for m in METHODS:
        for b in BITS:
            for g in GROUPS:
                z = "float" if m == "hqq" else "int"
                evaluate(_key(m, b, g, z), quant(m, b, g, z))


if __name__ == "__main__":
    main()
