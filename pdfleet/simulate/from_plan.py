"""Simulate a plan: each served (quarter, workload) of plan.parquet becomes one engine row (engine.py).

What a row runs (the same performance model that made the plan):
- prefill: the plan's prefill instances; a request of L input tokens takes S(L) = L / TPmax(L) on the
  profile (perf/prefill.py); dispatch round robin to per-instance queues (queue mm1 / mg1: the split the
  plan sized), or least-work to a pooled queue (queue mmc: one M/M/c pool).
- between: the workload's overhead_s (in TTFT) and the pair's KV transfer (plan column kv_transfer_s).
- decode: the plan's decode instances, continuous batching on the decode table the plan used (its
  running-max envelope, as planned), the batch capped by KV memory (usable memory - weights over KV bytes
  of a mean-length request), dispatch to the least-loaded instance.
Arrivals: Poisson at the demand the plan was made for (demand_rps: without planning.headroom, which
only sizes the plan), times `demand_scale`, with lengths fixed or drawn from the workload's distribution
(lognormal with its mean and cv); or a trace replayed: its own requests and lengths, its clock scaled so
that its busiest window (planning.peak_window_s) arrives at that demand. A workload that names a trace
replays it by default.

slo_met compares the statistic each SLO bounds: TTFT mean or its quantile (the smallest simulated
quantile of p50/p90/p99 at or above the SLO's, so a p95 SLO is checked at p99: the safe side), and TPOT
per request, mean (the paper's and `mean`) or p90 (any tpot_quantile up to 0.9; above, p90 is all the
engine reports and the column says so in tpot_checked).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from pdfleet import spec as S
from pdfleet import traces
from pdfleet.output import schema
from pdfleet.simulate import engine

COLUMNS = tuple(schema.SIMULATE.names[:schema.SIMULATE_REQUIRED])  # the columns, first
EXTRA = tuple(schema.SIMULATE.names[schema.SIMULATE_REQUIRED:])
MAX_REQUESTS = 200_000  # per row; longer runs are cut (and say so in `arrivals`)
MAX_KV_BATCH = 4096


class Options(NamedTuple):
    seed: int = 0
    duration_s: float = 3600.0
    demand_scale: float = 1.0
    trace: str | None = None  # replay this file for every workload (else Poisson, or a workload's own trace)
    poisson: bool = False  # Poisson even where a workload names a trace


def simulate_plan(fleet: S.Fleet, plan: pd.DataFrame, options: Options = Options()) -> pd.DataFrame:
    """One row per served (quarter, workload) of the plan: simulated latencies and whether they meet the SLOs."""
    from pdfleet import arrays, predicted

    full = fleet.model_copy(update={"profiles": [*fleet.profiles, *predicted.predict(fleet).profiles]})
    profiles = arrays.profile_arrays(full)
    rows = _served(plan)
    if not rows:
        return pd.DataFrame(columns=[*COLUMNS, *EXTRA])
    read = functools.lru_cache(maxsize=None)(traces.read)  # a trace is read once per call, not once per row
    built = [_row(full, profiles, pre, dec, options, i, read) for i, (pre, dec) in enumerate(rows)]
    out = []
    for policy in ("rr", "least_work"):
        group = [b for b in built if b.policy == policy]
        if group:
            stats = engine.simulate(_stack([b.sim for b in group]), None, prefill_policy=policy,
                                    decode_dispatch="least_loaded")
            out += [_result(b, stats, k) for k, b in enumerate(group)]
    df = pd.DataFrame(out).sort_values(["quarter", "workload"], key=_fleet_order(fleet), kind="stable")
    return df[[*COLUMNS, *EXTRA]].reset_index(drop=True)


def _fleet_order(fleet):
    names = {n: i for i, n in enumerate(fleet.workloads)}
    quarters = {q: i for i, q in enumerate(fleet.planning.quarters)}

    def key(col):
        return col.map(quarters if col.name == "quarter" else names)

    return key


def _served(plan: pd.DataFrame):
    """(prefill row, decode row) pairs of plan rows with demand and instances on both roles."""
    pre = plan[(plan["role"] == "prefill") & (plan["instances"] > 0) & (plan["demand_rps"] > 0)]
    dec = plan[plan["role"] == "decode"].set_index(["quarter", "workload"])
    pairs = []
    for _, p in pre.iterrows():
        d = dec.loc[(p["quarter"], p["workload"])]
        if d["instances"] > 0:
            pairs.append((p, d))
    return pairs


class _Built(NamedTuple):
    sim: engine.SimInput
    policy: str
    meta: dict
    slo: tuple  # (ttft quantile or None, tpot quantile or None, ttft_s, tpot_ms)


def _row(fleet: S.Fleet, profiles, pre, dec, options: Options, index: int, read) -> _Built:
    name, quarter = pre["workload"], pre["quarter"]
    w = fleet.workloads[name]
    demand = float(pre["demand_rps"]) * options.demand_scale
    arrival, inp, out, note = _requests(fleet, w, demand, options, index, read)
    pi, di = int(pre["profile_index"]), int(dec["profile_index"])
    service = inp / _tpmax(profiles, pi, inp)
    tb, tt = _decode_curve(fleet, profiles, di, dec["decode_table"])
    kv = float(profiles.kv_bytes_per_token[di]) * (w.input_mean + w.output_mean)
    free = float(profiles.memory_bytes[di] - profiles.weight_bytes[di])
    max_batch = int(np.clip(np.floor(free / kv), 1, MAX_KV_BATCH))
    pooled = S.queue_model(fleet, w) == "mmc"
    sim = engine.SimInput(
        arrival_s=arrival, input_tokens=inp, output_tokens=out, service_s=service,
        valid=None, prefill_servers=int(pre["instances"]), overhead_s=w.overhead_s,
        transfer_s=float(np.nan_to_num(pre["kv_transfer_s"])), decode_instances=int(dec["instances"]),
        tpot_batch=tb, tpot_step_s=tt * 1e-3, max_batch=max_batch, rate_rps=demand, slo_ttft_s=w.slo.ttft_s,
        slo_tpot_s=w.slo.tpot_ms * 1e-3)
    meta = {"quarter": quarter, "workload": name, "arrivals": note, "demand_rps": demand,
            "prefill_instances": int(pre["instances"]), "decode_instances": int(dec["instances"]),
            "prefill_policy": "least_work" if pooled else "rr",
            "predicted_ttft_s": float(pre["predicted_ttft_s"]), "predicted_tpot_ms": float(dec["predicted_tpot_ms"])}
    return _Built(sim, meta["prefill_policy"], meta,
                  (S.ttft_quantile(fleet, w), S.tpot_quantile(fleet, w), w.slo.ttft_s, w.slo.tpot_ms))


def _tpmax(profiles, p: int, lengths: np.ndarray) -> np.ndarray:
    """TPmax(L) of profile p at each length: perf.prefill.max_tokens_per_s on the profile's table."""
    import jax.numpy as jnp

    from pdfleet.perf import prefill

    table_len, table_tps = profiles.prefill_len[p], profiles.prefill_tps[p]
    return np.asarray(prefill.max_tokens_per_s(jnp.asarray(lengths, jnp.float32), jnp.asarray(table_len),
                                               jnp.asarray(table_tps)), np.float64)


def _decode_curve(fleet: S.Fleet, profiles, p: int, label) -> tuple[np.ndarray, np.ndarray]:
    """(batches, TPOT ms) of the decode table the plan used, as its running-max envelope."""
    tables = fleet.profiles[p].decode
    table = next((t for t in tables if t.label == label), tables[0])
    return np.asarray(table.batch, np.float64), np.asarray(table.tpot_envelope(), np.float64)


def _requests(fleet: S.Fleet, w: S.Workload, rate: float, options: Options, index: int, read=traces.read):
    """(arrival_s, input_tokens, output_tokens, how) of one row's requests; `read` reads a trace file."""
    trace = options.trace or (None if options.poisson else w.trace)
    if trace is not None:
        t = read(str(trace))
        st = traces.stats(t, fleet.planning.peak_window_s)
        clock = st.peak_rps / rate  # the trace's busiest window arrives at the planned rate
        arrival = t.arrival_s * clock
        keep = slice(0, MAX_REQUESTS)
        return (arrival[keep], t.input_tokens[keep].astype(np.int64), t.output_tokens[keep].astype(np.int64),
                f"trace {Path(trace).name} x{1 / clock:.3g} speed")
    n = int(min(MAX_REQUESTS, max(2, np.ceil(rate * options.duration_s))))
    rng = np.random.default_rng([options.seed, index])
    arrival = np.cumsum(rng.exponential(1.0 / rate, n))
    inp = _draw(rng, w.input_tokens, n)
    out = _draw(rng, w.output_tokens, n)
    cut = "" if n < MAX_REQUESTS else f" (cut at {MAX_REQUESTS:,} requests)"
    return arrival, inp, out, f"poisson {n:,} requests{cut}"


def _draw(rng, lengths, n: int) -> np.ndarray:
    """n lengths: fixed, or lognormal with the distribution's mean and cv (at least 1 token)."""
    if not isinstance(lengths, S.Lengths):
        return np.full(n, int(lengths), np.int64)
    mean, scv = lengths.average, lengths.scv
    if scv == 0:
        return np.full(n, max(1, round(mean)), np.int64)
    sigma2 = np.log1p(scv)
    return np.maximum(1, np.round(rng.lognormal(np.log(mean) - sigma2 / 2, np.sqrt(sigma2), n))).astype(np.int64)


def _stack(sims: list[engine.SimInput]) -> engine.SimInput:
    """Pad rows to one request count (engine.pad_rows: invalid padding) and one TPOT-table length
    (arrays.pad_table: batches continue past the end, step times repeat the last)."""
    from pdfleet.arrays import pad_table

    k = max(len(s.tpot_batch) for s in sims)
    tables = [pad_table(s.tpot_batch, s.tpot_step_s, k) for s in sims]

    def per_request(field):
        return engine.pad_rows([getattr(s, field) for s in sims])[0]

    def per_row(field):
        return np.array([getattr(s, field) for s in sims])

    arrival, valid = engine.pad_rows([s.arrival_s for s in sims])
    return engine.SimInput(
        arrival_s=arrival, input_tokens=per_request("input_tokens"), output_tokens=per_request("output_tokens"),
        service_s=per_request("service_s"), valid=valid, prefill_servers=per_row("prefill_servers"),
        overhead_s=per_row("overhead_s"), transfer_s=per_row("transfer_s"), decode_instances=per_row("decode_instances"),
        tpot_batch=np.stack([b for b, _ in tables]), tpot_step_s=np.stack([t for _, t in tables]),
        max_batch=per_row("max_batch"), rate_rps=per_row("rate_rps"), slo_ttft_s=per_row("slo_ttft_s"),
        slo_tpot_s=per_row("slo_tpot_s"))


def _result(b: _Built, stats: engine.SimStats, k: int) -> dict:
    get = {f: float(getattr(stats, f)[k]) for f in stats._fields}
    ttft_q, tpot_q, slo_ttft, slo_tpot = b.slo
    ttft_col = "ttft_mean_s" if ttft_q is None else next(
        (f"ttft_p{p}_s" for p in (50, 90, 99) if p >= ttft_q * 100 - 1e-9), "ttft_p99_s")
    tpot_col = "tpot_mean_ms" if tpot_q is None or tpot_q == 0 else "tpot_p90_ms"
    ttft_met, tpot_met = get[ttft_col] <= slo_ttft, get[tpot_col] <= slo_tpot
    return {**b.meta, **{c: get[c] for c in COLUMNS[2:-1]}, "requests": int(get["requests"]),
            "slo_ttft_s": slo_ttft, "slo_tpot_ms": slo_tpot, "ttft_checked": ttft_col, "tpot_checked": tpot_col,
            "ttft_met": ttft_met, "tpot_met": tpot_met, "slo_met": bool(ttft_met and tpot_met),
            "prefill_utilization": get["prefill_utilization"], "decode_wait_mean_s": get["decode_wait_mean_s"],
            **{k: get[k] for k in ("ttft_attainment", "tpot_attainment", "slo_attainment")}}
