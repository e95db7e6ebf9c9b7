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
    assert set(sections["notebooks"]["seconds"]) >= {"01_float_bits", "02_affine", "08_recipes"}


def test_unknown_section_is_rejected(capsys):
    with pytest.raises(SystemExit):
        main(["--only", "nope"])
    assert "unknown section" in capsys.readouterr().err
