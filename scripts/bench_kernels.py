"""Benchmark: capacity kernels + exact search over a synthetic fleet, JAX vs plain NumPy in one run.

A candidate evaluation = one (workload, role, profile) capacity under the SLO, plus its instance count
and cost in every quarter. The synthetic fleet: W workloads over M models, each model with C profiles
(skus x TP degrees), a prefill table and decode tables; lengths and SLOs drawn at random (seeded).

Usage: python scripts/bench_kernels.py [--workloads 20480] [--candidates 32] [--quarters 4] [--repeat 5]
Last line: RESULT evals_per_s=<jax> numpy_ratio=<jax speed / numpy speed>
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

from pdfleet import arrays, reference
from pdfleet.perf.memory import GIB
from pdfleet.search import exact


def synthetic_problem(n_workloads: int, n_candidates: int, n_quarters: int, seed: int = 0) -> arrays.Problem:
    rng = np.random.default_rng(seed)
    models = 4
    P, Kp, T, K = models * n_candidates, 8, 2, 8
    f = np.float32
    gpi = rng.choice([1, 2, 4, 8], P).astype(f)
    lens = np.sort(rng.choice(np.arange(128, 16384, 128), (P, Kp), replace=True), axis=1).astype(f)
    lens = lens + np.arange(Kp, dtype=f)  # strictly increasing
    batch = np.sort(rng.choice(np.arange(1, 512), (P, T, K)), axis=2).astype(f) + np.arange(K, dtype=f)
    base = rng.uniform(8, 40, (P, T, 1)) / np.sqrt(gpi)[:, None, None]
    tpot = (base * (1 + batch * rng.uniform(0.002, 0.02, (P, T, 1)))).astype(f)
    profiles = arrays.Profiles(
        has_prefill=rng.random(P) < 0.95, prefill_len=lens,
        prefill_tps=(rng.uniform(2e3, 4e4, (P, Kp)) * gpi[:, None] / 4).astype(f),
        prefill_lo=lens[:, 0], prefill_hi=lens[:, -1],
        has_decode=rng.random(P) < 0.95, decode_batch=batch, decode_tpot=tpot, decode_hi=batch[:, :, -1],
        decode_ctx=rng.uniform(256, 8192, (P, T)).astype(f), decode_valid=np.ones((P, T), bool),
        memory_bytes=(gpi * 80 * GIB * 0.9).astype(f), weight_bytes=np.full(P, 140e9, f) * (gpi >= 2),
        kv_bytes_per_token=np.full(P, 327680, f), price_per_hour=(gpi * rng.uniform(1, 8, P)).astype(f),
    )
    W = n_workloads
    block = arrays.MAX_BLOCK
    assert W % block == 0, f"--workloads must be a multiple of {block}"
    block_model = np.arange(W // block) % models  # rows grouped by model, as arrays.build lays them out
    cand = (block_model[:, None] * n_candidates + np.arange(n_candidates)[None]).astype(np.int32)
    workloads = arrays.Workloads(
        input_tokens=rng.integers(64, 12000, W).astype(f), output_tokens=rng.integers(16, 2048, W).astype(f),
        overhead_s=rng.uniform(0, 0.2, W).astype(f), budget_s=rng.uniform(0.3, 5, W).astype(f),
        ttft_quantile=rng.choice([0.0, 0.9], W).astype(f), tpot_slo_ms=rng.uniform(15, 150, W).astype(f),
        demand_rps=rng.uniform(0, 50, (n_quarters, W)).astype(f),
        input_scv=np.zeros(W, f), queue=np.zeros(W, f), tpot_quantile=np.full(W, -1.0, f),
    )
    return arrays.Problem(workloads, profiles, cand, np.ones_like(cand, bool))


def numpy_solve(problem) -> None:
    pre, dec = reference.capacities(problem)
    price = np.asarray(problem.profiles.price_per_hour, np.float64)[problem.candidates]
    demand = np.asarray(problem.workloads.demand_rps, np.float64)
    reference.cheapest(demand, pre, price, False)
    reference.cheapest(demand, dec / np.asarray(problem.workloads.output_tokens)[:, None], price, False)


def best_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workloads", type=int, default=20480)
    ap.add_argument("--candidates", type=int, default=32)
    ap.add_argument("--quarters", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=10)
    args = ap.parse_args()
    problem = synthetic_problem(args.workloads, args.candidates, args.quarters)
    device_problem = jax.device_put(problem)
    evals = args.workloads * args.candidates * 2  # (workload, profile) pairs x 2 roles

    def run_jax():
        jax.block_until_ready(exact.solve(device_problem))

    t0 = time.perf_counter()
    run_jax()
    compile_s = time.perf_counter() - t0
    jax_s = best_time(run_jax, args.repeat)
    np_s = best_time(lambda: numpy_solve(problem), max(1, args.repeat // 2))
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), workloads {args.workloads:,}, "
          f"candidates/workload {args.candidates}, quarters {args.quarters}")
    print(f"candidate evaluations per solve: {evals:,} (x{args.quarters} quarters of counts and costs)")
    print(f"jax  first call (compile + run): {compile_s:.3f} s")
    print(f"jax  solve: {jax_s * 1e3:.1f} ms -> {evals / jax_s / 1e6:.1f} M evals/s")
    print(f"numpy solve: {np_s * 1e3:.1f} ms -> {evals / np_s / 1e6:.1f} M evals/s")
    print(f"RESULT evals_per_s={evals / jax_s:.4g} numpy_ratio={np_s / jax_s:.3g}")


if __name__ == "__main__":
    main()
