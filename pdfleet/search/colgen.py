"""Dual prices from restricted linear programs (column generation), to start the Lagrangian ascent
near the dual optimum instead of climbing there by subgradient steps.

Round r: the LP relaxation of the fleet program (milp.program) restricted, per workload, to the pairs
kept so far (the unserved option is always there, so it is feasible), with switch costs left out;
HiGHS's duals of its usage rows (usage - owned in use - rented <= 0 per (sku, quarter) cell) are the
prices lambda [S, Q] = -dual / hours (USD per GPU-hour). The Lagrangian dual L(lambda) (fleet.dual) is
then a certified lower bound whatever the LP was (weak duality holds at any prices >= 0), and the
workloads' cheapest paths at lambda plus each row's `cheapest` pairs at lambda join the kept pairs
(the pricing step of Dantzig-Wolfe column generation: Dantzig & Wolfe 1960; Lübbecke & Desrosiers,
"Selected topics in column generation", Oper. Res. 2005). It stops when no pair enters, when the bound
stops rising (after the second round), or after `rounds`. Leaving the switch rows out keeps the LP a few times smaller
(measured: gen_fleet 20,000 rows, 2-3 s per LP instead of 70-98 s) and only makes lambda approximate;
the ascent that follows (lagrangian.py) corrects it.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog

from pdfleet.search import fleet, milp, paths
from pdfleet.search.problem import FleetProblem, max_usage

# Restricted LPs beyond this many pair variables are not solved (time). gen_fleet 100,000 rows: at 400,000
# colgen stopped after 2 rounds (bound 160,021 USD/h, gap 9%); allowed 472,000 pair variables its 6
# rounds took 40 s under load 4 (LPs of 2-7 s) and reached a bound of 171,214 (gap about 1%).
MAX_LP_PAIRS = 1_500_000


class Prices(NamedTuple):
    best: fleet.Bound  # the highest L(lambda) seen
    bounds: list  # every round's Bound (the paths it visited, for a restricted polish)
    keep: np.ndarray  # [W, Cp, Cd] the pairs kept at the end
    rounds: int
    rounded: tuple | None  # (pair_c, pair_d) [Q, W]: the last restricted LP's solution rounded (round_lp)


def keep_cheapest(problem: FleetProblem, prices: np.ndarray, keep: np.ndarray, cheapest: int) -> None:
    """Mark in keep [W, Cp, Cd] each (quarter, workload) row's `cheapest` finite pairs at prices."""
    q, w, cp, cd = problem.options.pre_n.shape
    best, cost, _ = paths.row_cheapest(problem, prices, cheapest)  # [Q, W, k]
    finite = cost < np.inf
    wk = np.broadcast_to(np.arange(w)[None, :, None], best.shape)
    keep[wk[finite], best[finite] // cd, best[finite] % cd] = True


def keep_paths(keep: np.ndarray, c: np.ndarray, d: np.ndarray) -> None:
    """Mark in keep [W, Cp, Cd] the pairs of paths c, d [Q, W] (-1 = unserved)."""
    ok = c >= 0
    keep[np.broadcast_to(np.arange(c.shape[1])[None], c.shape)[ok], c[ok], d[ok]] = True


def restricted(problem: FleetProblem, keep: np.ndarray) -> FleetProblem:
    """The problem with only the kept pairs feasible: every plan of it is a plan of `problem`."""
    o = problem.options
    return problem._replace(options=o._replace(pre_n=np.where(keep[None], o.pre_n, np.inf)))


def lp_prices(problem: FleetProblem, keep: np.ndarray) -> np.ndarray | None:
    """[S, Q] prices (USD per GPU-hour) from the duals of the restricted LP without switch costs;
    None when HiGHS returns no solution."""
    got = lp_solve(problem, keep)
    return None if got is None else got[0]


def round_lp(pairs: tuple, x: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(pair_c, pair_d) [Q, W] from an LP solution x of milp.program (pair variables first, in the order
    of pairs = (qx, wx, cx, dx), then one unserved variable per row): per row the pair of largest weight
    (the first in program order among equals), or unserved where its variable weighs more. A basic
    solution has few fractional rows (at most one per binding coupling row), so the rounded choice is
    the LP's own almost everywhere; repair makes it feasible (lagrangian._primal)."""
    qx, wx, cx, dx = pairs
    nq, nw = shape
    nx = len(qx)
    row = qx * nw + wx
    order = np.lexsort((np.arange(nx), -x[:nx], row))
    first = order[np.r_[True, row[order][1:] != row[order][:-1]]] if nx else order
    weight = np.full(nq * nw, -np.inf)
    pc, pd_ = np.full(nq * nw, -1), np.full(nq * nw, -1)
    weight[row[first]], pc[row[first]], pd_[row[first]] = x[first], cx[first], dx[first]
    unserved = x[nx:nx + nq * nw] > weight
    pc[unserved], pd_[unserved] = -1, -1
    return pc.reshape(nq, nw), pd_.reshape(nq, nw)


def lp_solve(problem: FleetProblem, keep: np.ndarray) -> tuple[np.ndarray, tuple] | None:
    """(prices [S, Q] as in lp_prices, the LP's solution rounded by round_lp); None when HiGHS returns
    no solution."""
    econ = problem.economics
    prog = milp.program(restricted(problem, keep)._replace(economics=econ._replace(switch_usd=0.0)))
    a = prog.a
    eq = prog.lo == prog.hi
    upper_rows = ~eq & np.isinf(prog.lo)
    lower_rows = ~eq & ~upper_rows
    a_ub = sp.vstack([a[upper_rows], -a[lower_rows]]).tocsr()
    b_ub = np.concatenate([prog.hi[upper_rows], -prog.lo[lower_rows]])
    # HiGHS fails on objectives of 1e12 and more (procure.dual); below, scaling only blurs the duals
    scale = max(float(np.max(np.abs(prog.cost))) / 1e9, 1.0)
    res = linprog(prog.cost / scale, A_ub=a_ub, b_ub=b_ub, A_eq=a[eq], b_eq=prog.hi[eq],
                  bounds=np.stack([np.zeros(len(prog.cost)), prog.upper], axis=1), method="highs")
    if res.status != 0 or res.ineqlin is None:
        return None
    cell_rows = (np.cumsum(upper_rows) - 1)[np.arange(prog.cells.start, prog.cells.stop)]
    dual = -scale * res.ineqlin.marginals[cell_rows]
    rounded = round_lp(prog.pairs, res.x, problem.demand_rps.shape)
    return np.maximum(dual, 0.0).reshape(econ.owned.shape) / econ.hours, rounded


def prices(problem: FleetProblem, start: np.ndarray, rounds: int = 6, cheapest: int = 1,
           supply_max: np.ndarray | None = None, max_pairs: int = MAX_LP_PAIRS) -> Prices:
    """Column generation from prices `start` (module docstring)."""
    supply_max = max_usage(problem) if supply_max is None else supply_max
    q, w, cp, cd = problem.options.pre_n.shape
    keep = np.zeros((w, cp, cd), bool)
    bound = fleet.dual(problem, start, supply_max)
    best, bounds, r, rounded = bound, [bound], 0, None
    for r in range(1, rounds + 1):
        before = int(keep.sum())
        keep_cheapest(problem, bound.prices, keep, cheapest)
        keep_paths(keep, bound.pair_c, bound.pair_d)
        if int(keep.sum()) == before or int(keep.sum()) * q > max_pairs:
            break
        got = lp_solve(problem, keep)
        if got is None:
            break
        lam, rounded = got
        bound = fleet.dual(problem, lam, supply_max)
        bounds.append(bound)
        if bound.value_usd > best.value_usd + 1e-9 * abs(best.value_usd):
            best = bound
        elif r > 2:  # the first rounds may fall (few pairs kept); after that a stall ends it (gen_fleet
            break  # 100,000 rows: the round after the first stall did not raise the bound either)
    return Prices(best, bounds, keep, r, rounded)
