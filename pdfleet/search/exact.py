"""The per-role argmin kernels: with no coupling limit and no pairing, each (quarter, workload, role) is
its own problem. The fleet search (search/solve.py) builds on the same capacities; this separable form
remains the fastest path for the kernel benchmark (scripts/bench_kernels.py) and its NumPy reference test.

For every row pick the feasible candidate of least cost = instances x price per instance-hour, as one
vectorized argmin over the candidate axis; ties go to the smaller fractional cost, then the earlier
profile in fleet.yaml (deterministic). Then predict the TTFT and TPOT the chosen allocation reaches.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from pdfleet import chosen
from pdfleet import evaluate as E
from pdfleet.perf import sizing


class RoleChoice(NamedTuple):
    """Arrays [Q, W] for one role."""

    candidate: jax.Array  # int: column in the candidate table (-1 when none is feasible)
    profile: jax.Array  # int: profile index (-1 when none)
    fractional: jax.Array
    instances: jax.Array
    cost_per_hour: jax.Array
    capacity_rps: jax.Array
    capacity_tokens_per_s: jax.Array
    reason: jax.Array  # int, E.OK when a candidate was chosen


class Solution(NamedTuple):
    prefill: RoleChoice
    decode: RoleChoice
    predicted_ttft_s: jax.Array  # [Q, W]
    predicted_tpot_ms: jax.Array  # [Q, W]
    decode_batch: jax.Array  # [Q, W] mean operating batch per decode instance
    decode_batch_max: jax.Array  # [Q, W] B*
    decode_table: jax.Array  # [Q, W]
    prefill_extrapolated: jax.Array  # [Q, W]
    demand_rps: jax.Array  # [Q, W]
    pd_ratio: jax.Array  # [Q, W] fractional prefill / decode instances (eq. 7); NaN unless both are served


def choose(demand, capacity, reason, price, valid, nearest: bool) -> RoleChoice:
    """Cheapest feasible candidate per (quarter, workload). demand [Q, W] in capacity's unit, rest [W, C]."""
    feasible = valid & (reason == E.OK)
    frac = sizing.fractional_instances(demand[:, :, None], capacity[None])  # [Q, W, C]
    cost = jnp.where(feasible[None], sizing.round_instances(frac, nearest) * price[None], jnp.inf)
    best = jnp.min(cost, axis=-1, keepdims=True)
    tie_cost = jnp.where(cost == best, frac * price[None], jnp.inf)
    pick = first_argmin(tie_cost)  # least fractional cost among equal costs, then first index
    any_ok = jnp.isfinite(best[..., 0])
    cap = _take_wc(capacity, pick)
    chosen_frac = sizing.fractional_instances(demand, cap)
    whole = sizing.round_instances(chosen_frac, nearest)
    none = jnp.where(any_ok, 1.0, 0.0)
    return RoleChoice(
        candidate=jnp.where(any_ok, pick, -1),
        profile=jnp.zeros_like(pick),  # filled by the caller, which knows the candidate table
        fractional=jnp.where(any_ok, chosen_frac, jnp.nan),
        instances=whole * none,
        cost_per_hour=jnp.where(any_ok, whole * _take_wc(price, pick), 0.0),
        capacity_rps=cap * none,
        capacity_tokens_per_s=jnp.zeros_like(cap),
        reason=jnp.where(any_ok, E.OK, jnp.broadcast_to(failure_reason(reason, valid)[None], pick.shape)),
    )


def failure_reason(reason, valid):
    """Why no candidate serves a role, per workload [W]: the first failure among the candidates that
    measure the role (TTFT, then TPOT, then KV memory); NO_PROFILE when none measures it, and
    NO_FINITE_COST when some candidate is feasible yet every cost overflowed."""
    measured = valid & (reason != E.NO_PROFILE)
    first = jnp.min(jnp.where(measured, reason, E.NO_FINITE_COST), axis=-1)
    first = jnp.where(first == E.OK, E.NO_FINITE_COST, first)
    return jnp.where(jnp.any(measured, axis=-1), first, E.NO_PROFILE)


def first_argmin(x, axis: int = -1):
    """Index of the first minimum along `axis`, as two plain min-reductions (they vectorize on CPU,
    where jnp.argmin's paired value/index reduction runs as a scalar loop)."""
    low = jnp.min(x, axis=axis, keepdims=True)
    shape = [1] * x.ndim
    shape[axis] = x.shape[axis]
    iota = jnp.arange(x.shape[axis], dtype=jnp.int32).reshape(shape)
    return jnp.min(jnp.where(x == low, iota, x.shape[axis]), axis=axis)


def _take_wc(a, pick):
    """a [W, C, ...] at pick [Q, W] -> [Q, W, ...]."""
    w = jnp.arange(a.shape[0])[None, :]
    return a[w, jnp.maximum(pick, 0)]


_capacity = jax.jit(E.evaluate_for_choice)
_choose = jax.jit(choose, static_argnames="nearest")


def solve(problem, nearest: bool = False) -> Solution:
    """Exact plan of a padded problem (arrays.Problem): capacities, the choice per role, predictions.

    Four compiled stages called in turn rather than one module: XLA (CPU) compiles the whole pipeline
    into one module about 2x slower than the stages apart (scripts/bench_kernels.py), since it fuses
    producers into every consumer and recomputes them. Each stage is pure, compiled once per shape.
    """
    w = problem.workloads
    cap = _capacity(w, problem.profiles, problem.block_candidates)  # [W, C]
    candidates, valid, price = _row_candidates(problem)
    pre = _choose(w.demand_rps, cap.prefill_rps, cap.prefill_reason, price, valid, nearest=nearest)
    dec = _choose(w.demand_rps, _per_request(cap.decode_tps, w.output_tokens), cap.decode_reason, price, valid,
                  nearest=nearest)
    return _predict(problem, candidates, pre, dec)


@jax.jit
def _row_candidates(problem):
    """Per workload row: candidate profile indices, validity and price per instance-hour, [W, C]."""
    rows_per_block = problem.workloads.input_tokens.shape[0] // problem.block_candidates.shape[0]
    candidates = jnp.repeat(problem.block_candidates, rows_per_block, axis=0)
    valid = jnp.repeat(problem.block_valid, rows_per_block, axis=0)
    return candidates, valid, problem.profiles.price_per_hour[candidates]


@jax.jit
def _per_request(tokens_per_s, output_tokens):
    """Decode capacity in requests/s: output tokens/s over output tokens per request."""
    return tokens_per_s / output_tokens[:, None]


@jax.jit
def _predict(problem, candidates, pre: RoleChoice, dec: RoleChoice) -> Solution:
    """Fill in token capacities and profiles, then predict TTFT and TPOT of the chosen allocation
    (the chosen candidates' capacities are recomputed here in full, [Q, W] instead of [W, C])."""
    w, p = problem.workloads, problem.profiles
    demand = w.demand_rps  # [Q, W]
    pre = pre._replace(capacity_tokens_per_s=pre.capacity_rps * w.input_tokens[None])
    dec = dec._replace(capacity_tokens_per_s=dec.capacity_rps * w.output_tokens[None])
    pre = pre._replace(profile=jnp.where(pre.candidate >= 0, _take_wc(candidates, pre.candidate), -1))
    dec = dec._replace(profile=jnp.where(dec.candidate >= 0, _take_wc(candidates, dec.candidate), -1))

    lat = chosen.predict(w, p, pre.profile, pre.instances, dec.profile, dec.instances, jnp.zeros_like(demand))
    chosen_pre, chosen_dec = pre.reason == E.OK, dec.reason == E.OK
    return Solution(
        prefill=pre,
        decode=dec,
        predicted_ttft_s=jnp.where(chosen_pre, lat.predicted_ttft_s, jnp.nan),
        predicted_tpot_ms=jnp.where(chosen_dec, lat.predicted_tpot_ms, jnp.nan),
        decode_batch=jnp.where(chosen_dec, lat.decode_batch, jnp.nan),
        decode_batch_max=jnp.where(chosen_dec, lat.decode_batch_max, jnp.nan),
        decode_table=jnp.where(chosen_dec, lat.decode_table, -1),
        prefill_extrapolated=chosen_pre & lat.prefill_extrapolated,
        demand_rps=demand,
        pd_ratio=sizing.pd_ratio(pre.fractional, dec.fractional),
    )


def _slice_rows(problem, rows_lo: int, rows_hi: int):
    """The sub-problem of workload rows [rows_lo, rows_hi), which must start and end on block edges."""
    b = problem.block_size
    w = problem.workloads
    ws = w._replace(**{k: (v[:, rows_lo:rows_hi] if k == "demand_rps" else v[rows_lo:rows_hi])
                       for k, v in w._asdict().items()})
    return problem._replace(workloads=ws, block_candidates=problem.block_candidates[rows_lo // b: rows_hi // b],
                            block_valid=problem.block_valid[rows_lo // b: rows_hi // b])


def solve_chunked(problem, nearest: bool = False, chunk: int = 4096, progress=None) -> Solution:
    """solve() over `chunk` workload rows at a time (one compiled shape), so big fleets fit in memory.

    The row count must be a multiple of chunk or at most chunk (arrays.build pads so), and chunk a
    multiple of the block size. progress(done, total) is called after each chunk.
    """
    n = problem.workloads.input_tokens.shape[0]
    if n <= chunk:
        sol = solve(problem, nearest=nearest)
        if progress:
            progress(n, n)
        return sol
    parts = []
    for lo in range(0, n, chunk):
        parts.append(jax.device_get(solve(_slice_rows(problem, lo, lo + chunk), nearest=nearest)))
        if progress:
            progress(min(lo + chunk, n), n)
    return jax.tree_util.tree_map(lambda *xs: jnp.concatenate(xs, axis=1), *parts)
