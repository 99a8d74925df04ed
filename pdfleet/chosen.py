"""The shared last stage of every solver: the TTFT and TPOT a chosen plan reaches, and its counts.

Solvers return choices only (a (prefill, decode) pair per quarter x workload); this stage recomputes the
chosen candidates' capacities in full ([Q, W] instead of [W, C]) and predicts:
- TTFT: overhead + KV transfer of the pair + the M/M/1 sojourn statistic at the per-instance arrival
  rate (perf/queueing.py; the paper's eq. 13 read the other way);
- TPOT: at the mean decode batch B = r TPOT(B) (Little's law) at the per-instance token rate r.
Predictions are at the workload's demand (without planning.headroom, which only sizes the plan).
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from pdfleet import evaluate as E
from pdfleet.perf import decode, live_decode, queueing


class Latency(NamedTuple):
    """Arrays [Q, W] over the padded solver rows."""

    predicted_ttft_s: jax.Array
    predicted_tpot_ms: jax.Array
    decode_batch: jax.Array  # mean operating batch per decode instance
    decode_batch_max: jax.Array  # B*
    decode_table: jax.Array
    prefill_extrapolated: jax.Array


@partial(jax.jit, static_argnames=("queues", "live"))
def predict(workloads, profiles, pre_profile, pre_instances, dec_profile, dec_instances, transfer_s,
            queues: tuple = (queueing.MM1,), live: bool = False) -> Latency:
    """workloads/profiles: arrays.Problem fields (rows [W]); the rest [Q, W] (-1 profile = none). queues:
    the queue models some row uses, live: whether some row uses the live-batch decode model (static: the
    other models are not computed)."""
    w, p = workloads, profiles
    demand = w.demand_rps
    cpre = E.evaluate_chosen(w, p, pre_profile)
    cdec = E.evaluate_chosen(w, p, dec_profile)
    ttft = w.overhead_s[None] + transfer_s + prefill_sojourn_s(w, cpre.prefill_mu, demand, pre_instances, queues)

    table = cdec.decode_table
    prof = jnp.maximum(dec_profile, 0)
    tb, tt = p.decode_batch[prof, table], p.decode_tpot[prof, table]  # [Q, W, K]
    rate = demand * w.output_tokens[None] / jnp.maximum(dec_instances, 1.0)
    op, tpot = decode_operating_point(w.tpot_quantile[None], rate, tb, tt, cdec.decode_batch_limit, live)
    has_pre, has_dec = pre_profile >= 0, dec_profile >= 0
    return Latency(
        predicted_ttft_s=jnp.where(has_pre, ttft, jnp.nan),
        predicted_tpot_ms=jnp.where(has_dec, tpot, jnp.nan),
        decode_batch=jnp.where(has_dec, op, jnp.nan),
        decode_batch_max=jnp.where(has_dec, cdec.decode_bstar, jnp.nan),
        decode_table=jnp.where(has_dec, table, -1),
        prefill_extrapolated=has_pre & cpre.prefill_extrapolated,
    )


def prefill_sojourn_s(w, mu, demand, instances, queues=(queueing.MM1,)):
    """Prefill queue + compute statistic [s] at the workload's demand over `instances` instances under
    its queue model: M/M/1 or M/G/1 per instance (demand split evenly), or one M/M/c pool. `queues`
    (static) lists the models in use; the others are not computed."""
    n = jnp.maximum(instances, 1.0)
    per_instance = demand / n
    q, scv, model = w.ttft_quantile[None], w.input_scv[None], w.queue[None]
    out = queueing.mm1_sojourn_s(mu, per_instance, queueing.sojourn_factor(q))
    if queueing.MG1 in queues:
        out = jnp.where(model == queueing.MG1, queueing.mg1_sojourn_s(mu, per_instance, scv, q), out)
    if queueing.MMC in queues:
        out = jnp.where(model == queueing.MMC, queueing.mmc_sojourn_s(mu, demand, n, q), out)
    return out


def decode_operating_point(tpot_quantile, rate, tb, tt, limit, live: bool = True):
    """(mean batch, TPOT [ms]) of a decode instance carrying `rate` output tokens/s: the paper's mean batch
    B = r TPOT(B) and its TPOT (tpot_quantile < 0), or the live-batch model (perf.live_decode) where
    tpot_quantile >= 0 (computed only when `live`)."""
    op = decode.operating_batch(rate, tb, tt, limit)
    table = jnp.where(jnp.isfinite(op), decode.tpot_ms(op, tb, tt), jnp.inf)
    if not live:
        return op, table
    live_op = live_decode.operating_batch(rate, tb, tt, limit)
    live = jnp.where(jnp.isfinite(live_op), live_decode.tpot_stat_ms(jnp.where(jnp.isfinite(live_op), live_op, 0.0),
                                                                      tpot_quantile, tb, tt), jnp.inf)
    use_live = tpot_quantile >= 0
    return jnp.where(use_live, live_op, op), jnp.where(use_live, live, table)


def predict_plan(problem, solver_rows: list[str | None], fleet_problem, plan) -> dict:
    """Predictions for a FleetPlan, as NumPy arrays [Q, W] in fleet.yaml workload order."""
    fp, o = fleet_problem, fleet_problem.options
    names = fp.workloads
    where = {n: i for i, n in enumerate(solver_rows) if n is not None}
    r = np.array([where[n] for n in names])
    q, wpad = problem.workloads.demand_rps.shape
    c, d = plan.pair_c, plan.pair_d
    served = c >= 0
    cc, dd = np.maximum(c, 0), np.maximum(d, 0)
    qi = np.arange(q)[:, None]
    wi = np.arange(len(names))[None, :]
    fields = {
        "pre_profile": np.where(served, o.pre_profile[wi, cc], -1),
        "dec_profile": np.where(served, o.dec_profile[wi, dd], -1),
        "pre_instances": np.where(served, o.pre_n[qi, wi, cc, dd], 0.0),
        "dec_instances": np.where(served, o.dec_n[qi, wi, dd], 0.0),
        "transfer_s": np.where(served, o.transfer_s[wi, cc, dd], 0.0),
    }
    padded = {}
    for key, value in fields.items():
        full = np.full((q, wpad), -1 if key.endswith("profile") else 0.0, value.dtype)
        full[:, r] = value
        padded[key] = full
    dtype = problem.workloads.input_tokens.dtype
    w = problem.workloads
    queues = tuple(sorted({int(x) for x in np.unique(np.asarray(w.queue))}))
    lat = predict(w, problem.profiles, padded["pre_profile"], padded["pre_instances"].astype(dtype),
                  padded["dec_profile"], padded["dec_instances"].astype(dtype), padded["transfer_s"].astype(dtype),
                  queues=queues, live=bool((np.asarray(w.tpot_quantile) >= 0).any()))
    out = {k: np.asarray(v)[:, r] for k, v in lat._asdict().items()}
    out.update(fields)
    out["pre_rate"] = np.where(served, o.pre_rate[wi, cc, dd], np.nan)
    out["dec_rate"] = np.where(served, o.dec_rate[wi, dd], np.nan)
    out["pre_frac"], out["dec_frac"] = fractional_counts(fp, served, out["pre_rate"], out["dec_rate"],
                                                         out["pre_instances"])
    return out


def fractional_counts(fp, served, pre_rate, dec_rate, pre_whole):
    """[Q, W] fractional prefill and decode instances of the chosen pairs (the paper's eqs. 5-6 before
    rounding: planned demand / capacity per instance, sizing.fractional_instances); a pooled M/M/c prefill
    reports its whole count (it is not a rounded ratio). NaN where a row is not served."""
    from pdfleet.perf import sizing

    demand = fp.demand_rps
    pre = np.asarray(sizing.fractional_instances(demand, pre_rate))
    pinned = fp.options.pinned_prefill_need  # a pinned pool reports what its pair needs, not what is deployed
    pre = np.where(fp.options.pooled[None, :], np.where(np.isnan(pinned), pre_whole, pinned), pre)
    dec = np.asarray(sizing.fractional_instances(demand, dec_rate))
    return np.where(served, pre, np.nan), np.where(served, dec, np.nan)
