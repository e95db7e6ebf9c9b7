"""helpers.runtimes: the ONNX Runtime / torch.compile paths agree with eager torch, the timing records are
consistent, the speed table picks the right baseline, and bad arguments are rejected by name."""

import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from helpers import runtimes as rt


@pytest.fixture(scope="module")
def mlp_onnx(tmp_path_factory):
    import os

    before = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))  # a fresh export, not the user's cache
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 8)).eval()
    x = torch.randn(5, 16)
    path = rt.export_onnx(
        model,
        (x,),
        "tiny_mlp",
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
    )
    yield model, x, path
    if before is None:
        del os.environ["XDG_CACHE_HOME"]
    else:
        os.environ["XDG_CACHE_HOME"] = before


def _timing(median, lo, p90, hi, n=10):
    return rt.PathTiming(median, lo, p90, hi, n, 2)


def test_import_is_cheap():
    code = "import sys, helpers.runtimes; print('onnxruntime' in sys.modules, 'onnx' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_export_and_ort_fp32_equal_torch(mlp_onnx):
    model, x, path = mlp_onnx
    assert path.is_file() and path.parent == rt.onnx_cache_dir()
    # the cache: the same weights and shapes give the same file without exporting again
    mtime = path.stat().st_mtime_ns
    again = rt.export_onnx(
        model,
        (x,),
        "tiny_mlp",
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
    )
    assert again == path and again.stat().st_mtime_ns == mtime
    sess = rt.ort_session(path)
    for batch in (1, 5, 9):  # the dynamic batch axis
        xb = torch.randn(batch, 16)
        got = sess.run(None, {"x": xb.numpy()})[0]
        with torch.no_grad():
            want = model(xb).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_changed_weights_give_a_new_export(mlp_onnx):
    model, x, path = mlp_onnx
    other = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 8)).eval()
    assert rt.export_onnx(other, (x,), "tiny_mlp", input_names=["x"], output_names=["y"]) != path


def test_ort_session_threads_and_spinning(mlp_onnx):
    _, _, path = mlp_onnx
    sess = rt.ort_session(path, threads=1)
    opts = sess.get_session_options()
    assert opts.intra_op_num_threads == 1
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"


# ONNX Runtime's u8 x s8 kernels on x86 CPUs without VNNI add products in pairs into a saturating int16 (vpmaddubsw):
# 8-bit weights can overflow there (about 22 % error on this MLP on an AVX2 EPYC), which is why ORT advises
# reduce_range (7-bit weights) on such CPUs. With VNNI (vpdpbusd) the sums are exact either way.
VNNI = torch.cpu._is_vnni_supported()


def _rel_err(path, q, x):
    ref = rt.ort_session(path).run(None, {"x": x.numpy()})[0]
    got = rt.ort_session(q).run(None, {"x": x.numpy()})[0]
    return float(np.abs(got - ref).max() / np.abs(ref).max())


def test_quantize_dynamic_onnx_is_close_to_fp32(mlp_onnx):
    _, x, path = mlp_onnx
    for per_channel in (True, False):
        for reduce_range in (True, False):
            q = rt.quantize_dynamic_onnx(path, per_channel=per_channel, reduce_range=reduce_range)
            assert q != path and q.is_file()
            # int8 weights and activations: the error is a few percent of the output range, not zero
            err = _rel_err(path, q, x)
            assert 0 < err < (0.05 if reduce_range or VNNI else 1.0), (per_channel, reduce_range, err)
    assert rt.quantize_dynamic_onnx(path, reduce_range=True) != rt.quantize_dynamic_onnx(path)


def test_quantize_static_onnx_is_close_to_fp32(mlp_onnx):
    _, x, path = mlp_onnx
    gen = torch.Generator().manual_seed(1)
    calib = [{"x": torch.randn(8, 16, generator=gen).numpy()} for _ in range(4)]
    u8 = rt.quantize_static_onnx(path, calib)
    s8 = rt.quantize_static_onnx(path, calib, activation_type="int8")
    assert u8 != s8
    for reduce_range in (True, False):
        for act in ("uint8", "int8"):
            q = rt.quantize_static_onnx(path, calib, activation_type=act, reduce_range=reduce_range)
            assert q in (u8, s8) if not reduce_range else q not in (u8, s8)
            err = _rel_err(path, q, x)
            assert 0 < err < (0.1 if reduce_range or VNNI else 1.0), (act, reduce_range, err)


def test_onnx_functions_reject_bad_arguments(mlp_onnx, tmp_path):
    model, x, path = mlp_onnx
    with pytest.raises(ValueError, match="name must be"):
        rt.export_onnx(model, (x,), "bad name/..", input_names=["x"], output_names=["y"])
    with pytest.raises(TypeError, match="example_inputs"):
        rt.export_onnx(model, x, "m", input_names=["x"], output_names=["y"])
    with pytest.raises(ValueError, match="input_names"):
        rt.export_onnx(model, (x,), "m", input_names=["x", "z"], output_names=["y"])
    with pytest.raises(TypeError, match="output_names"):
        rt.export_onnx(model, (x,), "m", input_names=["x"], output_names="y")
    with pytest.raises(ValueError, match="dynamic_axes"):
        rt.export_onnx(model, (x,), "m", input_names=["x"], output_names=["y"], dynamic_axes={"q": {0: "b"}})
    with pytest.raises(TypeError, match="model"):
        rt.export_onnx("model", (x,), "m", input_names=["x"], output_names=["y"])
    with pytest.raises(ValueError, match="path must be an existing .onnx file"):
        rt.ort_session(tmp_path / "missing.onnx")
    with pytest.raises(ValueError, match="threads must be an integer in 1..256"):
        rt.ort_session(path, threads=0)
    with pytest.raises(TypeError, match="per_channel"):
        rt.quantize_dynamic_onnx(path, per_channel="yes")
    with pytest.raises(TypeError, match="reduce_range must be True or False"):
        rt.quantize_static_onnx(path, [{"x": x.numpy()}], reduce_range=1)
    with pytest.raises(ValueError, match="activation_type must be one of 'uint8', 'int8'"):
        rt.quantize_static_onnx(path, [{"x": x.numpy()}], activation_type="int4")
    with pytest.raises(ValueError, match="quant_format must be one of 'QDQ', 'QOperator'"):
        rt.quantize_static_onnx(path, [{"x": x.numpy()}], quant_format="qdq")
    with pytest.raises(ValueError, match="calibration must be a non-empty list"):
        rt.quantize_static_onnx(path, [])
    with pytest.raises(TypeError, match=r"calibration\[0\]"):
        rt.quantize_static_onnx(path, [{"x": x}])
    with pytest.raises(ValueError, match="hidden_size must be a multiple of num_heads"):
        rt.optimize_transformer(path, num_heads=5, hidden_size=16)


def test_time_interleaved_medians_lie_within_the_spread():
    a = torch.randn(64, 64)
    timings = rt.time_interleaved(
        {"mm": lambda: a @ a, "add": lambda: a + a, "sleep": lambda: __import__("time").sleep(0.001)},
        rounds=4,
        calls_per_round=3,
        warmup=1,
    )
    assert list(timings) == ["mm", "add", "sleep"]
    for t in timings.values():
        assert isinstance(t, rt.PathTiming)
        assert t.samples == 4 * 2  # the switch-in call of each block is not recorded
        assert t.min_ms <= t.median_ms <= t.p90_ms <= t.max_ms
        assert t.threads == 2
    assert timings["sleep"].min_ms >= 1.0
    one = rt.time_interleaved({"add": lambda: a + a}, rounds=3, calls_per_round=1, warmup=0)
    assert one["add"].samples == 3


def test_time_interleaved_restores_threads_and_counts_calls():
    calls = {"a": 0, "b": 0}

    def make(name):
        def fn():
            calls[name] += 1

        return fn

    before = torch.get_num_threads()
    rt.time_interleaved({"a": make("a"), "b": make("b")}, rounds=5, calls_per_round=2, warmup=3, threads=1)
    assert torch.get_num_threads() == before
    assert calls == {"a": 3 + 5 * 2, "b": 3 + 5 * 2}


def test_time_interleaved_rejects_bad_arguments():
    with pytest.raises(ValueError, match="paths must be a non-empty dict"):
        rt.time_interleaved({})
    with pytest.raises(TypeError, match=r"paths\['x'\] must be callable"):
        rt.time_interleaved({"x": 3})
    with pytest.raises(ValueError, match="rounds must be an integer in 1..inf"):
        rt.time_interleaved({"x": lambda: None}, rounds=0)
    with pytest.raises(ValueError, match="calls_per_round must be an integer in 1..100"):
        rt.time_interleaved({"x": lambda: None}, calls_per_round=0)
    with pytest.raises(TypeError, match="warmup must be an int"):
        rt.time_interleaved({"x": lambda: None}, warmup=1.5)


def test_speed_table_ratios_and_best_fp32():
    timings = {
        "eager": _timing(30.0, 29.0, 32.0, 35.0),
        "compile": _timing(20.0, 19.0, 21.0, 22.0),
        "ort": _timing(24.0, 23.0, 25.0, 26.0),
        "int8": _timing(8.0, 7.5, 9.0, 9.5),
        "slow_int8": _timing(40.0, 39.0, 41.0, 42.0),
    }
    rows = rt.speed_table(timings, eager="eager", fp32=["compile", "ort"])
    by = {r["name"]: r for r in rows}
    assert [r["name"] for r in rows] == list(timings)
    assert {r["best_fp32"] for r in rows} == {"compile"}  # lowest fp32 median; int8 never counts as a baseline
    assert by["eager"]["vs_eager"] == 1.0 and by["compile"]["vs_best_fp32"] == 1.0
    assert math.isclose(by["int8"]["vs_eager"], 30 / 8) and math.isclose(by["int8"]["vs_best_fp32"], 20 / 8)
    assert math.isclose(by["eager"]["vs_best_fp32"], 20 / 30)
    assert by["slow_int8"]["vs_best_fp32"] < 1 and not by["slow_int8"]["is_fp32"] and by["ort"]["is_fp32"]
    assert (by["int8"]["min_ms"], by["int8"]["p90_ms"]) == (7.5, 9.0)
    # eager is an fp32 path even if not listed again; it is the best when it is the fastest
    rows = rt.speed_table({"eager": _timing(5, 4, 6, 7), "ort": _timing(6, 5, 7, 8)}, eager="eager", fp32=["ort"])
    assert rows[0]["best_fp32"] == "eager"
    text = rt.format_speed_table(rt.speed_table(timings, eager="eager", fp32=["compile", "ort"]))
    assert "compile*" in text and "2.50x" in text and "3.75x" in text and "best fp32 path: compile" in text


def test_speed_table_rejects_bad_arguments():
    timings = {"eager": _timing(3, 2, 4, 5), "int8": _timing(1, 1, 2, 2)}
    with pytest.raises(ValueError, match="eager must be one of 'eager', 'int8'"):
        rt.speed_table(timings, eager="fp32", fp32=[])
    with pytest.raises(ValueError, match="fp32 must be one of"):
        rt.speed_table(timings, eager="eager", fp32=["onnx"])
    with pytest.raises(TypeError, match="fp32 must be an iterable of path names"):
        rt.speed_table(timings, eager="eager", fp32="eager")
    with pytest.raises(TypeError, match=r"timings\['int8'\] must be a PathTiming"):
        rt.speed_table({"eager": timings["eager"], "int8": 1.0}, eager="eager", fp32=[])
    with pytest.raises(ValueError, match="timings must be a non-empty dict"):
        rt.speed_table({}, eager="eager", fp32=[])
    with pytest.raises(ValueError, match="rows must be"):
        rt.format_speed_table([])
    with pytest.raises(ValueError, match="rows must be speed_table rows"):
        rt.format_speed_table([{"name": "x"}])


def test_compile_fp32_matches_eager():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.GELU(), torch.nn.Linear(16, 4)).eval()
    x = torch.randn(3, 8)
    run = rt.compile_fp32(model, (x,))
    with torch.no_grad():
        torch.testing.assert_close(run(x), model(x), rtol=1e-5, atol=1e-5)
    with pytest.raises(TypeError, match="example_inputs"):
        rt.compile_fp32(model, x)
    with pytest.raises(TypeError, match="model must be an nn.Module"):
        rt.compile_fp32(lambda t: t, (x,))


def test_matmul_peaks_are_positive():
    before = torch.get_num_threads()
    peaks = rt.matmul_peaks(threads=1, size=128, gemv=256, repeats=3)
    assert torch.get_num_threads() == before
    assert (
        peaks["threads"] == 1 and peaks["compute_shape"] == [128, 128, 128] and peaks["batch1_shape"] == [1, 256, 256]
    )
    for key in (
        "compute_fp32_gflops",
        "compute_int8_gops",
        "batch1_fp32_gflops",
        "batch1_int8_gops",
        "batch16_int8_gops",
    ):
        assert peaks[key] > 0
    assert math.isclose(peaks["batch1_fp32_weight_gbs"], 2 * peaks["batch1_fp32_gflops"])
    assert isinstance(peaks["int8_exact_kernel"], bool)
    with pytest.raises(ValueError, match="size must be an integer in 32..8192"):
        rt.matmul_peaks(size=8)
    with pytest.raises(ValueError, match="threads must be an integer in 1..256"):
        rt.matmul_peaks(threads=0)


def test_export_encoder_fuses_attention_and_matches_torch(mlp_onnx):
    import collections

    import onnx
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
    model = BertModel(config).eval()
    ids = torch.randint(0, 50, (2, 7))
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    batch = {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}
    path = rt.export_encoder(model, batch, "tiny_bert")
    fused = rt.optimize_transformer(path, num_heads=4, hidden_size=32)
    ops = collections.Counter(n.op_type for n in onnx.load(fused).graph.node)
    assert ops["Attention"] == 2 and ops["SkipLayerNormalization"] == 4
    feeds = {k: v.numpy() for k, v in batch.items()}
    with torch.no_grad():
        want = model(**batch).last_hidden_state.numpy()
    for p in (path, fused):
        np.testing.assert_allclose(rt.ort_session(p).run(None, feeds)[0], want, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="batch must be a tokenizer output"):
        rt.export_encoder(model, {"input_ids": ids}, "tiny_bert")
