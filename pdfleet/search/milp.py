"""The reference solver: the whole fleet problem as one mixed-integer program, solved by HiGHS
(scipy.optimize.milp). Exact up to HiGHS's tolerances; used by tests and benchmarks, and by `auto` as
a cross-check on small fleets.

Variables
- x[q, w, c, d] in {0, 1} for every feasible pair, u[q, w] in {0, 1} for leaving a row unserved
  (its penalty, problem.unserved_usd); exactly one per row.
- zp[q, w, c, d] >= x[q, w, c, d] - sum_d' x[q-1, w, c, d'] (prefill candidate c new in quarter q),
  costing switch_usd x n_p(q, c, d); zd[q, w, d] >= sum_c x[q, w, c, d] - sum_c x[q-1, w, c, d] likewise
  for decode at switch_usd x n_d(q, d). Same charge as paths.best_paths.
- the procurement of procure.py (ou, r, b per sku and quarter, integers) with its limits, and
  usage[s, q] = sum of GPUs of the chosen pairs <= ou[s, q] + r[s, q].
"""

from __future__ import annotations

import time
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
from scipy.optimize import Bounds, LinearConstraint, milp

from pdfleet.search import fleet, procure
from pdfleet.search.problem import FleetProblem, feasible_pairs, max_usage


class Result(NamedTuple):
    plan: fleet.FleetPlan
    lower_bound_usd: float  # HiGHS's dual bound (= cost when solved to optimality)
    optimal: bool
    seconds: float
    message: str


def size(problem: FleetProblem) -> int:
    """Binary pair variables the program would have (a cheap size test for `auto`)."""
    o = problem.options
    return int(feasible_pairs(o).sum())


class Program(NamedTuple):
    """The integer program of the module docstring: min cost . v, lo <= a v <= hi, 0 <= v <= upper."""

    cost: np.ndarray
    a: sp.csr_matrix
    lo: np.ndarray
    hi: np.ndarray
    upper: np.ndarray
    integrality: np.ndarray
    pairs: tuple  # (qx, wx, cx, dx) of the pair variables x, which come first
    cells: slice  # rows of the usage constraints, one per (sku, quarter) cell in sku-major order


def program(problem: FleetProblem) -> Program:
    o, econ = problem.options, problem.economics
    o = o._replace(pre_n=o.pre_n.astype(np.float64, copy=False), dec_n=o.dec_n.astype(np.float64, copy=False))
    nq, nw, cp, cd = o.pre_n.shape
    ns = len(problem.skus)
    sw = econ.switch_usd
    feas = feasible_pairs(o)
    qx, wx, cx, dx = np.nonzero(feas)
    nx = len(qx)
    pre_g = o.pre_n[qx, wx, cx, dx] * o.pre_gpi[wx, cx]
    dec_g = o.dec_n[qx, wx, dx] * o.dec_gpi[wx, dx]
    cols = 0
    x0 = cols
    cols += nx
    u0 = cols
    cols += nq * nw
    # switch variables (only where a switch has a cost)
    use_switch = sw > 0 and nq > 1
    zp_sel = np.nonzero((qx > 0) & (o.pre_n[qx, wx, cx, dx] > 0))[0] if use_switch else np.zeros(0, int)
    zp0 = cols
    cols += len(zp_sel)
    zd_q, zd_w, zd_d = (np.nonzero(np.isfinite(o.dec_n[1:]) & (o.dec_n[1:] > 0)) if use_switch
                        else (np.zeros(0, int),) * 3)
    zd_q = zd_q + 1
    zd0 = cols
    cols += len(zd_q)
    # procurement block
    pcost, prows, plo, phi, pupper = procure.program(econ, max_usage(problem))
    p0 = cols
    cols += len(pcost)

    cost = np.zeros(cols)
    cost[u0:u0 + nq * nw] = problem.unserved_usd.ravel()
    cost[zp0:zp0 + len(zp_sel)] = sw * o.pre_n[qx[zp_sel], wx[zp_sel], cx[zp_sel], dx[zp_sel]]
    cost[zd0:zd0 + len(zd_q)] = sw * o.dec_n[zd_q, zd_w, zd_d]
    cost[p0:] = pcost
    upper = np.ones(cols)
    upper[zp0:p0] = np.inf
    upper[p0:] = pupper

    blocks, lo, hi = [], [], []
    row = 0

    def add(r, c, v, lower, upper_):
        nonlocal row
        blocks.append((np.asarray(r) + row, np.asarray(c), np.asarray(v, float)))
        lo.append(np.asarray(lower, float))
        hi.append(np.asarray(upper_, float))
        row += len(lower)

    rid = qx * nw + wx  # one choice per row
    add(np.concatenate([rid, np.arange(nq * nw)]), np.concatenate([x0 + np.arange(nx), u0 + np.arange(nq * nw)]),
        np.ones(nx + nq * nw), np.ones(nq * nw), np.ones(nq * nw))
    # usage - ou - r <= 0 per cell
    n = ns * nq
    cells = slice(row, row + n)
    cell_p = o.pre_sku[wx, cx] * nq + qx
    cell_d = o.dec_sku[wx, dx] * nq + qx
    add(np.concatenate([cell_p, cell_d, np.arange(n), np.arange(n)]),
        np.concatenate([x0 + np.arange(nx), x0 + np.arange(nx), p0 + np.arange(n), p0 + n + np.arange(n)]),
        np.concatenate([pre_g, dec_g, -np.ones(2 * n)]), np.full(n, -np.inf), np.zeros(n))
    if len(zp_sel):
        # zp_k - x_k + sum_{d'} x[q-1, w, c, d'] >= 0
        k = np.arange(len(zp_sel))
        key = (qx * nw + wx) * cp + cx  # (q, w, c) of each x
        prev_key = ((qx[zp_sel] - 1) * nw + wx[zp_sel]) * cp + cx[zp_sel]
        r_idx, c_idx = _match(prev_key, key)
        add(np.concatenate([k, k, r_idx]), np.concatenate([zp0 + k, x0 + zp_sel, x0 + c_idx]),
            np.concatenate([np.ones(len(k)), -np.ones(len(k)), np.ones(len(r_idx))]),
            np.zeros(len(k)), np.full(len(k), np.inf))
    if len(zd_q):
        k = np.arange(len(zd_q))
        key = (qx * nw + wx) * cd + dx
        now_r, now_c = _match((zd_q * nw + zd_w) * cd + zd_d, key)
        prev_r, prev_c = _match(((zd_q - 1) * nw + zd_w) * cd + zd_d, key)
        add(np.concatenate([k, now_r, prev_r]), np.concatenate([zd0 + k, x0 + now_c, x0 + prev_c]),
            np.concatenate([np.ones(len(k)), -np.ones(len(now_r)), np.ones(len(prev_r))]),
            np.zeros(len(k)), np.full(len(k), np.inf))
    for m, l_, h_ in zip(prows, plo, phi):
        m = m.tocoo()
        add(m.row, p0 + m.col, m.data, l_, h_)
    r = np.concatenate([b[0] for b in blocks])
    c = np.concatenate([b[1] for b in blocks])
    v = np.concatenate([b[2] for b in blocks])
    a = sp.csr_matrix((v, (r, c)), shape=(row, cols))
    integrality = np.ones(cols)
    integrality[zp0:p0] = 0  # switch indicators are integral at any vertex once x is
    return Program(cost, a, np.concatenate(lo), np.concatenate(hi), upper, integrality, (qx, wx, cx, dx), cells)


def solve(problem: FleetProblem, time_limit: float | None = None, prune: bool = True,
          node_limit: int | None = None) -> Result:
    """HiGHS on the program of `problem`, after exact dominance pruning (search/prune.py: the optimum is
    unchanged, the program has about a quarter of the pair variables on generated fleets) unless
    prune=False. The plan is costed on the unpruned problem. Limits: time_limit (seconds: the answer
    then depends on the machine's speed) and node_limit (branch-and-bound nodes: a work limit, so the
    same program gives the same answer on any machine); without either HiGHS runs to optimality."""
    from pdfleet.search import prune as pruning

    t0 = time.perf_counter()
    o = problem.options
    nq, nw = o.pre_n.shape[:2]
    prog = program(pruning.prune(problem) if prune else problem)
    qx, wx, cx, dx = prog.pairs
    nx = len(qx)
    x0 = 0
    options = {"presolve": True, "mip_rel_gap": 1e-9}
    if time_limit:
        options["time_limit"] = float(time_limit)
    if node_limit is not None:
        options["node_limit"] = int(node_limit)
    res = milp(prog.cost, constraints=LinearConstraint(prog.a, prog.lo, prog.hi),
               bounds=Bounds(np.zeros(len(prog.cost)), prog.upper), integrality=prog.integrality, options=options)
    seconds = time.perf_counter() - t0
    if res.x is None:
        empty = fleet.FleetPlan(np.full((nq, nw), -1), np.full((nq, nw), -1), np.full((nq, nw), "", object), None,
                                np.inf, 0.0, 0.0)
        return Result(empty, float(getattr(res, "mip_dual_bound", -np.inf) or -np.inf), False, seconds, res.message)
    chosen = np.round(res.x[x0:x0 + nx]) > 0.5
    pc = np.full((nq, nw), -1)
    pd_ = np.full((nq, nw), -1)
    pc[qx[chosen], wx[chosen]] = cx[chosen]
    pd_[qx[chosen], wx[chosen]] = dx[chosen]
    plan = fleet.evaluate(problem, pc, pd_)
    bound = getattr(res, "mip_dual_bound", None)
    bound = float(bound) if bound is not None and np.isfinite(bound) else float(res.fun)
    return Result(plan, min(bound, float(res.fun)), res.status == 0, seconds, res.message)


def _match(want, keys):
    """For each wanted (q, w, c) key, the indices of every x with that key: (row of want, x index)."""
    order = np.argsort(keys, kind="stable")
    sk = keys[order]
    lo = np.searchsorted(sk, want, "left")
    hi = np.searchsorted(sk, want, "right")
    counts = hi - lo
    rows = np.repeat(np.arange(len(want)), counts)
    starts = np.repeat(lo, counts) + (np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts))
    return rows, order[starts]
