"""The fleet problem: for every workload, its (prefill, decode) pair options with instance counts per
quarter, and for every sku the economics that couple workloads (owned, inventory, buy, rent, budget).

Host-side assembly (NumPy) around two jitted kernels (`_pair_rates`, `_counts`). Shapes: W workloads (real, in
fleet.yaml order), Q quarters, S skus, Cp / Cd usable prefill / decode candidates per workload (padded,
bucketed), so a pair option is (c, d) with c < Cp, d < Cd. A pair is infeasible (count inf) when either
side is padding, the pairing rule forbids it, or the KV transfer leaves no TTFT budget.

KV transfer (DESIGN.md, Fleet optimization): every prompt's KV cache crosses from the prefill instance to
the decode instance: transfer_s = input_tokens x KV bytes per token / min(bandwidth of the two instances),
an instance's bandwidth being network_gbps x gpus_per_instance / 8 bytes/s (x 1e9). It is spent inside
the TTFT budget, so the pair's prefill capacity is the M/M/1 rate at budget (SLO - overhead - transfer).
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from pdfleet import evaluate as E
from pdfleet import spec as S
from pdfleet.perf import queueing, sizing
from pdfleet.perf.memory import kv_bytes_per_token

INF = np.inf
UNSERVED_FACTOR = 10.0  # an unserved row costs this many times its dearest feasible pair (see unserved_usd)


class Options(NamedTuple):
    """Per workload, its usable candidates by role; counts per quarter. Host NumPy arrays."""

    pre_profile: np.ndarray  # [W, Cp] int profile index (-1 = padding)
    pre_sku: np.ndarray  # [W, Cp] int sku index
    pre_gpi: np.ndarray  # [W, Cp] GPUs per instance (0 = padding)
    dec_profile: np.ndarray  # [W, Cd]
    dec_sku: np.ndarray  # [W, Cd]
    dec_gpi: np.ndarray  # [W, Cd]
    pre_n: np.ndarray  # [Q, W, Cp, Cd] whole prefill instances of the pair (inf = infeasible)
    dec_n: np.ndarray  # [Q, W, Cd] whole decode instances (inf = infeasible)
    pooled: np.ndarray  # [W] bool: prefill planned as one M/M/c pool (queue mmc; its counts are whole already)
    pinned_prefill_need: np.ndarray  # [Q, W] prefill instances the pinned (deploy:) pair needs; NaN: none pinned
    pre_rate: np.ndarray  # [W, Cp, Cd] prefill capacity per instance of the pair [req/s]
    dec_rate: np.ndarray  # [W, Cd] decode capacity per instance [req/s]
    transfer_s: np.ndarray  # [W, Cp, Cd] KV transfer time of the pair


class Economics(NamedTuple):
    """Per sku and quarter: what can be used and at which price. Host NumPy arrays, float64."""

    owned: np.ndarray  # [S, Q] GPUs owned before any purchase
    inventory: np.ndarray  # [S, Q] cap on owned + bought + rented (inf = none)
    rent_price: np.ndarray  # [S] USD per GPU-hour rented
    own_price: np.ndarray  # [S] USD per GPU-hour of an owned GPU in use
    purchase: np.ndarray  # [S] USD per GPU bought (inf = cannot buy)
    amortization: np.ndarray  # [S] quarters
    lead: np.ndarray  # [S] quarters from order to use
    buy_max: np.ndarray  # [S, Q] per ordering quarter (inf = unlimited)
    rent_max: np.ndarray  # [S, Q] (inf = unlimited)
    budget: np.ndarray  # [Q] USD per hour (inf = none)
    hours: float  # hours per quarter
    switch_usd: float  # one-time USD per instance that changes sku or TP between quarters


class FleetProblem(NamedTuple):
    workloads: list[str]  # [W] names in fleet.yaml order
    skus: list[str]  # [S]
    quarters: list[str]  # [Q]
    demand_rps: np.ndarray  # [Q, W] demand as planned (x (1 + headroom))
    options: Options
    economics: Economics
    row_reason: np.ndarray  # [Q, W, 2] evaluate reason per role when no pair is feasible (OK otherwise)
    unserved_usd: np.ndarray  # [Q, W] penalty of leaving a row unserved (USD over the quarter)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        q, w, cp, cd = self.options.pre_n.shape
        return q, w, cp, cd


def economics(fleet: S.Fleet) -> Economics:
    names = list(fleet.skus)

    def per_sku(field: str, default: float) -> np.ndarray:
        return np.array([S.sku_per_quarter(fleet, n, field, default) for n in names], np.float64)

    skus = [fleet.skus[n] for n in names]
    return Economics(
        owned=per_sku("owned", 0.0),
        inventory=per_sku("inventory", INF),
        rent_price=np.array([s.price_usd_per_gpu_hour for s in skus], np.float64),
        own_price=np.array([s.owned_usd_per_gpu_hour for s in skus], np.float64),
        purchase=np.array([s.purchase_usd_per_gpu if s.purchase_usd_per_gpu is not None else INF for s in skus]),
        amortization=np.array([s.amortization_quarters for s in skus], np.float64),
        lead=np.array([s.lead_time_quarters for s in skus], np.float64),
        buy_max=per_sku("buy_max", INF),
        rent_max=per_sku("rent_max", INF),
        budget=np.array(S.budget_per_quarter(fleet), np.float64),
        hours=float(fleet.planning.hours_per_quarter),
        switch_usd=float(fleet.planning.switch_cost_usd),
    )


def buy_prices(econ: Economics) -> np.ndarray:
    """[S, Q] USD per GPU-hour of a GPU bought to arrive in quarter q and used to the end of the horizon:
    purchase x min(A, Q - q) / A spread over its Q - q quarters; inf before the lead time or where the
    sku cannot be bought."""
    q = econ.owned.shape[1]
    left = np.arange(q, 0, -1, dtype=np.float64)[None, :]  # Q - q
    buy = econ.purchase[:, None] * np.minimum(econ.amortization[:, None], left) / econ.amortization[:, None]
    return np.where(np.arange(q)[None, :] >= econ.lead[:, None], buy / (left * econ.hours), INF)


def base_prices(econ: Economics) -> np.ndarray:
    """[S, Q] USD per GPU-hour of the cheapest source of each sku ignoring every limit: an owned GPU
    where some are owned, else renting (where rent_max allows any) or buying (buy_prices)."""
    buy = buy_prices(econ)
    best = np.where(econ.rent_max > 0, np.minimum(econ.rent_price[:, None], buy), buy)
    return np.where(econ.owned > 0, np.minimum(econ.own_price[:, None], best), best)


def _family_index(fleet: S.Fleet, names: list[str]) -> np.ndarray:
    fams: dict[str, int] = {}
    out = []
    for i, n in enumerate(names):
        fam = fleet.skus[n].family or f"\0{n}"  # no family: a family of its own
        out.append(fams.setdefault(fam, len(fams)))
    return np.array(out, np.int32)


def _instance_bandwidth(fleet: S.Fleet, profile_index: np.ndarray) -> np.ndarray:
    """Bytes/s of one instance to other nodes; inf when the sku gives no network_gbps (transfer free)."""
    per_profile = np.array([
        (fleet.skus[p.sku].network_gbps or INF) * 1e9 / 8.0 * p.gpus_per_instance for p in fleet.profiles
    ] + [INF])
    return per_profile[profile_index]


def _compact(usable: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Columns of the usable entries first (stable), cut to the largest count bucketed: (cols, mask)."""
    from pdfleet.arrays import bucket

    n = max(int(usable.sum(axis=1).max(initial=0)), 1)
    width = min(bucket(n), usable.shape[1])
    cols = np.argsort(~usable, axis=1, kind="stable")[:, :width]
    return cols, np.take_along_axis(usable, cols, axis=1)


@partial(jax.jit, static_argnames="mg1")
def _pair_rates(mu, pre_ok, queue, quantile, scv, budget, transfer, pair_ok, mg1: bool):
    """Prefill capacity per instance of each pair at the budget left after the transfer [W,Cp,Cd]: M/M/1 or
    M/G/1 (queueing.max_rate; an mmc row gets the per-instance M/M/1 rate, its split reference)."""
    left = budget[:, None, None] - transfer
    per = lambda a: a[:, None, None]  # noqa: E731
    rate = queueing.max_rate(per(queue), mu[:, :, None], jnp.where(left > 0, left, 1.0), per(quantile), per(scv), mg1)
    return jnp.where(pre_ok[:, :, None] & pair_ok & (left > 0), rate, 0.0)


def _counts(demand, rate, minimum: float, nearest: bool):
    """Whole instances for demand [Q, W, ...] at capacity rate [W, ...] per instance: the paper's eqs. 5-6,
    rounded (sizing.round_instances), at least `minimum` where demand is positive, 0 without demand, inf
    where the capacity is 0 (with or without demand: such a pair is never chosen). The fractional counts are
    not kept ([Q, W, Cp, Cd] is the problem's largest array): chosen.py recomputes them for the chosen pairs."""
    whole = sizing.round_instances(sizing.fractional_instances(demand, rate[None]), nearest)
    whole = jnp.where(demand > 0, jnp.maximum(whole, minimum), 0.0)
    return jnp.where(rate[None] > 0, whole, jnp.inf)


_counts_jit = jax.jit(_counts, static_argnames="nearest")


def _live_decode_tps(problem, cap, r, dcols, dec_profile, dec_tps, tpot_q):
    """Decode capacity [W, Cd] of the workloads whose TPOT SLO holds at the live batch (slo.tpot_quantile):
    perf.live_decode on the candidate's covering table; other rows keep the paper's B* / TPOT(B*)."""
    rows = np.flatnonzero(tpot_q >= 0)
    p = problem.profiles
    prof = np.maximum(dec_profile[rows], 0)
    table = np.take_along_axis(np.asarray(cap.decode_table)[r[rows]], dcols[rows], 1)
    limit = np.take_along_axis(np.asarray(cap.decode_batch_limit)[r[rows]], dcols[rows], 1)
    tb, tt = np.asarray(p.decode_batch)[prof, table], np.asarray(p.decode_tpot)[prof, table]  # [w, Cd, K]
    slo = np.asarray(problem.workloads.tpot_slo_ms)[r[rows]][:, None]
    live = np.asarray(_live_capacity(np.broadcast_to(slo, limit.shape), np.broadcast_to(tpot_q[rows][:, None], limit.shape),
                                     tb, tt, limit))
    out = dec_tps.copy()
    out[rows] = np.where(dec_tps[rows] > 0, live, 0.0)
    return out


@jax.jit
def _live_capacity(slo, quantile, tb, tt, limit):
    from pdfleet.perf import live_decode

    return live_decode.capacity_tokens_per_s(slo, quantile.astype(slo.dtype), tb, tt, limit)


def _pin_deployments(fleet: S.Fleet, names, pre_profile, dec_profile, pre_n, dec_n, demand):
    """Workloads with `deploy:` get exactly their running deployment: the one pair whose profiles match the
    deployed sku and gpus_per_instance, at the deployed instance counts in every quarter with demand, whatever
    the SLO says (the plan then reports its predicted latencies and headroom). A deployment no profile or
    roofline prediction describes is a SpecError; one whose role cannot meet the SLO at any load stays
    unserved with that reason (the candidate is not usable). Also returns [Q, W] what each pinned prefill
    pair needs (its count before pinning; NaN elsewhere): a pooled row reports it as its fractional count."""
    pre_n, dec_n = pre_n.copy(), dec_n.copy()
    need = np.full(demand.shape, np.nan)
    for i, name in enumerate(names):
        deploy = fleet.workloads[name].deploy
        if deploy is None:
            continue
        c = _deployed_column(fleet, name, "prefill", deploy.prefill, pre_profile[i])
        d = _deployed_column(fleet, name, "decode", deploy.decode, dec_profile[i])
        has = demand[:, i] > 0
        keep_pre, keep_dec = np.full(pre_n.shape[2:], np.inf), np.full(dec_n.shape[2:], np.inf)
        if c is not None and d is not None:
            keep_pre[c, d], keep_dec[d] = deploy.prefill.instances, deploy.decode.instances
            need[:, i] = pre_n[:, i, c, d]
        pre_n[:, i] = np.where(has[:, None, None], keep_pre[None], np.where(np.isfinite(keep_pre), 0.0, np.inf))
        dec_n[:, i] = np.where(has[:, None], keep_dec[None], np.where(np.isfinite(keep_dec), 0.0, np.inf))
    return pre_n, dec_n, need


def _deployed_column(fleet: S.Fleet, name: str, role: str, pool, profiles_of_row) -> int | None:
    """Column of the row's usable candidates that is the deployed (sku, gpus_per_instance); None when that
    profile exists but cannot serve the role (e.g. the TTFT SLO is out of reach)."""
    model = fleet.workloads[name].model
    matches = [k for k, p in enumerate(fleet.profiles) if p.model == model and p.sku == pool.sku
               and p.gpus_per_instance == pool.gpus_per_instance and (p.dp, p.ep) == (pool.dp, pool.ep)
               and getattr(p, role) is not None]
    if not matches:
        raise S.SpecError(f"workloads.{name}.deploy.{role}", f"no measured profile or roofline prediction of {model} "
                          f"on {pool.sku} with {pool.gpus_per_instance} GPUs per instance; add a profiles: entry "
                          f"(or the degree to planning.tp_degrees with planning.roofline on)")
    cols = [k for k, p in enumerate(profiles_of_row) if p in matches]
    return cols[0] if cols else None


def _pooled_counts(pre_n, pooled, mu, demand, budget, transfer, quantile, minimum: float):
    """Prefill counts of the workloads planned as one M/M/c pool (queue: mmc): the smallest c whose pooled
    sojourn statistic fits the budget left after the pair's transfer (queueing.mmc_servers), searched up to
    the per-instance M/M/1 count (pooling never needs more), at least `minimum`. Computed under x64 (Erlang
    C's log terms cancel). The count is whole already: rounding does not apply (the plan reports it as the
    fractional count too)."""
    rows = np.flatnonzero(pooled)
    left = budget[rows][:, None, None] - transfer[rows]  # [w, Cp, Cd]
    split = pre_n[:, rows]  # [Q, w, Cp, Cd]
    with jax.enable_x64(True):
        servers = queueing.mmc_servers(
            jnp.asarray(mu[rows][None, :, :, None], jnp.float64), jnp.asarray(demand[:, rows][:, :, None, None]),
            jnp.asarray(np.where(left > 0, left, 1.0)[None]), jnp.asarray(quantile[rows][None, :, None, None]),
            jnp.asarray(np.where(np.isfinite(split), split, 1.0)))
        servers = np.asarray(servers)
    whole = np.where(demand[:, rows][:, :, None, None] > 0, np.maximum(servers, minimum), 0.0)
    whole = np.where(np.isfinite(split) & (left[None] > 0), whole, np.inf)
    pre_n = pre_n.copy()
    pre_n[:, rows] = whole
    return pre_n


def build(fleet: S.Fleet, problem, rows: list[str | None], cap: E.Capacity, nearest: bool) -> FleetProblem:
    """The fleet problem from the padded arrays (arrays.build) and their capacities (evaluate.evaluate,
    fields [Wpad, C]). Only real workloads are kept, in fleet.yaml order."""
    names = list(fleet.workloads)
    where = {n: i for i, n in enumerate(rows) if n is not None}
    r = np.array([where[n] for n in names], np.int64)
    w = problem.workloads
    cand = np.asarray(problem.candidates)[r]
    valid = np.asarray(problem.candidate_valid)[r]
    pre_reason = np.asarray(cap.prefill_reason)[r]
    dec_reason = np.asarray(cap.decode_reason)[r]
    pre_usable = valid & (pre_reason == E.OK)
    dec_usable = valid & (dec_reason == E.OK)
    pcols, pmask = _compact(pre_usable)
    dcols, dmask = _compact(dec_usable)
    npro = len(fleet.profiles)
    pre_profile = np.where(pmask, np.take_along_axis(cand, pcols, 1), -1)
    dec_profile = np.where(dmask, np.take_along_axis(cand, dcols, 1), -1)

    sku_names = list(fleet.skus)
    sku_of = np.array([sku_names.index(p.sku) for p in fleet.profiles] + [0], np.int32)
    gpi_of = np.array([p.gpus_per_instance for p in fleet.profiles] + [0], np.float64)
    fam = _family_index(fleet, sku_names)
    pick = lambda table, idx: table[np.where(idx >= 0, idx, npro)]  # noqa: E731

    # KV bytes per token of each workload's model (un-replicated: what crosses the network).
    kv = np.array([_kv_bytes(fleet.models[fleet.workloads[n].model]) for n in names])
    inp = np.asarray(w.input_tokens, np.float64)[r]
    bw = np.minimum(_instance_bandwidth(fleet, pre_profile)[:, :, None], _instance_bandwidth(fleet, dec_profile)[:, None])
    transfer = np.where(np.isfinite(bw), (inp * kv)[:, None, None] / np.where(np.isfinite(bw), bw, 1.0), 0.0)

    pairing = fleet.planning.pairing
    ps, ds = pick(sku_of, pre_profile), pick(sku_of, dec_profile)
    if pairing == "same_sku":
        pair_ok = ps[:, :, None] == ds[:, None, :]
    elif pairing == "same_family":
        pair_ok = fam[ps][:, :, None] == fam[ds][:, None, :]
    else:
        pair_ok = np.ones(transfer.shape, bool)
    pair_ok &= pmask[:, :, None] & dmask[:, None, :]

    mu = np.take_along_axis(np.asarray(cap.prefill_mu)[r], pcols, 1)
    budget = np.asarray(w.budget_s, np.float64)[r]
    dtype = np.asarray(cap.decode_tps).dtype
    row = lambda a: np.asarray(a)[r].astype(dtype)  # noqa: E731
    pre_rate = np.asarray(_pair_rates(mu.astype(dtype), pmask, row(w.queue), row(w.ttft_quantile), row(w.input_scv),
                                      budget.astype(dtype), transfer.astype(dtype), pair_ok,
                                      mg1=bool((np.asarray(w.queue)[r] == queueing.MG1).any())))
    dec_tps = np.take_along_axis(np.asarray(cap.decode_tps)[r], dcols, 1)
    tpot_q = np.asarray(w.tpot_quantile)[r]
    if (tpot_q >= 0).any():
        dec_tps = _live_decode_tps(problem, cap, r, dcols, dec_profile, dec_tps, tpot_q)
    dec_rate = np.where(dmask, dec_tps / np.asarray(w.output_tokens, np.float64)[r][:, None], 0.0).astype(dtype)

    demand = np.asarray(w.demand_rps, np.float64)[:, r] * (1.0 + fleet.planning.headroom)
    pmin = float(fleet.planning.min_instances_for("prefill"))
    dmin = float(fleet.planning.min_instances_for("decode"))
    pre_n = _counts_jit(demand[:, :, None, None].astype(dtype), pre_rate, pmin, nearest=nearest)
    pooled = np.asarray(w.queue)[r] == queueing.MMC
    if pooled.any():
        pre_n = _pooled_counts(np.asarray(pre_n), pooled, mu, demand, budget, transfer,
                               np.asarray(w.ttft_quantile)[r], pmin)
    dec_n = _counts_jit(demand[:, :, None].astype(dtype), dec_rate, dmin, nearest=nearest)
    pinned_need = np.full(demand.shape, np.nan)
    if any(fleet.workloads[n].deploy for n in names):
        pre_n, dec_n, pinned_need = _pin_deployments(fleet, names, pre_profile, dec_profile, np.asarray(pre_n),
                                                     np.asarray(dec_n), demand)
    options = Options(
        pre_profile=pre_profile.astype(np.int32), pre_sku=ps, pre_gpi=pick(gpi_of, pre_profile),
        dec_profile=dec_profile.astype(np.int32), dec_sku=ds, dec_gpi=pick(gpi_of, dec_profile),
        pre_n=np.asarray(pre_n, np.float64), dec_n=np.asarray(dec_n, np.float64),
        pooled=pooled, pinned_prefill_need=pinned_need,
        pre_rate=pre_rate.astype(np.float64), dec_rate=dec_rate.astype(np.float64), transfer_s=transfer,
    )
    econ = economics(fleet)
    reason = _row_reasons(options, demand, pre_reason, dec_reason, valid)
    return FleetProblem(names, sku_names, list(fleet.planning.quarters), demand, options, econ, reason,
                        np.where(demand > 0, _unserved_usd(options, econ), 0.0))


def _kv_bytes(model: S.Model) -> float:
    return kv_bytes_per_token(model.layers, model.kv_heads or 0, model.head_dim or 0, model.kv_dtype_bytes,
                              model.kv_lora_rank or 0, model.qk_rope_head_dim)


def _row_reasons(options: Options, demand, pre_reason, dec_reason, valid) -> np.ndarray:
    """[Q, W, 2] why a row with demand has no feasible pair (evaluate codes; OK where one exists).

    A role with no usable candidate gets the most specific failure among candidates that measure it
    (as the separable search reports); when both roles have candidates but no pair works (the KV
    transfer eats the TTFT budget, or the pairing rule), prefill is TTFT_UNREACHABLE."""
    from pdfleet.search.exact import failure_reason

    q = demand.shape[0]
    pre_fail = np.asarray(failure_reason(pre_reason, valid))
    dec_fail = np.asarray(failure_reason(dec_reason, valid))
    any_pre = (valid & (pre_reason == E.OK)).any(1)
    any_dec = (valid & (dec_reason == E.OK)).any(1)
    finite = feasible_pairs(options).any(axis=(2, 3))  # [Q, W]
    pre = np.where(any_pre, np.where(any_dec, E.TTFT_UNREACHABLE, E.OK), pre_fail)
    dec = np.where(any_dec, E.OK, dec_fail)
    out = np.stack([np.broadcast_to(pre, (q, pre.shape[0])), np.broadcast_to(dec, (q, dec.shape[0]))], -1)
    return np.where(finite[..., None] | (demand[..., None] <= 0), E.OK, out).astype(np.int32)


def _unserved_usd(options: Options, econ: Economics) -> np.ndarray:
    """[Q, W] penalty for leaving a row with demand unserved (0 without demand): UNSERVED_FACTOR x the dearest feasible pair priced at
    the dearest GPU-hour of any source, over the quarter. Large enough that a plan serving the row
    always wins where one exists; finite so that the dual and the MILP stay bounded."""
    top = max(float(np.max(econ.rent_price)), float(np.max(econ.own_price)),
              float(np.max(np.where(np.isfinite(econ.purchase), econ.purchase / econ.hours, 0.0))), 1.0)
    worst = np.zeros(options.pre_n.shape[:2])
    for sl in _workload_chunks(worst.shape[1]):  # [Q, w, Cp, Cd] float temporaries one chunk at a time
        pre, dec = _finite(options.pre_n[:, sl]), _finite(options.dec_n[:, sl])
        gpus = pre * options.pre_gpi[None, sl, :, None] + (dec * options.dec_gpi[None, sl])[:, :, None, :]
        worst[:, sl] = np.max(gpus, axis=(2, 3))
    return UNSERVED_FACTOR * (worst + 1.0) * top * econ.hours + econ.switch_usd * 4 * (worst + 1.0)


HOST_CHUNK = 8192  # workloads per host temporary of the [Q, W, Cp, Cd] arrays


def _workload_chunks(n: int):
    return (slice(lo, lo + HOST_CHUNK) for lo in range(0, n, HOST_CHUNK))


def feasible_pairs(options: Options) -> np.ndarray:
    """[Q, W, Cp, Cd] bool: both sides of the pair have a finite count (without a float temporary)."""
    return np.isfinite(options.pre_n) & np.isfinite(options.dec_n)[:, :, None, :]


def _finite(a: np.ndarray) -> np.ndarray:
    """Infinite counts (infeasible pairs) as 0, so that they can be multiplied by a padding's 0 GPUs."""
    return np.where(np.isfinite(a), a, 0.0)


_MAX_USAGE: list = []  # [(the problem's pre_n, dec_n, max_usage)] for the last few problems seen


def max_usage(problem: FleetProblem) -> np.ndarray:
    """[S, Q] the most GPUs of each sku any choice could use (bounds the dual's supply). Kept for the
    last few problems seen (by the identity of their count arrays: a solver asks many times)."""
    o = problem.options
    for pre, dec, out in _MAX_USAGE:
        if pre is o.pre_n and dec is o.dec_n:
            return out.copy()
    out = _max_usage(problem)
    _MAX_USAGE.insert(0, (o.pre_n, o.dec_n, out))
    del _MAX_USAGE[3:]
    return out.copy()


def _max_usage(problem: FleetProblem) -> np.ndarray:
    o = problem.options
    s = len(problem.skus)
    # max over decode partners of the finite counts, x GPUs per instance (>= 0, the same for every partner)
    pre_g = np.max(o.pre_n, axis=3, initial=0.0, where=np.isfinite(o.pre_n)) * o.pre_gpi[None]  # [Q,W,Cp]
    dec_g = _finite(o.dec_n) * o.dec_gpi[None]  # [Q,W,Cd]
    out = np.zeros((s, pre_g.shape[0]))
    for role_g, sku in ((pre_g, o.pre_sku), (dec_g, o.dec_sku)):
        per = np.zeros((pre_g.shape[0], role_g.shape[1], s))
        qi = np.arange(role_g.shape[0])[:, None, None]
        wi = np.arange(role_g.shape[1])[None, :, None]
        np.maximum.at(per, (qi, wi, sku[None]), role_g)
        out += per.sum(axis=1).T
    return out
