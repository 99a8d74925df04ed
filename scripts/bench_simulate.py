"""Benchmark: simulated requests per second, JAX engine vs the plain NumPy reference, in one run.

Prefill pool (FIFO servers): Poisson arrivals at 80% load on 8 servers, exponential service, round robin
(max-plus associative scan) and least_work (Kiefer-Wolfowitz scan). Decode: the paper's DeepSeek-V3.1 /
H200 TPOT table, 3 instances at 4.4 M tokens per minute (output 512, continuous batching event to event).
End to end: simulate() on 8 rows (workloads) of the paper's 3P3D case, prefill + transfer + decode +
statistics. JAX times exclude compilation (one warm-up call per shape first) and take the best of
--repeat; the NumPy reference (pdfleet/simulate/reference.py) runs once on fewer requests (it is slow),
rates compared per request.

Usage: python scripts/bench_simulate.py [--requests 1048576] [--decode-requests 20000] [--rows 8]
       [--numpy-requests 100000] [--numpy-decode-requests 2000] [--repeat 3]
Last line: RESULT requests_per_s=<prefill pool rr, JAX> numpy_ratio=<that rate / NumPy rr rate>
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from pdfleet.simulate import decode, paper, prefill, reference
from pdfleet.simulate.engine import simulate

SERVERS = 8


def best_time(fn, repeat: int) -> float:
    jax.block_until_ready(fn())  # compile
    best = np.inf
    for _ in range(repeat):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - t)
    return best


def once(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=1 << 20)
    ap.add_argument("--decode-requests", type=int, default=20_000)
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--numpy-requests", type=int, default=100_000)
    ap.add_argument("--numpy-decode-requests", type=int, default=2_000)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    n = a.requests
    arrival = np.cumsum(rng.exponential(1 / (0.8 * SERVERS), n)).astype(np.float32)
    service = rng.exponential(1.0, n).astype(np.float32)
    valid = np.ones(n, bool)
    dev = [jnp.asarray(v) for v in (arrival, service, valid)]
    print(f"device {jax.devices()[0].platform}; prefill pool: {n:,} requests, {SERVERS} servers, load 0.8")
    rates = {}
    for policy in ("rr", "least_work"):
        t = best_time(lambda: prefill.pool_jit(*dev, servers=SERVERS, n_servers=SERVERS, policy=policy), a.repeat)
        m = min(a.numpy_requests, n)
        t_np = once(lambda: reference.pool(arrival[:m], service[:m], valid[:m], SERVERS, policy))
        rates[policy] = (n / t, m / t_np)
        print(f"  {policy:10s} JAX {n / t:14,.0f} req/s   NumPy {m / t_np:12,.0f} req/s   x{t_np / m * n / t:,.0f}")

    x = paper.paper_input([4.4e6], 3, 3, a.decode_requests)
    ready = np.asarray(x.arrival_s[0] + x.service_s[0], np.float32)
    out = np.asarray(x.output_tokens[0])
    grid, step = np.float32(paper.TPOT_BATCH), np.float32(paper.TPOT_MS / 1e3)
    ok = np.ones(a.decode_requests, bool)
    t = best_time(lambda: decode.decode_jit(ready, out, ok, 3, "rr", grid, step, 256, instances=3, slots=256),
                  a.repeat)
    m = min(a.numpy_decode_requests, a.decode_requests)
    t_np = once(lambda: reference.decode(ready[:m], out[:m], ok[:m], 3, "rr", grid, step, 256))
    print(f"decode (3 instances, 4.4 M TPM, output 512): JAX {a.decode_requests / t:,.0f} req/s   "
          f"NumPy {m / t_np:,.0f} req/s   x{t_np / m * a.decode_requests / t:,.0f}")

    xs = paper.paper_input([4.4e6] * a.rows, 3, 3, a.decode_requests)
    t = best_time(lambda: simulate(xs, seed=1), a.repeat)
    print(f"simulate() end to end, {a.rows} rows x {a.decode_requests:,} requests: "
          f"{a.rows * a.decode_requests / t:,.0f} req/s")
    jax_rr, np_rr = rates["rr"]
    print(f"RESULT requests_per_s={jax_rr:.0f} numpy_ratio={jax_rr / np_rr:.1f}")


if __name__ == "__main__":
    main()
