"""Exact dominance pruning of a fleet problem's candidates before any search.

A plan's objective depends on a row's pair only through (a) the GPUs it uses per (sku, quarter) cell,
(b) the instances a switch charges (switch_usd x the new candidate's instances), and (c) whether it is
feasible. So a prefill candidate c is never needed when another prefill candidate c' of the SAME sku,
for every quarter q and every decode candidate d where (c, d) is feasible, is feasible with
    GPUs(c', d) <= GPUs(c, d)  and  instances(c', d) <= instances(c, d)
(instances only matter when switches cost: switch_usd > 0 and more than one quarter). Likewise a decode
candidate d is dominated by d' of the same sku when dec GPUs and instances are no larger in every quarter
and, for every prefill c, the pair (c, d') is feasible wherever (c, d) is, with no more prefill instances
(the KV transfer makes the prefill count depend on the pair).

Proof that pruning keeps the optimum: take an optimal plan and replace every dominated c by a kept
dominator c* (following dominators ends at a kept one: the order below is acyclic), then every dominated
d by a kept d*. Each row's usage per cell does not grow (same sku, fewer GPUs), so the plan's covering
procurement still exists and costs no more (procure.cover is monotone in usage: a smaller requirement
enlarges its feasible set); a switch happens between two quarters only if it happened before (a column
map cannot make equal columns differ) and charges no more instances; the unserved rows are unchanged.
Equal candidates dominate each other: the lower column is kept, so exactly one of them stays.
Tested against milp on the unpruned problem and against brute force (tests/test_fleet_prune.py).

Pruned candidates are masked (their pairs' counts set to inf), not removed: shapes and column indices
stay those of the problem, so every plan of the pruned problem is a plan of the original one.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from pdfleet.search.problem import FleetProblem

CHUNK = 4096  # workloads per compiled call (bounds the [W, C, C, C] comparison in memory)


def _no_worse(a, b, axes):
    """all over axes of (a <= b where b is finite): a candidate is no worse wherever the other is feasible."""
    return jnp.all((a <= b) | ~jnp.isfinite(b), axis=axes)


def _dominated(le, valid):
    """[W, C] True where a column is dominated: some other valid column k has le[w, k, c] and either
    is strictly better (not le[w, c, k]) or ties with a lower index."""
    n = le.shape[-1]
    lower = jnp.arange(n)[:, None] < jnp.arange(n)[None, :]  # [k, c]: k < c
    other = ~jnp.eye(n, dtype=bool)
    beats = le & (~jnp.swapaxes(le, 1, 2) | lower[None]) & other[None]
    beats &= valid[:, :, None] & valid[:, None, :]
    return jnp.any(beats, axis=1) & valid


@partial(jax.jit, static_argnames="count_instances")
def _dominated_columns(pre_n, dec_n, pre_gpi, dec_gpi, pre_sku, dec_sku, pre_ok, dec_ok, count_instances: bool):
    """([W, Cp], [W, Cd]) dominated prefill / decode columns (module docstring). pre_n [Q, W, Cp, Cd],
    dec_n [Q, W, Cd] with inf where infeasible."""
    pre_g = pre_n * pre_gpi[None, :, :, None]  # inf stays inf (gpi > 0 on valid columns)
    dec_g = dec_n * dec_gpi[None]
    # prefill: le[w, k, c] = column k no worse than c over every (q, d)
    le_p = _no_worse(pre_g[:, :, :, None, :], pre_g[:, :, None, :, :], (0, 4))
    if count_instances:
        le_p &= _no_worse(pre_n[:, :, :, None, :], pre_n[:, :, None, :, :], (0, 4))
    le_p &= pre_sku[:, :, None] == pre_sku[:, None, :]
    # decode: own GPUs and instances, and the prefill side of every pair
    le_d = _no_worse(dec_g[:, :, :, None], dec_g[:, :, None, :], 0)
    if count_instances:
        le_d &= _no_worse(dec_n[:, :, :, None], dec_n[:, :, None, :], 0)
    pre_t = jnp.swapaxes(pre_n, 2, 3)  # [Q, W, Cd, Cp]
    le_d &= _no_worse(pre_t[:, :, :, None, :], pre_t[:, :, None, :, :], (0, 4))
    le_d &= dec_sku[:, :, None] == dec_sku[:, None, :]
    return _dominated(le_p, pre_ok), _dominated(le_d, dec_ok)


def dominated(problem: FleetProblem) -> tuple[np.ndarray, np.ndarray]:
    """([W, Cp], [W, Cd]) bool: the candidates dominance pruning removes (module docstring)."""
    o, econ = problem.options, problem.economics
    q, w, cp, cd = o.pre_n.shape
    count = bool(econ.switch_usd > 0 and q > 1)
    pre_ok = (o.pre_profile >= 0) & np.isfinite(o.pre_n).any(axis=(0, 3))
    dec_ok = (o.dec_profile >= 0) & np.isfinite(o.dec_n).any(axis=0)
    pre_out, dec_out = np.zeros((w, cp), bool), np.zeros((w, cd), bool)
    width = min(CHUNK, w) if w else 0
    for lo in range(0, w, CHUNK):
        hi = min(lo + CHUNK, w)
        pad = width - (hi - lo)

        def part(a, axis, value):
            a = np.asarray(a)[(slice(None),) * axis + (slice(lo, hi),)]
            widths = [(0, 0)] * a.ndim
            widths[axis] = (0, pad)
            return np.pad(a, widths, constant_values=value) if pad else a

        p, d = _dominated_columns(part(o.pre_n, 1, np.inf), part(o.dec_n, 1, np.inf), part(o.pre_gpi, 0, 0.0),
                                  part(o.dec_gpi, 0, 0.0), part(o.pre_sku, 0, 0), part(o.dec_sku, 0, 0),
                                  part(pre_ok, 0, False), part(dec_ok, 0, False), count_instances=count)
        pre_out[lo:hi] = np.asarray(p)[: hi - lo]
        dec_out[lo:hi] = np.asarray(d)[: hi - lo]
    return pre_out, dec_out


def prune(problem: FleetProblem) -> FleetProblem:
    """The problem with every dominated candidate's pairs made infeasible (counts inf); same optimum. Its
    counts are float32 where that is exact (paths.counts32: whole numbers), so the search's own copy of
    the largest array takes half the memory of the original (1 GB instead of 2 at 1,000,000 rows)."""
    from pdfleet.search.paths import counts32

    pre_dom, dec_dom = dominated(problem)
    o = problem.options
    pre_n = np.where(pre_dom[None, :, :, None] | dec_dom[None, :, None, :], np.inf, counts32(o.pre_n))
    dec_n = np.where(dec_dom[None], np.inf, counts32(o.dec_n))
    return problem._replace(options=o._replace(pre_n=pre_n, dec_n=dec_n))
