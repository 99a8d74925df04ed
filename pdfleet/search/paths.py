"""Per workload, the cheapest sequence of (prefill, decode) pairs over the quarters: an exact Viterbi.

State = pair (c, d), plus one 'unserved' state (index Cp, Cd) whose cost is the row's penalty. Moving a
role to another candidate (sku or TP) between consecutive quarters costs switch_usd per instance of the
new candidate. The transition cost from (c, d) to (c', d') is separable,
    s * n_p(c', d') * [c != c'] + s * n_d(d') * [d != d'],
so the minimum over predecessors is the least of four terms, each a plain min over an axis of the
previous values: stay; change decode only (min over d of V(c', d)); change prefill only (min over c
of V(c, d')); change both (min over all). Charging a change where none happened only overestimates,
and every predecessor is also reached by the term that charges it right, so the recursion is exact:
O(Q x Cp x Cd) per workload, vectorized over workloads. Backtracking recomputes each step's argmin.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from pdfleet.search.exact import first_argmin


class PathInputs(NamedTuple):
    """Device arrays of the fleet problem the path search reads (see problem.Options)."""

    pre_n: jax.Array  # [Q, W, Cp, Cd]
    dec_n: jax.Array  # [Q, W, Cd]
    pre_gpi: jax.Array  # [W, Cp]
    dec_gpi: jax.Array  # [W, Cd]
    pre_sku: jax.Array  # [W, Cp]
    dec_sku: jax.Array  # [W, Cd]
    unserved: jax.Array  # [Q, W]


def inputs(problem, lo: int = 0, hi: int | None = None) -> PathInputs:
    o = problem.options
    sl = slice(lo, hi)
    return PathInputs(counts32(o.pre_n[:, sl]), counts32(o.dec_n[:, sl]), o.pre_gpi[sl], o.dec_gpi[sl], o.pre_sku[sl],
                      o.dec_sku[sl], problem.unserved_usd[:, sl])


def counts32(n: np.ndarray) -> np.ndarray:
    """Instance counts in float32 when that is exact (every value, inf included, the same after the cast:
    whole counts below 2**24 always are): half the memory of the largest arrays (gen_fleet 1,000,000 rows:
    pre_n is 2 GB in float64), the same values. Prices and costs stay float64 under x64 (path_costs and
    pair_costs promote)."""
    if n.dtype == np.float32:
        return n
    n32 = n.astype(np.float32)
    return n32 if np.array_equal(n32, n) else n


def pair_costs(x: PathInputs, prices, hours):
    """USD over each quarter of every state [Q, W, Cp+1, Cd+1] at prices [S, Q] (USD per GPU-hour);
    the last row and column are the unserved state (its penalty at [.., Cp, Cd], inf elsewhere)."""
    x = PathInputs(*(jnp.asarray(a) for a in x))
    q = jnp.arange(x.pre_n.shape[0])[:, None, None]
    p_price = prices[x.pre_sku[None], q]  # [Q, W, Cp]
    d_price = prices[x.dec_sku[None], q]  # [Q, W, Cd]
    ok = jnp.isfinite(x.pre_n) & jnp.isfinite(x.dec_n)[:, :, None, :]
    pre = jnp.where(jnp.isfinite(x.pre_n), x.pre_n, 0.0) * (x.pre_gpi[None] * p_price)[..., None]
    dec = jnp.where(jnp.isfinite(x.dec_n), x.dec_n, 0.0) * x.dec_gpi[None] * d_price
    cost = jnp.where(ok, hours * (pre + dec[:, :, None, :]), jnp.inf)
    cost = jnp.pad(cost, ((0, 0), (0, 0), (0, 1), (0, 1)), constant_values=jnp.inf)
    return cost.at[:, :, -1, -1].set(x.unserved)


pair_costs_jit = jax.jit(pair_costs)


@partial(jax.jit, static_argnames="k")
def _row_cheapest(x: PathInputs, prices, hours, k: int):
    cost = pair_costs(x, prices, hours)[:, :, :-1, :-1]
    flat = cost.reshape(cost.shape[0], cost.shape[1], -1)  # [Q, W, Cp x Cd]
    neg, idx = jax.lax.top_k(-flat, k)  # equal costs: the lower index first (as a stable sort)
    reduced = jnp.min(flat - jnp.min(flat, axis=2, keepdims=True), axis=0)  # NaN where a row has no pair
    return idx, -neg, reduced


def row_cheapest(problem, prices, k: int, chunk: int = 8192):
    """Per (quarter, workload) row its k cheapest pairs at prices, on the device in chunks of workloads
    (the [Q, W, Cp, Cd] costs never reach the host): (index [Q, W, k] into the flat c x Cd + d pairs, the
    first among equal costs; cost [Q, W, k], inf where fewer than k are feasible; reduced [W, Cp x Cd]:
    each pair's cost minus its row's cheapest, least over the quarters: inf where never feasible, NaN
    for every pair of a workload with a row that has no feasible pair)."""
    prices = jnp.asarray(np.asarray(prices, np.float64))
    idx, cost, reduced = [], [], []
    for lo, hi, start, x, _ in chunks(problem, chunk):
        i, c, r = _row_cheapest(x, prices, problem.economics.hours, k)
        idx.append(np.asarray(i)[:, lo - start:hi - start])
        cost.append(np.asarray(c)[:, lo - start:hi - start])
        reduced.append(np.asarray(r)[lo - start:hi - start])
    return np.concatenate(idx, 1), np.concatenate(cost, 1), np.concatenate(reduced, 0)


@jax.jit
def path_costs(x: PathInputs, c, d, prices, hours, switch):
    """[W] USD over the horizon of given paths (c, d [Q, W], -1 = unserved) at prices [S, Q], with the
    same charges as best_paths: each quarter's pair (or the unserved penalty), plus switch x the new
    instances of a role whose candidate column changed from the previous quarter."""
    q, w = c.shape
    qi, wi = jnp.arange(q)[:, None], jnp.arange(w)[None, :]
    served = c >= 0
    cc, dd = jnp.maximum(c, 0), jnp.maximum(d, 0)
    dtype = jnp.result_type(prices, x.unserved)  # counts may be float32 (counts32): cost in the prices' precision
    pn = jnp.where(served, x.pre_n[qi, wi, cc, dd], 0.0).astype(dtype)
    dn = jnp.where(served, x.dec_n[qi, wi, dd], 0.0).astype(dtype)
    pg = pn * x.pre_gpi[wi, cc] * prices[x.pre_sku[wi, cc], qi]
    dg = dn * x.dec_gpi[wi, dd] * prices[x.dec_sku[wi, dd], qi]
    per_q = jnp.where(served, hours * (pg + dg), x.unserved)
    moved = jnp.where(c[1:] != c[:-1], pn[1:], 0.0) + jnp.where(d[1:] != d[:-1], dn[1:], 0.0)
    return per_q.sum(axis=0) + switch * moved.sum(axis=0)


def _counts(x: PathInputs):
    """Instances of the new state's prefill [Q, W, Cp+1, Cd+1] and decode [Q, W, 1, Cd+1] (0 = unserved)."""
    pn = jnp.pad(jnp.where(jnp.isfinite(x.pre_n), x.pre_n, 0.0), ((0, 0), (0, 0), (0, 1), (0, 1)))
    dn = jnp.pad(jnp.where(jnp.isfinite(x.dec_n), x.dec_n, 0.0), ((0, 0), (0, 0), (0, 1)))[:, :, None, :]
    return pn, dn


def _step_terms(prev, pn, dn, switch):
    """The four predecessor terms (see the module docstring) for one quarter: [W, Cp+1, Cd+1] each."""
    stay = prev
    dec_only = jnp.min(prev, axis=2, keepdims=True) + switch * dn
    pre_only = jnp.min(prev, axis=1, keepdims=True) + switch * pn
    both = jnp.min(prev, axis=(1, 2), keepdims=True) + switch * (pn + dn)
    return stay, dec_only, pre_only, both


@jax.jit
def best_paths(x: PathInputs, prices, hours, switch):
    """Cheapest path per workload at prices [S, Q]: (pair_c [Q, W], pair_d [Q, W] with -1 = unserved,
    value [W] in USD over the horizon incl. switches)."""
    cost = pair_costs(x, prices, hours)
    pn, dn = (a.astype(cost.dtype) for a in _counts(x))  # counts may be float32 (counts32): switch terms
    # in the costs' precision, so that a bound summed from these values is not rounded up

    def forward(prev, inp):
        c, p, d = inp
        stay, dec_only, pre_only, both = _step_terms(prev, p, d, switch)
        v = c + jnp.minimum(jnp.minimum(stay, dec_only), jnp.minimum(pre_only, both))
        return v, v

    v0 = cost[0]
    last, vs = jax.lax.scan(forward, v0, (cost[1:], pn[1:], dn[1:]), unroll=8)
    values = jnp.concatenate([v0[None], vs], axis=0)  # [Q, W, P, D]
    nw, np_, nd = v0.shape
    flat = last.reshape(nw, -1)
    end = first_argmin(flat)
    value = jnp.min(flat, axis=1)

    def backward(state, inp):
        prev, p, d = inp  # values at q-1, counts at q
        c1, d1 = state // nd, state % nd
        w = jnp.arange(nw)
        trans = (prev + switch * p[w, c1, d1][:, None, None] * (jnp.arange(np_)[None, :, None] != c1[:, None, None])
                 + switch * d[w, 0, d1][:, None, None] * (jnp.arange(nd)[None, None, :] != d1[:, None, None]))
        before = first_argmin(trans.reshape(nw, -1))
        return before, state

    first, states = jax.lax.scan(backward, end, (values[:-1], pn[1:], dn[1:]), reverse=True, unroll=8)
    states = jnp.concatenate([first[None], states], axis=0)  # [Q, W]
    c, d = states // nd, states % nd
    unserved = (c == np_ - 1) | (d == nd - 1)
    return jnp.where(unserved, -1, c), jnp.where(unserved, -1, d), value


@partial(jax.jit, static_argnames="n_skus")
def usage_of(x: PathInputs, pair_c, pair_d, n_skus: int):
    """[S, Q] GPUs used by the chosen pairs (-1 = unserved)."""
    q, w = pair_c.shape
    served = pair_c >= 0
    c, d = jnp.maximum(pair_c, 0), jnp.maximum(pair_d, 0)
    qi = jnp.arange(q)[:, None]
    wi = jnp.arange(w)[None, :]
    pre = jnp.where(served, x.pre_n[qi, wi, c, d] * x.pre_gpi[wi, c], 0.0)
    dec = jnp.where(served, x.dec_n[qi, wi, d] * x.dec_gpi[wi, d], 0.0)
    out = jnp.zeros((n_skus, q), pre.dtype)
    out = out.at[x.pre_sku[wi, c], jnp.broadcast_to(qi, c.shape)].add(pre)
    return out.at[x.dec_sku[wi, d], jnp.broadcast_to(qi, d.shape)].add(dec)


def solve_paths(problem, prices, chunk: int = 8192, cells=None, left=None):
    """best_paths over all workloads in chunks of `chunk` workloads (one compiled shape per chunk size).

    The search runs in float32 (twice as fast on CPU as float64); each chosen path is then priced again
    in float64 (path_costs), so values and usage are exact for the paths returned. Ties within float32
    rounding (~1e-7 relative) may pick a path that is not the float64 cheapest, so a bound summed from
    these values can exceed the true dual value by that much: fleet.dual takes RELATIVE_SLACK off.
    Pairs can be forbidden (avoid_pairs, computed on the device per chunk): cells [S, Q] bool, every
    pair using a marked (sku, quarter) cell (repair); left [Q, W, S] GPUs, every pair that needs more
    in some cell than the workload has left there (improve). Returns NumPy (pair_c, pair_d, value [W],
    usage [S, Q])."""
    econ = problem.economics
    n_skus = len(problem.skus)
    cs, ds, vs = [], [], []
    prices32 = jnp.asarray(np.asarray(prices), jnp.float32)
    for lo, hi, start, x, x32 in chunks(problem, chunk):
        if cells is not None or left is not None:
            q, width = x.pre_n.shape[:2]
            no_cells = np.zeros((n_skus, q), bool) if cells is None else np.asarray(cells, bool)
            room = np.full((q, width, n_skus), np.inf) if left is None else np.asarray(left)[:, start:start + width]
            x32 = x32._replace(pre_n=jnp.where(avoid_pairs(x, no_cells, room), jnp.inf, x32.pre_n))
        c, d, _ = best_paths(x32, prices32, econ.hours, econ.switch_usd)
        v = path_costs(x, c, d, prices, econ.hours, econ.switch_usd)
        cs.append(np.asarray(c)[:, lo - start:hi - start])
        ds.append(np.asarray(d)[:, lo - start:hi - start])
        vs.append(np.asarray(v)[lo - start:hi - start])
    c, d = np.concatenate(cs, 1), np.concatenate(ds, 1)
    use = np.asarray(usage_of(device_inputs(problem), c, d, n_skus=n_skus), np.float64)
    return c, d, np.concatenate(vs), use


RELATIVE_SLACK = 1e-6
_DEVICE: list = []  # [(the problem's pre_n, {dtype: every workload's path inputs on the device})]
# One problem at a time: a solver searches its pruned problem (search/prune.py) and costs on the full one only
# at the end; two copies on the device would be 2 GB more at 1,000,000 rows.
_DEVICE_PROBLEMS = 1


@partial(jax.jit, static_argnames="width")
def _chunk(x: PathInputs, start, width: int):
    """Workloads [start, start + width) of x, as they are and in float32 (the search's precision)."""
    def take(a, axis):
        return jax.lax.dynamic_slice_in_dim(a, start, width, axis)

    c = PathInputs(take(x.pre_n, 1), take(x.dec_n, 1), take(x.pre_gpi, 0), take(x.dec_gpi, 0), take(x.pre_sku, 0),
                   take(x.dec_sku, 0), take(x.unserved, 1))
    c32 = PathInputs(*(a.astype(jnp.float32) if jnp.issubdtype(a.dtype, jnp.floating) else a for a in c))
    return c, c32


def chunks(problem, chunk: int = 8192):
    """(lo, hi, start, x, x32) per block of workloads [lo, hi): x holds workloads [start, start + width)
    sliced on the device from device_inputs (width = min(chunk, W): one compiled shape), x32 the same in
    float32. The last block is shifted back to end at W, overlapping the one before it (start <= lo);
    a caller keeps the results of [lo, hi) only. No per-chunk copy is cached: the problem is on the
    device once."""
    w = len(problem.workloads)
    full = device_inputs(problem)
    width = min(chunk, w)
    for lo in range(0, w, width):
        hi = min(lo + width, w)
        start = min(lo, w - width)
        x, x32 = _chunk(full, start, width)
        yield lo, hi, start, x, x32


def device_inputs(problem) -> PathInputs:
    """Every workload's path inputs on the device (counts in float32 where exact: counts32; the rest float64
    under x64), kept for the last problem seen (by the identity of its pre_n: the cache holds it), since
    every solver step reads them again."""
    owner = problem.options.pre_n
    found = next((i for i, (o, _) in enumerate(_DEVICE) if o is owner), None)
    if found is None:
        _DEVICE.insert(0, (owner, {}))
        del _DEVICE[_DEVICE_PROBLEMS:]
    else:
        _DEVICE.insert(0, _DEVICE.pop(found))
    cache = _DEVICE[0][1]
    key = jnp.asarray(1.0).dtype.name  # float64 arrays exist only under x64
    if key not in cache:
        cache[key] = PathInputs(*(jnp.asarray(a) for a in inputs(problem)))
    return cache[key]


AVOID_EPS = 1e-6  # GPUs: a need within this of what is left still fits (fleet.EPS)


def _needs(x: PathInputs):
    """GPUs of each pair's prefill [Q, W, Cp, Cd] and decode [Q, W, Cd] (0 where infeasible)."""
    pre = jnp.where(jnp.isfinite(x.pre_n), x.pre_n, 0.0) * x.pre_gpi[None, :, :, None]
    dec = jnp.where(jnp.isfinite(x.dec_n), x.dec_n, 0.0) * x.dec_gpi[None]
    return pre, dec


@jax.jit
def avoid_pairs(x: PathInputs, cells, left):
    """[Q, W, Cp, Cd] True where a pair uses a (sku, quarter) cell marked in cells [S, Q], or needs
    more GPUs of a cell than left [Q, W, S] (what the cell has free plus what the workload uses there
    now: a single move to an unmarked pair never breaks a cap). A pair whose two roles share a sku
    needs the sum of both there."""
    q = jnp.arange(x.pre_n.shape[0])[:, None, None]
    wi = jnp.arange(x.pre_n.shape[1])[None, :, None]
    pre_cell = cells[x.pre_sku[None], q]  # [Q, W, Cp]
    dec_cell = cells[x.dec_sku[None], q]  # [Q, W, Cd]
    pre_need, dec_need = _needs(x)
    pre_left = left[q, wi, x.pre_sku[None]]  # [Q, W, Cp]
    dec_left = left[q, wi, x.dec_sku[None]]  # [Q, W, Cd]
    same = (x.pre_sku[:, :, None] == x.dec_sku[:, None, :])[None]  # [1, W, Cp, Cd]
    total = pre_need + dec_need[:, :, None, :]
    full = jnp.where(same, total > pre_left[..., None] + AVOID_EPS,
                     (pre_need > pre_left[..., None] + AVOID_EPS) | (dec_need > dec_left + AVOID_EPS)[:, :, None, :])
    return full | pre_cell[..., None] | dec_cell[:, :, None, :]


@partial(jax.jit, static_argnames=("n_skus", "roles"))
def usage_per_workload(x: PathInputs, pair_c, pair_d, n_skus: int, roles: tuple = ("prefill", "decode")):
    """[W, S, Q] GPUs each workload's chosen pairs (pair_c, pair_d [Q, W], -1 = unserved) use per cell,
    counting the given roles."""
    q, w = pair_c.shape
    served = pair_c >= 0
    c, d = jnp.maximum(pair_c, 0), jnp.maximum(pair_d, 0)
    qi, wi = jnp.arange(q)[:, None], jnp.arange(w)[None, :]
    pn, dn = x.pre_n[qi, wi, c, d], x.dec_n[qi, wi, d]
    pre = jnp.where(served & jnp.isfinite(pn), pn * x.pre_gpi[wi, c], 0.0)
    dec = jnp.where(served & jnp.isfinite(dn), dn * x.dec_gpi[wi, d], 0.0)
    qq, ww = jnp.broadcast_to(qi, c.shape), jnp.broadcast_to(wi, c.shape)
    out = jnp.zeros((w, n_skus, q), pre.dtype)
    if "prefill" in roles:
        out = out.at[ww, x.pre_sku[wi, c], qq].add(pre)
    if "decode" in roles:
        out = out.at[ww, x.dec_sku[wi, d], qq].add(dec)
    return out


def _pad_workloads(x: PathInputs, width: int) -> PathInputs:
    """Pad the workload axis to `width` with empty workloads (unserved at cost 0, no usage)."""
    n = x.pre_gpi.shape[0]
    if n == width:
        return x
    extra = width - n

    def pad(a, axis, value):
        widths = [(0, 0)] * a.ndim
        widths[axis] = (0, extra)
        return np.pad(np.asarray(a), widths, constant_values=value)

    return PathInputs(pad(x.pre_n, 1, np.inf), pad(x.dec_n, 1, np.inf), pad(x.pre_gpi, 0, 0), pad(x.dec_gpi, 0, 0),
                      pad(x.pre_sku, 0, 0), pad(x.dec_sku, 0, 0), pad(x.unserved, 1, 0.0))
