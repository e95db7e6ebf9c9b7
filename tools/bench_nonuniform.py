"""Benchmark: 1-D k-means (1M values -> 16 levels, goal <= 1 s) vs sklearn, and NF4 blockwise quantize vs bitsandbytes."""

from __future__ import annotations

import time
import warnings

import torch

from helpers.measure import measure_latency
from helpers.nonuniform import blockwise_absmax_codebook, kmeans_fit, nf4_levels
from tools._timing import compare

N_KMEANS = 2**20
N_NF4 = 16 * 2**20


def _sklearn_kmeans(x: torch.Tensor, init: torch.Tensor, max_iter: int) -> tuple[float, int, float]:
    """sklearn's Lloyd KMeans from the same initial levels: (seconds, iterations, MSE)."""
    from sklearn.cluster import KMeans

    data = x.double().numpy().reshape(-1, 1)
    km = KMeans(
        n_clusters=init.numel(),
        init=init.double().numpy().reshape(-1, 1),
        n_init=1,
        max_iter=max_iter,
        algorithm="lloyd",
        tol=1e-6,
    )
    t0 = time.perf_counter()
    km.fit(data)
    seconds = time.perf_counter() - t0
    return seconds, int(km.n_iter_), float(km.inertia_) / data.shape[0]


def run() -> dict:
    torch.manual_seed(0)
    x = torch.randn(N_KMEANS)
    res = kmeans_fit(x, 16)  # warm-up
    timing = measure_latency(lambda: kmeans_fit(x, 16), warmup=1, repeats=5)
    res = kmeans_fit(x, 16)
    seconds = timing.median_ms / 1000
    print(
        f"k-means 1M values -> 16 levels: {seconds:.3f} s median ({res.n_iter} Lloyd iterations, "
        f"converged {res.converged}, MSE {res.mse_history[-1]:.5f}); goal <= 1 s: {'met' if seconds <= 1 else 'MISSED'}"
    )
    out: dict = {
        "kmeans_1M_16_seconds": round(seconds, 4),
        "kmeans_1M_16_iterations": res.n_iter,
        "kmeans_1M_16_goal_met": seconds <= 1.0,
    }
    # sklearn baseline: same data, same initial levels (our quantile init after 0 iterations), same iteration cap
    init = kmeans_fit(x, 16, max_iter=0).levels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sk_s, sk_it, sk_mse = _sklearn_kmeans(x, init, max_iter=res.n_iter)
        ours = kmeans_fit(x, 16, init=init, max_iter=res.n_iter, tol=1e-12)
        t0 = time.perf_counter()
        ours = kmeans_fit(x, 16, init=init, max_iter=sk_it, tol=1e-12)
        ours_s = time.perf_counter() - t0
        print(
            f"same init, {sk_it} iterations each: helper {ours_s:.3f} s (MSE {ours.mse_history[-1]:.6f})   "
            f"sklearn KMeans {sk_s:.3f} s (MSE {sk_mse:.6f})   sklearn/helper {sk_s / ours_s:.1f}x"
        )
        out.update(
            {
                "sklearn_seconds": round(sk_s, 3),
                "sklearn_iterations": sk_it,
                "helper_same_iters_seconds": round(ours_s, 4),
                "sklearn_over_helper": round(sk_s / ours_s, 2),
            }
        )
    except ImportError as e:  # pragma: no cover - sklearn is in requirements.txt
        print(f"sklearn baseline skipped: {e}")

    # NF4 blockwise quantize, 16M values, block 64: helper vs bitsandbytes.functional.quantize_4bit
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import bitsandbytes.functional as bnbF
    w = torch.randn(4096, 4096)
    table = bnbF.get_4bit_type("nf4", device="cpu")
    q, absmax = blockwise_absmax_codebook(w, table, 64)
    packed, state = bnbF.quantize_4bit(w, blocksize=64, quant_type="nf4")
    u = packed.reshape(-1)
    same = bool(torch.equal(torch.stack([u >> 4, u & 15], 1).reshape(-1), q)) and bool(
        torch.equal(absmax, state.absmax)
    )
    print(f"NF4 codes bit-exact with bitsandbytes on 16M values: {same}")
    lv = nf4_levels()
    out["nf4_quantize_16M"] = compare(
        "NF4 blockwise quantize, 16M values, block 64",
        lambda: blockwise_absmax_codebook(w, lv, 64),
        lambda: bnbF.quantize_4bit(w, blocksize=64, quant_type="nf4"),
        repeats=5,
    )
    out["nf4_codes_bit_exact"] = same
    return out
