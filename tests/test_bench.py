"""The benchmark's plumbing (not its timings): sections are found, README Results match the saved JSON."""

import json

import pytest

from tools.bench import (
    DEFAULT_JSON,
    README,
    RESULTS_PAGE,
    available_sections,
    main,
    readme_results_block,
    render_results,
    render_results_page,
)


def test_sections_are_discovered():
    assert {"affine", "notebooks", "nonuniform", "dynamic", "static", "bnb"} <= set(available_sections())


def test_readme_results_are_generated_from_the_saved_json():
    report = json.loads(DEFAULT_JSON.read_text())
    block = readme_results_block(README.read_text(encoding="utf-8"))
    assert block is not None, "README has no generated Results block"
    assert block == render_results(report), (
        "README Results differ from bench/results.json: run python -m tools.bench --readme"
    )
    assert RESULTS_PAGE.read_text(encoding="utf-8") == render_results_page(report) + "\n", (
        "bench/RESULTS.md differs from bench/results.json: run python -m tools.bench --readme"
    )
    assert len(block.splitlines()) <= 12, "README keeps the key figures only; the full tables live in bench/RESULTS.md"


def test_saved_json_has_every_figure_the_course_reports():
    sections = json.loads(DEFAULT_JSON.read_text())["sections"]
    assert "total_seconds" in sections["notebooks"] and "peak_kernel_rss_mib" in sections["notebooks"]
    assert sections["affine"]["fake_quantize_per_tensor_16M"]["ratio"] > 0
    assert set(sections["notebooks"]["seconds"]) | set(sections["notebooks"].get("failed", {})) >= {
        "01_float_bits",
        "02_affine",
        "08_recipes",
    }


def _check_table(table: dict, need_fidelity: tuple[str, ...]) -> None:
    paths = table["paths"]
    assert table["best_fp32"] in paths and paths[table["best_fp32"]]["vs_best_fp32"] == 1.0
    assert table["gflop_per_call"] > 0
    for name, p in paths.items():
        assert p["precision"] in ("fp32", "int8") and name.startswith(p["precision"])
        assert p["samples"] >= 20, f"{name}: at least 20 interleaved samples per path"
        assert p["min_ms"] <= p["median_ms"] <= p["p90_ms"]
        assert p["vs_eager"] > 0 and p["vs_best_fp32"] > 0 and p["pct_of_peak"] > 0
        if p["precision"] == "fp32":
            assert p["vs_best_fp32"] <= 1.0, "no fp32 path is faster than the best fp32 path"
        else:
            assert all(k in p for k in need_fidelity), f"{name}: fidelity {need_fidelity} missing"


def test_saved_json_has_every_runtime_for_every_model():
    report = json.loads(DEFAULT_JSON.read_text())
    assert report["peaks"]["compute_fp32_gflops"] > 0 and report["peaks"]["compute_int8_gops"] > 0
    assert report["peaks"]["batch1_fp32_gflops"] > 0 and report["peaks"]["batch1_int8_gops"] > 0
    load = report["meta"]["load"]
    assert {"before", "max_seen", "ok", "max_allowed"} <= set(load)
    models = report["sections"]["static"]["models"]
    assert set(models) == {"resnet18", "mobilenet_v2", "darknet19"}
    for table in models.values():
        names = set(table["paths"])
        assert {"fp32 eager", "fp32 torch.compile (inductor, freezing)", "fp32 ONNX Runtime"} <= names
        assert "int8 course eager static (x86)" in names
        assert {n for n in names if "ONNX Runtime static QDQ" in n} == {
            "int8 ONNX Runtime static QDQ per-channel U8S8",
            "int8 ONNX Runtime static QDQ per-channel S8S8 (ORT default)",
        }
        _check_table(table, ("top1_agree", "sqnr_db"))
    dynamic = report["sections"]["dynamic"]
    assert set(dynamic["batches"]) == {"1", "16"}
    for table in dynamic["batches"].values():
        assert set(table["paths"]) == set(dynamic["labels"].values())
        _check_table(table, ("cosine",))


def test_unknown_section_is_rejected(capsys):
    with pytest.raises(SystemExit):
        main(["--only", "nope"])
    assert "unknown section" in capsys.readouterr().err


def _path(precision, median, eager_ms, best_ms, **fid):
    return {
        "precision": precision,
        "median_ms": median,
        "min_ms": median * 0.9,
        "p90_ms": median * 1.1,
        "samples": 20,
        "vs_eager": eager_ms / median,
        "vs_best_fp32": best_ms / median,
        "g_ops_per_s": 1.0,
        "pct_of_peak": 10.0,
        **fid,
    }


def _synthetic_report():
    cnn = {
        "gflop_per_call": 3.6,
        "best_fp32": "fp32 torch.compile (inductor, freezing)",
        "paths": {
            "fp32 eager": _path("fp32", 30.0, 30.0, 20.0),
            "fp32 torch.compile (inductor, freezing)": _path("fp32", 20.0, 30.0, 20.0),
            "int8 course eager static (x86)": _path("int8", 8.0, 30.0, 20.0, top1_agree=1.0, sqnr_db=25.0),
            "int8 ONNX Runtime static QDQ per-channel S8S8 (ORT default)": _path("int8", 19.0, 30.0, 20.0),
        },
    }
    labels = {"mixed": "int8 course mixed precision (6 layers float)", "ort8": "int8 ONNX Runtime dynamic per-channel"}
    minilm = {
        "gflop_per_call": 0.34,
        "best_fp32": "fp32 ONNX Runtime + transformer fusion",
        "paths": {
            "fp32 eager": _path("fp32", 15.0, 15.0, 5.0),
            "fp32 ONNX Runtime + transformer fusion": _path("fp32", 5.0, 15.0, 5.0, cosine=1.0),
            labels["mixed"]: _path("int8", 10.0, 15.0, 5.0, cosine=0.9916),
            labels["ort8"]: _path("int8", 3.125, 15.0, 5.0, cosine=0.9932),
        },
    }
    peaks = {
        "threads": 2,
        "int8_exact_kernel": True,
        "compute_shape": [1024, 1024, 1024],
        "batch1_shape": [1, 2048, 2048],
        "compute_fp32_gflops": 170.0,
        "compute_int8_gops": 800.0,
        "batch1_fp32_gflops": 10.0,
        "batch1_int8_gops": 20.0,
        "batch16_fp32_gflops": 90.0,
        "batch16_int8_gops": 200.0,
        "batch1_fp32_weight_gbs": 20.0,
        "batch1_int8_weight_gbs": 10.0,
    }
    meta = {
        "date": "2026-12-02 08:00:00",
        "python": "3.11",
        "torch": "2.14",
        "machine": "x86_64",
        "cpu_count": 2,
        "torch_threads": 2,
        "total_seconds": 600,
        "load": {"before": 0.2, "max_seen": 0.4, "max_allowed": 1.0, "ok": True, "between": [0.4], "after": 0.9},
    }
    return {
        "meta": meta,
        "peaks": peaks,
        "sections": {
            "static": {"models": {"resnet18": cnn, "mobilenet_v2": cnn, "darknet19": cnn}, "sizes": {}},
            "dynamic": {"batches": {"1": minilm, "16": minilm}, "seq_len": 16, "labels": labels, "keep_float": ["a"]},
        },
    }


def test_readme_block_gives_ratios_against_the_best_fp32_path_and_eager():
    report = _synthetic_report()
    block = render_results(report)
    lines = block.splitlines()
    assert len(lines) <= 12
    assert lines[1].startswith("- ResNet-18, batch 1: the course's eager int8 is **2.50× the best fp32 path**")
    assert "3.75× eager fp32" in lines[1] and "ORT S8S8 (ORT's default activations) 1.05×" in lines[1]
    minilm = next(line for line in lines if line.startswith("- MiniLM, batch 1 "))
    assert "course mixed precision **0.50×** (1.50× eager, cosine 0.9916)" in minilm
    assert "ORT dynamic int8 per-channel **1.60×** (4.80× eager, cosine 0.9932)" in minilm
    assert "load average 0.20 at the start (idle), at most 0.40 between sections" in block
    report["meta"]["load"].update(before=3.5, max_seen=3.5, ok=False)
    assert "NOT idle" in render_results(report)


def test_results_page_has_every_path_with_spread_and_peak():
    page = render_results_page(_synthetic_report())
    assert "## Roofline: this machine's matmul peaks" in page
    assert "| 1024×1024×1024 (compute-bound) | 170.0 | 800.0 | 4.71× |" in page
    assert "| **fp32 torch.compile (inductor, freezing)** | 20.00 | 18.00–22.00 | 1.50× | 1.00× |" in page
    assert (
        "| int8 course eager static (x86) | 8.00 | 7.20–8.80 | 3.75× | 2.50× | 1.0 | 10.0% of int8 | top-1 100%, SQNR 25.0 dB |"
        in page
    )
    assert "### MiniLM, batch 16 × 16 tokens" in page and "cosine 0.9932" in page


def test_benchmark_waits_for_the_load_and_records_it(monkeypatch):
    from tools import _timing, bench

    loads = iter([3.0, 2.0, 0.5])
    monkeypatch.setattr(_timing, "load_average", lambda: next(loads))
    monkeypatch.setattr(bench.time, "sleep", lambda s: None)
    rec = bench.wait_for_idle(1.0, 60.0)
    assert rec["ok"] and rec["before"] == 0.5
    monkeypatch.setattr(_timing, "load_average", lambda: 4.0)
    rec = bench.wait_for_idle(1.0, 0.0)
    assert not rec["ok"] and rec["before"] == 4.0 and rec["max_allowed"] == 1.0


def test_strict_load_refuses_a_busy_machine(monkeypatch, capsys):
    from tools import _timing

    monkeypatch.setattr(_timing, "load_average", lambda: 9.0)
    assert main(["--only", "affine", "--load-wait", "0", "--strict-load"]) == 3
    out = capsys.readouterr().out
    assert "WARNING: the 1-minute load average is 9.00" in out and "refusing to run" in out


def test_meta_line_names_the_int8_instruction_set_when_recorded():
    from tools.bench import _meta_line

    meta = dict(json.loads(DEFAULT_JSON.read_text())["meta"])
    meta.pop("cpu_capability", None), meta.pop("vnni", None)
    assert "VNNI" not in _meta_line(meta)  # runs before 2026-12-02 did not record it
    for vnni, words in ((True, "with VNNI"), (False, "without VNNI")):
        line = _meta_line({**meta, "cpu_capability": "AVX2", "vnni": vnni})
        assert f"ATen AVX2, {words}, " in line
