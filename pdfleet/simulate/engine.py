"""simulate(): prefill pool -> KV transfer -> decode batching for many rows in one jitted call.

A row of SimInput is one (quarter, workload): its requests padded to a common length N with `valid`,
and its deployment. Per request (times in seconds, float32 unless x64 is on):
    prefill wait W and server   pdfleet/simulate/prefill.py (FIFO servers, policy rr | least_work)
    prefill finish  = A + W + S (S = service_s, the prefill compute time; token 1 is out)
    TTFT            = W + S + overhead_s        (overhead_s: fixed client-side latency, seen by every
                                                 token alike, so it cancels out of TPOT)
    decode ready    = prefill finish + transfer_s (KV-cache transfer)
    decode          pdfleet/simulate/decode.py (continuous batching, dispatch rr | least_loaded)
    TPOT            = (decode finish - prefill finish) / (output_tokens - 1)   (L_out > 1 only; it
                      includes the transfer and the wait to join a batch)
Statistics drop the first `warmup` and the last `cooldown` fraction of each row's requests (by arrival
order; defaults 5% each: the empty start and the draining end are not steady state). decode_batch_mean
(time average of the batch while an instance is stepping) and the per-token TPOT (the step time each
decode token waited for, token-weighted) cover the whole run.

Each row's clock starts at its first arrival (a trace's absolute timestamps are shifted on the host, in
float64). Queueing waits are computed from gaps (exact in float32); decode runs on the absolute clock,
so a time T costs about ulp(T) / (output_tokens - 1) of TPOT accuracy: float32 at T = 1e4 s (ulp 1 ms)
gives 2 us per token at 512 output tokens; for longer horizons and short outputs enable x64. Measured on
the paper's case (1,800 s): float32 equals x64 to 5e-5 relative in every statistic.

The engine itself draws nothing at random: with `seed=None` it replays arrival_s as given; with a seed,
row r gets Poisson arrivals at rate_rps[r] from fold_in(PRNGKey(seed), r) instead, so a row's sample does
not depend on the other rows or on chunking. Same input and seed, same output.

The loop over rows lives here only (`_rows`: vmap on accelerators, lax.map on CPU); prefill.py and
decode.py see one row. Rows run in chunks of `chunk_rows` (default: about 2^22 request slots per chunk)
so large batches fit in memory. The prefill policy and decode dispatch are one static choice per call
(group rows by policy).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax, random

from pdfleet.simulate import decode as decode_mod
from pdfleet.simulate import prefill as prefill_mod


class SimInput(NamedTuple):
    """Rows to simulate; every array has the row axis first ([R] or [R, N] or [R, K])."""

    arrival_s: object  # [R, N] arrival times, non-decreasing among valid requests (ignored with a seed)
    input_tokens: object  # [R, N] int (carried for the lead's reports; service_s already accounts for it)
    output_tokens: object  # [R, N] int >= 1
    service_s: object  # [R, N] prefill compute time of each request
    valid: object  # [R, N] bool
    prefill_servers: object  # [R] int >= 1
    overhead_s: object  # [R]
    transfer_s: object  # [R]
    decode_instances: object  # [R] int >= 1
    tpot_batch: object  # [R, K] increasing batch sizes of the TPOT curve (K >= 2, the same K for all rows)
    tpot_step_s: object  # [R, K] step time at those batches [s]
    max_batch: object  # [R] int >= 1, the KV-memory limit on a decode batch
    rate_rps: object  # [R] Poisson rate used when simulate() gets a seed (else unused)
    slo_ttft_s: object = None  # [R] TTFT SLO: attainment = share of requests within it (None: inf)
    slo_tpot_s: object = None  # [R] TPOT SLO per request (None: inf)


class SimStats(NamedTuple):
    """Per-row results (numpy arrays [R])."""

    requests: np.ndarray  # requests counted (after the warm-up / cool-down trim)
    ttft_mean_s: np.ndarray
    ttft_p50_s: np.ndarray
    ttft_p90_s: np.ndarray
    ttft_p99_s: np.ndarray
    tpot_mean_ms: np.ndarray  # mean over requests of their TPOT
    tpot_p90_ms: np.ndarray  # p90 over requests of their TPOT
    tpot_token_mean_ms: np.ndarray  # mean over decode tokens of the step that produced them
    tpot_token_p90_ms: np.ndarray  # p90 over decode tokens of that step time
    decode_batch_mean: np.ndarray  # time-averaged batch while stepping
    decode_wait_mean_s: np.ndarray  # mean wait from KV ready to joining a batch
    prefill_wait_mean_s: np.ndarray  # mean queueing wait before prefill
    prefill_wait_prob: np.ndarray  # fraction of requests that waited before prefill (Erlang C for least_work)
    prefill_utilization: np.ndarray  # sum of service / (servers x arrival span)
    ttft_attainment: np.ndarray  # share of counted requests with TTFT <= slo_ttft_s
    tpot_attainment: np.ndarray  # share with TPOT <= slo_tpot_s (one-token requests have no TPOT: count as met)
    slo_attainment: np.ndarray  # share meeting both


def poisson_arrivals(key, rate_rps, n: int, dtype=None):
    """n Poisson arrival times [s] at rate_rps: cumulative sums of Exp(1) gaps / rate, first one > 0."""
    dtype = dtype or jnp.result_type(float)
    return jnp.cumsum(random.exponential(key, (n,), dtype)) / jnp.asarray(rate_rps, dtype)


def pad_rows(rows, fill=0):
    """Per-row request arrays of different lengths -> (array [R, N], valid [R, N]), N the longest row,
    padded with `fill`; the layout SimInput wants (e.g. one row per quarter x workload)."""
    n = max((len(r) for r in rows), default=0)
    out = np.full((len(rows), n), fill, dtype=np.result_type(*[np.asarray(r).dtype for r in rows], type(fill)))
    valid = np.zeros((len(rows), n), bool)
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
        valid[i, :len(r)] = True
    return out, valid


def masked_quantiles(x, keep, qs):
    """Quantiles qs of x over the kept entries (numpy's default 'linear' rule); nan when none kept."""
    xs = jnp.sort(jnp.where(keep, x, jnp.inf))
    m = jnp.sum(keep)
    pos = jnp.asarray(qs, x.dtype) * (m - 1).astype(x.dtype)
    lo = jnp.floor(pos).astype(jnp.int32)
    hi = jnp.minimum(lo + 1, jnp.maximum(m - 1, 0))
    frac = pos - lo.astype(x.dtype)
    val = xs[lo] + frac * (xs[hi] - xs[lo])
    return jnp.where(m > 0, val, jnp.nan)


def weighted_quantile(values, weights, q):
    """Smallest value whose cumulative weight reaches q of the total (values sorted ascending)."""
    cum = jnp.cumsum(weights)
    i = jnp.searchsorted(cum, q * cum[-1], side="left")
    return jnp.where(cum[-1] > 0, values[jnp.minimum(i, values.shape[0] - 1)], jnp.nan)


def _masked_mean(v, keep):
    """Mean of v over the kept entries; nan when none kept."""
    count = jnp.sum(keep)
    return jnp.where(count > 0, jnp.sum(jnp.where(keep, v, 0.0)) / jnp.maximum(count, 1), jnp.nan)


def _row(x, key, row, seeded, warmup, cooldown, *, prefill_policy, decode_dispatch, servers, instances, slots):
    f = x.service_s.dtype
    n_req = x.valid.shape[0]
    valid = x.valid
    poisson = poisson_arrivals(random.fold_in(key, row), jnp.where(seeded, x.rate_rps, 1.0), n_req, f)
    arrival = jnp.where(seeded, poisson, x.arrival_s)
    wait, _ = prefill_mod.pool_waits(arrival, x.service_s, valid, servers, x.prefill_servers, prefill_policy)
    prefill_done = arrival + wait + x.service_s
    ready = prefill_done + x.transfer_s
    start, finish, _, dstats = decode_mod.decode(
        ready, x.output_tokens, valid, x.decode_instances, decode_dispatch, x.tpot_batch, x.tpot_step_s,
        x.max_batch, instances=instances, slots=slots)

    rank = jnp.cumsum(valid) - 1
    m = jnp.sum(valid)
    keep = valid & (rank >= jnp.floor(warmup * m)) & (rank < m - jnp.floor(cooldown * m))
    mean = _masked_mean
    ttft = wait + x.service_s + x.overhead_s
    ttft_q = masked_quantiles(ttft, keep, [0.5, 0.9, 0.99])
    n_keep = jnp.sum(keep)
    steps = (x.output_tokens - 1).astype(f)
    has_tpot = keep & (x.output_tokens > 1)
    tpot = (finish - prefill_done) / jnp.maximum(steps, 1.0)
    batches = jnp.arange(slots + 1)
    token_step = decode_mod.step_time(jnp.maximum(batches, 1), x.tpot_batch, x.tpot_step_s)
    w = dstats["tokens_by_batch"]  # step_time is non-decreasing in the batch: sorted values
    busy = jnp.sum(dstats["busy_s"])
    ttft_ok, tpot_ok = ttft <= x.slo_ttft_s, (tpot <= x.slo_tpot_s) | ~has_tpot  # one-token requests: no TPOT
    span = jnp.max(jnp.where(valid, arrival, -jnp.inf)) - jnp.min(jnp.where(valid, arrival, jnp.inf))
    return {
        "requests": n_keep,
        "ttft_mean_s": mean(ttft, keep),
        "ttft_p50_s": ttft_q[0], "ttft_p90_s": ttft_q[1], "ttft_p99_s": ttft_q[2],
        "tpot_mean_ms": 1e3 * mean(tpot, has_tpot),
        "tpot_p90_ms": 1e3 * masked_quantiles(tpot, has_tpot, [0.9])[0],
        "tpot_token_mean_ms": 1e3 * jnp.sum(w * token_step) / jnp.maximum(jnp.sum(w), 1.0),
        "tpot_token_p90_ms": 1e3 * weighted_quantile(token_step, w, 0.9),
        "decode_batch_mean": jnp.sum(dstats["batch_s"]) / jnp.maximum(busy, 1e-30),
        "decode_wait_mean_s": mean(start - ready, has_tpot),
        "prefill_wait_mean_s": mean(wait, keep),
        "prefill_wait_prob": mean((wait > 0).astype(f), keep),
        "prefill_utilization": jnp.sum(jnp.where(valid, x.service_s, 0.0))
        / (x.prefill_servers * jnp.maximum(span, 1e-30)),
        "ttft_attainment": mean(ttft_ok.astype(f), keep),
        "tpot_attainment": mean(tpot_ok.astype(f), keep),
        "slo_attainment": mean((ttft_ok & tpot_ok).astype(f), keep),
    }


_STATIC = ("prefill_policy", "decode_dispatch", "servers", "instances", "slots", "parallel_rows")


def _rows(x, key, rows, seeded, warmup, cooldown, *, parallel_rows, **static):
    """All rows of a chunk: vmapped (parallel_rows; meant for GPUs, where one row's event loop is bound by
    kernel launches; not measured yet) or one after the other in the same jitted call (lax.map; on CPU
    about 4x faster than vmap, whose per-row indexing turns into batched gathers and scatters)."""
    one = lambda xr, r: _row(xr, key, r, seeded, warmup, cooldown, **static)  # noqa: E731
    if parallel_rows:
        return jax.vmap(one)(x, rows)
    return lax.map(lambda a: one(*a), (x, rows))


_rows_jit = jax.jit(_rows, static_argnames=_STATIC)


def _check(x: SimInput, seeded: bool) -> None:
    """One-line ValueError naming the field and the fix."""
    if np.any(np.asarray(x.prefill_servers) < 1):
        raise ValueError("prefill_servers: every row needs at least 1 server")
    if np.any(np.asarray(x.decode_instances) < 1):
        raise ValueError("decode_instances: every row needs at least 1 instance")
    if np.any(np.asarray(x.max_batch) < 1):
        raise ValueError("max_batch: the decode batch limit must be at least 1")
    grid = np.asarray(x.tpot_batch)
    if grid.shape[-1] < 2 or np.any(np.diff(grid, axis=-1) <= 0):
        raise ValueError("tpot_batch: give at least 2 strictly increasing batch sizes per row")
    valid = np.asarray(x.valid, bool)
    if np.any(np.asarray(x.output_tokens)[valid] < 1):
        raise ValueError("output_tokens: every valid request needs at least 1 output token")
    if np.any(np.asarray(x.service_s)[valid] < 0):
        raise ValueError("service_s: prefill service times must be >= 0")
    if seeded:
        if np.any(np.asarray(x.rate_rps) <= 0):
            raise ValueError("rate_rps: Poisson arrivals (a seed) need a positive rate in every row")
    else:
        a = np.where(valid, np.asarray(x.arrival_s, np.float64), np.nan)
        for row in a:
            r = row[~np.isnan(row)]
            if np.any(np.diff(r) < 0):
                raise ValueError("arrival_s: sort each row's requests by arrival time")


def _per_row(value, valid, dtype):
    """An optional per-row value as [R] (None: inf)."""
    rows = np.asarray(valid).shape[0]
    return jnp.full((rows,), jnp.inf, dtype) if value is None else jnp.broadcast_to(jnp.asarray(value, dtype), (rows,))


def simulate(batch: SimInput, seed: int | None = None, *, prefill_policy: str = "rr",
             decode_dispatch: str = "rr", warmup: float = 0.05, cooldown: float = 0.05,
             chunk_rows: int | None = None, parallel_rows: bool | None = None) -> SimStats:
    """Simulate every row of `batch` (see the module docstring); returns SimStats of numpy arrays [R].

    parallel_rows: vmap the rows (default on GPU/TPU) or run them in sequence inside one jitted call
    (default on CPU); the results are the same."""
    if prefill_policy not in prefill_mod.POLICIES:
        raise ValueError(f"prefill_policy: {prefill_policy!r} is not one of {', '.join(prefill_mod.POLICIES)}")
    if decode_dispatch not in decode_mod.DISPATCH:
        raise ValueError(f"decode_dispatch: {decode_dispatch!r} is not one of {', '.join(decode_mod.DISPATCH)}")
    if not (0.0 <= warmup and 0.0 <= cooldown and warmup + cooldown < 1.0):
        raise ValueError("warmup, cooldown: fractions >= 0 that leave some requests (sum below 1)")
    seeded = seed is not None
    _check(batch, seeded)
    fl = jnp.result_type(float)
    arrival = np.asarray(batch.arrival_s, np.float64)
    valid = np.asarray(batch.valid, bool)
    first = np.min(np.where(valid, arrival, np.inf), axis=1, initial=np.inf)
    arrival = arrival - np.where(np.isfinite(first), first, 0.0)[:, None]  # each row's clock starts at 0
    x = SimInput(
        arrival_s=jnp.asarray(arrival, fl), input_tokens=jnp.asarray(batch.input_tokens, jnp.int32),
        output_tokens=jnp.asarray(batch.output_tokens, jnp.int32), service_s=jnp.asarray(batch.service_s, fl),
        valid=jnp.asarray(batch.valid, bool), prefill_servers=jnp.asarray(batch.prefill_servers, jnp.int32),
        overhead_s=jnp.asarray(batch.overhead_s, fl), transfer_s=jnp.asarray(batch.transfer_s, fl),
        decode_instances=jnp.asarray(batch.decode_instances, jnp.int32), tpot_batch=jnp.asarray(batch.tpot_batch, fl),
        tpot_step_s=jnp.asarray(batch.tpot_step_s, fl), max_batch=jnp.asarray(batch.max_batch, jnp.int32),
        rate_rps=jnp.asarray(batch.rate_rps, fl),
        slo_ttft_s=_per_row(batch.slo_ttft_s, batch.valid, fl), slo_tpot_s=_per_row(batch.slo_tpot_s, batch.valid, fl))
    n_rows, n_req = x.valid.shape
    static = {
        "prefill_policy": prefill_policy, "decode_dispatch": decode_dispatch,
        "servers": int(np.max(np.asarray(batch.prefill_servers))),
        "instances": int(np.max(np.asarray(batch.decode_instances))),
        "slots": int(max(1, min(int(np.max(np.asarray(batch.max_batch))), n_req))),
        "parallel_rows": (jax.default_backend() != "cpu") if parallel_rows is None else bool(parallel_rows),
    }
    chunk = chunk_rows or max(1, (1 << 22) // max(n_req, 1))
    key = random.PRNGKey(0 if seed is None else seed)
    parts = []
    for lo in range(0, n_rows, chunk):
        part = jax.tree_util.tree_map(lambda a: a[lo:lo + chunk], x)
        rows = jnp.arange(lo, lo + part.valid.shape[0])
        parts.append(jax.device_get(_rows_jit(part, key, rows, seeded, float(warmup), float(cooldown), **static)))
    return SimStats(**{k: np.concatenate([np.atleast_1d(p[k]) for p in parts]) for k in SimStats._fields})

