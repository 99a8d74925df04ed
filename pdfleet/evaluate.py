"""Capacity of every candidate: the one-candidate kernel, vmapped over workloads x candidates here.

A candidate is (workload, profile); the profile fixes model, sku and gpus_per_instance, and serves as
a prefill candidate, a decode candidate, or both. The capacity kernels are vmapped here and nowhere else.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp

from pdfleet.perf import decode, prefill, queueing

# Candidate-level reasons a role is infeasible (0 = feasible); plan.py turns them into words.
OK, NO_PROFILE, TTFT_UNREACHABLE, TPOT_UNREACHABLE, KV_MEMORY, NO_FINITE_COST = 0, 2, 3, 4, 5, 6


class WorkloadRow(NamedTuple):
    input_tokens: jax.Array  # []
    output_tokens: jax.Array
    budget_s: jax.Array
    ttft_quantile: jax.Array
    tpot_slo_ms: jax.Array
    input_scv: jax.Array
    queue: jax.Array


class Capacity(NamedTuple):
    prefill_rps: jax.Array  # [] max request rate under the TTFT SLO (0 if infeasible)
    prefill_mu: jax.Array  # [] service rate 1 / E[S]
    prefill_extrapolated: jax.Array  # [] bool: input length outside the measured table
    prefill_reason: jax.Array  # [] int
    decode_tps: jax.Array  # [] output tokens/s at B* (0 if infeasible)
    decode_bstar: jax.Array  # [] B*
    decode_batch_limit: jax.Array  # [] min(largest measured batch, KV-memory batch)
    decode_table: jax.Array  # [] int index of the table used
    decode_reason: jax.Array  # [] int


def covering_table(context, table_ctx, table_valid):
    """Decode table used for a workload: the one measured at the smallest mean context (input +
    output/2) that is at least the workload's; if none reaches it, the longest. A table measured at a
    longer context is slower (more KV to read), so this rule never understates TPOT; the plan names
    the table (decode_table). Unrolled over the (small, static) table axis so it fuses under vmap.
    """
    covers = table_valid & (table_ctx >= context * (1.0 - 1e-6))
    best, best_ctx = jnp.int32(-1), jnp.inf
    longest, longest_ctx = jnp.int32(0), -jnp.inf
    for i in range(table_ctx.shape[0]):
        tighter = covers[i] & (table_ctx[i] < best_ctx)
        best, best_ctx = jnp.where(tighter, i, best), jnp.where(tighter, table_ctx[i], best_ctx)
        longer = table_valid[i] & (table_ctx[i] > longest_ctx)
        longest, longest_ctx = jnp.where(longer, i, longest), jnp.where(longer, table_ctx[i], longest_ctx)
    return jnp.where(best >= 0, best, longest)


def _pick(values, t):
    """values[t] for a short [T] vector, as a masked sum (fuses under vmap, unlike a gather)."""
    return jnp.sum(jnp.where(jnp.arange(values.shape[0]) == t, values, 0.0))


def _decode_on_table(slo_ms, table_batch, table_tpot, batch_hi, b_mem):
    """(B*, capacity tokens/s, largest measured batch) of one decode table."""
    bstar = decode.best_batch(slo_ms, table_batch, table_tpot, batch_hi, b_mem)
    return bstar, decode.capacity_tokens_per_s(bstar, table_batch, table_tpot), batch_hi


def candidate(w: WorkloadRow, p, mg1: bool = False) -> Capacity:
    """Prefill and decode capacity of one workload on one profile (p: one row of arrays.Profiles). mg1
    (static): some workload uses the M/G/1 queue model."""
    mu = prefill.service_rate_rps(w.input_tokens, p.prefill_len, p.prefill_tps)
    rate = queueing.max_rate(w.queue, mu, w.budget_s, w.ttft_quantile, w.input_scv, mg1)
    # The prompt's KV cache must fit beside the weights while it is prefilled.
    prompt_fits = decode.max_batch_memory(p.memory_bytes, p.weight_bytes, p.kv_bytes_per_token, w.input_tokens) >= 1
    pre_ok = p.has_prefill & (rate > 0) & prompt_fits
    pre_reason = jnp.where(~p.has_prefill, NO_PROFILE,
                           jnp.where(~prompt_fits, KV_MEMORY, jnp.where(rate > 0, OK, TTFT_UNREACHABLE)))

    context = decode.mean_context(w.input_tokens, w.output_tokens)
    t = covering_table(context, p.decode_ctx, p.decode_valid)
    b_mem = decode.max_batch_memory(p.memory_bytes, p.weight_bytes, p.kv_bytes_per_token,
                                    w.input_tokens + w.output_tokens)
    # B* and capacity on every table, then keep the chosen table's scalars (selecting whole tables per
    # candidate would materialize them). Up to 2 tables the loop is unrolled (fastest); beyond, a
    # lax.map keeps compile time flat in T.
    tables = (p.decode_batch, p.decode_tpot, p.decode_hi)
    if p.decode_hi.shape[0] <= 2:
        per_table = [_decode_on_table(w.tpot_slo_ms, *(a[i] for a in tables), b_mem)
                     for i in range(p.decode_hi.shape[0])]
        bstar, tps, hi = (jax.lax.select_n(t, *values) for values in zip(*per_table))
    else:
        per_table = jax.lax.map(lambda table: _decode_on_table(w.tpot_slo_ms, *table, b_mem), tables)
        bstar, tps, hi = (_pick(values, t) for values in per_table)
    dec_reason = jnp.where(
        ~p.has_decode, NO_PROFILE,
        jnp.where(bstar >= 1, OK, jnp.where(b_mem < 1, KV_MEMORY, TPOT_UNREACHABLE)),
    )
    return Capacity(
        prefill_rps=jnp.where(pre_ok, rate, 0.0),
        prefill_mu=mu,
        prefill_extrapolated=prefill.outside_range(w.input_tokens, p.prefill_lo, p.prefill_hi),
        prefill_reason=pre_reason,
        decode_tps=jnp.where(dec_reason == OK, tps, 0.0),
        decode_bstar=bstar,
        decode_batch_limit=jnp.minimum(hi, b_mem),
        decode_table=t,
        decode_reason=dec_reason,
    )


def workload_rows(workloads) -> WorkloadRow:
    return WorkloadRow(workloads.input_tokens, workloads.output_tokens, workloads.budget_s,
                       workloads.ttft_quantile, workloads.tpot_slo_ms, workloads.input_scv, workloads.queue)


def profile_rows(profiles, index):
    """Profile fields at an index array: leaves [P, ...] -> [*index.shape, ...]."""
    return jax.tree_util.tree_map(lambda a: jnp.asarray(a)[index], profiles)


def evaluate(workloads, profiles, block_candidates, mg1: bool = False) -> Capacity:
    """Capacity of all candidates: fields [W, C].

    workloads: arrays.Workloads with W = NB x B rows; block_candidates [NB, C]. Profile rows are gathered
    once per block and broadcast over the block's B workloads (vmap with in_axes None).
    """
    nb = block_candidates.shape[0]
    rows = jax.tree_util.tree_map(lambda a: a.reshape(nb, -1), workload_rows(workloads))
    over_candidates = jax.vmap(partial(candidate, mg1=mg1), in_axes=(None, 0))
    over_block = jax.vmap(over_candidates, in_axes=(0, None))
    over_blocks = jax.vmap(over_block, in_axes=(0, 0))
    cap = over_blocks(rows, profile_rows(profiles, block_candidates))  # leaves [NB, B, C]
    return jax.tree_util.tree_map(lambda a: a.reshape((-1,) + a.shape[2:]), cap)


class Choice(NamedTuple):
    """What the search needs of every candidate ([W, C] each); the rest is recomputed for the chosen."""

    prefill_rps: jax.Array
    prefill_reason: jax.Array
    decode_tps: jax.Array
    decode_reason: jax.Array


def evaluate_for_choice(workloads, profiles, block_candidates) -> Choice:
    """evaluate() reduced to the fields the argmin reads, so XLA computes and writes nothing else."""
    cap = evaluate(workloads, profiles, block_candidates)
    return Choice(cap.prefill_rps, cap.prefill_reason, cap.decode_tps, cap.decode_reason)


def evaluate_chosen(workloads, profiles, profile_index) -> Capacity:
    """Capacity of one profile per (quarter, workload): profile_index [Q, W] -> fields [Q, W]."""
    per_workload = jax.vmap(candidate, in_axes=(0, 0))
    per_quarter = jax.vmap(per_workload, in_axes=(None, 0))
    return per_quarter(workload_rows(workloads), profile_rows(profiles, jnp.maximum(profile_index, 0)))
