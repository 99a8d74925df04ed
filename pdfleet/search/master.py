"""Column generation over whole workload paths (Dantzig-Wolfe): the strongest Lagrangian bound, and a
restricted master whose solution is integral for all but a few workloads.

The fleet program couples workloads only through the (sku, quarter) usage cells. Its Dantzig-Wolfe
reformulation has one variable per workload path (a pair or 'unserved' per quarter, paths.best_paths'
states) with weight lambda_wk >= 0, sum_k lambda_wk = 1 per workload, and
    sum_wk usage_wk[s, q] lambda_wk - owned in use[s, q] - rented[s, q] <= 0  per cell,
plus the procurement block of procure.program (the same variables and limits as milp.program). A path's
cost is what it pays outside procurement: switch costs and the penalties of its unserved rows
(paths.path_costs at zero prices). The master's LP optimum equals max over prices of the Lagrangian
dual L (fleet.dual), since each workload's path search is solved exactly (Geoffrion 1974, "Lagrangean
relaxation for integer programming"; Lübbecke & Desrosiers, "Selected topics in column generation",
Oper. Res. 2005), and it is at least the LP relaxation of milp.program, which lets switch indicators
take fractional values.

Pricing: at the master's cell duals (prices, USD per GPU-hour) every workload's cheapest path is found in
one vectorized search; a path enters when its reduced cost (its value at the prices minus its workload's
convexity dual) is negative. Prices are smoothed towards the best bound's (Wentges 1997, "Weighted
Dantzig-Wolfe decomposition"), which damps the duals' oscillation; when the smoothed prices yield no
entering path, the master's own duals are priced. Every priced point gives a certified bound L.

A basic solution has at most one basic variable per row, so at most as many workloads as there are cell
and procurement rows are split between paths: rounding each workload to its heaviest path (round_paths)
changes only those (gen_fleet 20,000 rows: 19 of 5,000 workloads).
"""

from __future__ import annotations

import time
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
from scipy.optimize import Bounds, LinearConstraint, linprog, milp

from pdfleet.search import fleet, paths, procure
from pdfleet.search.problem import FleetProblem, max_usage

SMOOTHING = 0.5  # weight of the best bound's prices in the priced point (Wentges)
# Stop when the master's LP value is within this (relative) of the best bound. gen_fleet 20,000 rows: 1e-5
# took 18 rounds (7.5 s) for a 0.025% gap, 1e-4 14 rounds (6.1 s) for 0.032%.
TOL = 1e-4


class Columns(NamedTuple):
    c: np.ndarray  # [K, Q] prefill column per quarter (-1 = unserved)
    d: np.ndarray  # [K, Q]
    owner: np.ndarray  # [K] workload
    cost: np.ndarray  # [K] USD over the horizon outside procurement (switches, penalties)
    usage: sp.csr_matrix  # [K, S x Q] GPUs per cell (sku-major, as milp.program's cell rows)


class Master(NamedTuple):
    best: fleet.Bound  # the highest L seen
    bounds: list  # the Bound of every priced point
    columns: Columns
    weights: np.ndarray  # [K] the last master LP's solution
    lp_usd: float  # the last master LP's value (an upper bound on L's maximum, not a plan)
    rounds: int
    seconds: dict  # 'lp' and 'pricing'


def new_columns(problem: FleetProblem, c: np.ndarray, d: np.ndarray, take: np.ndarray) -> Columns:
    """Columns for the paths of workloads `take` [n] among paths c, d [Q, W] of every workload (priced for
    all W at once: one compiled shape)."""
    x = paths.device_inputs(problem)
    econ = problem.economics
    zero = np.zeros((len(problem.skus), c.shape[0]))
    cost = np.asarray(paths.path_costs(x, c, d, zero, econ.hours, econ.switch_usd), np.float64)[take]
    use = np.asarray(paths.usage_per_workload(x, c, d, n_skus=len(problem.skus)), np.float64)[take]
    return Columns(c[:, take].T.copy(), d[:, take].T.copy(), np.asarray(take), cost,
                   sp.csr_matrix(use.reshape(len(take), -1)))


def join(a: Columns, b: Columns) -> Columns:
    return Columns(np.concatenate([a.c, b.c]), np.concatenate([a.d, b.d]), np.concatenate([a.owner, b.owner]),
                   np.concatenate([a.cost, b.cost]), sp.vstack([a.usage, b.usage]).tocsr())


def unserved_columns(problem: FleetProblem) -> Columns:
    """Every workload's all-unserved path: keeps the master feasible whatever else it holds."""
    q, w = problem.demand_rps.shape
    minus = np.full((q, w), -1)
    return new_columns(problem, minus, minus, np.arange(w))


class LP(NamedTuple):
    value_usd: float
    weights: np.ndarray  # [K]
    prices: np.ndarray  # [S, Q] USD per GPU-hour (-dual of the cell rows / hours)


class Program(NamedTuple):
    """The restricted master: min cost . v, a_ub v <= b_ub, a_eq v = 1, 0 <= v <= upper; v = [lambda, procurement]."""

    cost: np.ndarray  # path weights are bounded by 1 (redundant with the convexity row, but HiGHS's dual simplex
    # is far faster on boxed variables: gen_fleet 100,000 rows, 13 warm LPs 5.5 s against 110 s unbounded)
    a_ub: sp.csr_matrix  # cell rows first, then procure.program's rows
    b_ub: np.ndarray
    a_eq: sp.csr_matrix  # convexity, one row per workload
    upper: np.ndarray
    cells: int  # cell rows
    paths: int  # path variables


def program(problem: FleetProblem, cols: Columns, supply_max: np.ndarray) -> Program:
    econ = problem.economics
    nw = problem.demand_rps.shape[1]
    k = len(cols.owner)
    n = cols.usage.shape[1]
    pcost, prows, plo, phi, pupper = procure.program(econ, supply_max)
    if np.isfinite(np.concatenate(plo)).any():
        raise ValueError("procure.program rows are expected to be upper limits only")
    npv = len(pcost)
    eye = sp.identity(n, format="csr")
    cell = sp.hstack([cols.usage.T.tocsr(), -eye, -eye, sp.csr_matrix((n, npv - 2 * n))])
    proc = sp.hstack([sp.csr_matrix((sum(m.shape[0] for m in prows), k)), sp.vstack(prows)])
    conv = sp.csr_matrix((np.ones(k), (cols.owner, np.arange(k))), shape=(nw, k + npv))
    return Program(np.concatenate([cols.cost, pcost]), sp.vstack([cell, proc]).tocsr(),
                   np.concatenate([np.zeros(n), np.concatenate(phi)]), conv, np.r_[np.ones(k), pupper], n, k)


def _cell_prices(problem: FleetProblem, dual: np.ndarray, scale: float) -> np.ndarray:
    """[S, Q] USD per GPU-hour from the (scaled) duals of the cell rows."""
    econ = problem.economics
    return np.maximum(-scale * dual, 0.0).reshape(econ.owned.shape) / econ.hours


def _scale(cost: np.ndarray) -> float:
    """HiGHS fails on objectives of 1e12 and more (procure.dual); below, scaling only blurs the duals."""
    return max(float(np.max(np.abs(cost))) / 1e9, 1.0)


def solve_lp(problem: FleetProblem, cols: Columns, supply_max: np.ndarray) -> LP | None:
    """The restricted master LP by HiGHS (module docstring); None when HiGHS returns no solution."""
    prog = program(problem, cols, supply_max)
    scale = _scale(prog.cost)
    res = linprog(prog.cost / scale, A_ub=prog.a_ub, b_ub=prog.b_ub, A_eq=prog.a_eq, b_eq=np.ones(prog.a_eq.shape[0]),
                  bounds=np.stack([np.zeros(len(prog.cost)), prog.upper], axis=1), method="highs-ds")
    if res.status != 0 or res.ineqlin is None:
        return None
    prices = _cell_prices(problem, res.ineqlin.marginals[:prog.cells], scale)
    return LP(float(res.fun) * scale, res.x[:prog.paths], prices)


def solve_integer(problem: FleetProblem, cols: Columns, weights: np.ndarray, supply_max: np.ndarray, nodes: int,
                  free: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """The restricted master with whole paths and whole GPUs, by HiGHS branch and bound under a node limit
    (a work limit, so the answer does not depend on the machine's speed). Workloads outside `free` [W]
    bool (default: those the LP solution `weights` splits between paths) keep their heaviest path;
    HiGHS's presolve removes them. (pair_c, pair_d) [Q, W] of the best integer solution found, None
    when there is none."""
    if free is None:
        free = split_workloads(cols, weights, problem.demand_rps.shape[1])
    heaviest = _heaviest(cols, weights)
    keep = free[cols.owner]
    keep[heaviest[~free[cols.owner[heaviest]]]] = True
    sub = Columns(cols.c[keep], cols.d[keep], cols.owner[keep], cols.cost[keep], cols.usage[keep])
    prog = program(problem, sub, supply_max)
    scale = _scale(prog.cost)
    res = milp(prog.cost / scale, integrality=np.ones(len(prog.cost)),
               constraints=[LinearConstraint(prog.a_ub, -np.inf, prog.b_ub), LinearConstraint(prog.a_eq, 1.0, 1.0)],
               bounds=Bounds(np.zeros(len(prog.cost)), prog.upper),
               options={"presolve": True, "mip_rel_gap": 1e-9, "node_limit": int(nodes)})
    if res.x is None:
        return None
    return round_paths(problem, sub, np.round(res.x[:prog.paths]))


def split_workloads(cols: Columns, weights: np.ndarray, n_workloads: int) -> np.ndarray:
    """[W] bool: workloads whose weight the LP solution splits between several paths."""
    split = (weights > 1e-9) & (weights < 1.0 - 1e-9)
    return np.bincount(cols.owner, weights=split, minlength=n_workloads) > 0


class WarmLP:
    """The restricted master kept in one HiGHS instance (highspy): new columns are appended and the dual
    simplex restarts from the last basis, instead of solving every round's LP from scratch (scipy's
    linprog cannot warm-start). Rows and prices as in solve_lp, the cold reference (tests)."""

    def __init__(self, problem: FleetProblem, cols: Columns, supply_max: np.ndarray):
        from highspy import _core  # the plain binding: highspy.Highs() prints a banner on stdout before
        # any option can be set (ERGO-Code/HiGHS issue 2749), which would land in pdfleet's own output

        prog = program(problem, cols, supply_max)
        self.problem, self.cells, self.paths = problem, prog.cells, prog.paths
        self.npv = len(prog.cost) - prog.paths
        self.scale = _scale(prog.cost)
        a = sp.vstack([prog.a_ub, prog.a_eq]).tocsc()
        nub, neq = prog.a_ub.shape[0], prog.a_eq.shape[0]
        lp = _core.HighsLp()
        lp.num_col_, lp.num_row_ = a.shape[1], a.shape[0]
        lp.col_cost_ = prog.cost / self.scale
        lp.col_lower_, lp.col_upper_ = np.zeros(a.shape[1]), prog.upper
        lp.row_lower_ = np.r_[np.full(nub, -_core.kHighsInf), np.ones(neq)]
        lp.row_upper_ = np.r_[prog.b_ub, np.ones(neq)]
        m = lp.a_matrix_
        m.format_ = _core.MatrixFormat.kColwise
        m.num_col_, m.num_row_ = a.shape[1], a.shape[0]
        m.start_, m.index_, m.value_ = a.indptr.astype(np.int32), a.indices.astype(np.int32), a.data
        self.h = _core._Highs()
        self.h.setOptionValue("output_flag", False)
        self.h.setOptionValue("solver", "simplex")
        self.h.passModel(lp)
        self.rows = (nub, neq)

    def add(self, new: Columns) -> None:
        """Append columns new (after every column so far: HiGHS's columns are the first paths, the
        procurement block, then the added paths in order)."""
        nub, neq = self.rows
        usage = new.usage.tocsc().T.tocsc()  # [S x Q, k]
        a = sp.vstack([usage, sp.csr_matrix((nub - self.cells, len(new.owner))),
                       sp.csr_matrix((np.ones(len(new.owner)), (new.owner, np.arange(len(new.owner)))),
                                     shape=(neq, len(new.owner)))]).tocsc()
        self.h.addCols(len(new.owner), new.cost / self.scale, np.zeros(len(new.owner)), np.ones(len(new.owner)),
                       a.nnz, a.indptr.astype(np.int32), a.indices.astype(np.int32), a.data)

    def solve(self) -> LP | None:
        from highspy import _core

        self.h.run()
        if self.h.getModelStatus() != _core.HighsModelStatus.kOptimal:
            return None
        sol = self.h.getSolution()
        x, dual = np.asarray(sol.col_value), np.asarray(sol.row_dual)
        weights = np.delete(x, np.arange(self.paths, self.paths + self.npv))
        return LP(float(self.h.getInfo().objective_function_value) * self.scale, weights,
                  _cell_prices(self.problem, dual[:self.cells], self.scale))


def convexity_duals(problem: FleetProblem, cols: Columns, prices: np.ndarray) -> np.ndarray:
    """[W] each workload's least column value at prices: the convexity duals of the master without the
    (redundant) bounds lambda <= 1. HiGHS may put part of a used column's dual on its bound instead of its
    workload's row; these values give the same objective, and every column a reduced cost >= 0."""
    value = cols.cost + problem.economics.hours * (cols.usage @ prices.ravel())
    out = np.full(problem.demand_rps.shape[1], np.inf)
    np.minimum.at(out, cols.owner, value)
    return out


def entering(problem: FleetProblem, bound: fleet.Bound, prices: np.ndarray, convexity: np.ndarray,
             tol: float) -> np.ndarray:
    """Workloads whose path in `bound` has a negative reduced cost at the master's duals (prices and
    convexity_duals)."""
    value = fleet.path_values(problem, prices, bound.pair_c, bound.pair_d)
    return np.nonzero(value - convexity < -tol * np.maximum(1.0, np.abs(convexity)))[0]


def generate(problem: FleetProblem, start: np.ndarray, rounds: int = 40, supply_max: np.ndarray | None = None,
             tol: float = TOL, smoothing: float = SMOOTHING, progress=None) -> Master:
    """Column generation from prices `start` (module docstring): stops when the master's LP value is
    within tol of the best bound, when no path enters at the master's own duals, or after `rounds`.
    progress(round, rounds, relative distance between the master's LP value and the best bound) after
    each round's LP."""
    supply_max = max_usage(problem) if supply_max is None else supply_max
    seconds = {"lp": 0.0, "pricing": 0.0}
    t = time.perf_counter()
    best = fleet.dual(problem, start, supply_max)
    seconds["pricing"] += time.perf_counter() - t
    w = problem.demand_rps.shape[1]
    cols = join(unserved_columns(problem), new_columns(problem, best.pair_c, best.pair_d, np.arange(w)))
    bounds, lp, r = [best], None, 0
    model = WarmLP(problem, cols, supply_max)
    for r in range(1, rounds + 1):
        t = time.perf_counter()
        got = model.solve()
        seconds["lp"] += time.perf_counter() - t
        if got is None:  # HiGHS failed: keep the last LP solved (its weights cover the columns it had)
            break
        lp = got
        if progress:
            progress(r, rounds, max(0.0, lp.value_usd - best.value_usd) / max(1.0, abs(lp.value_usd)))
        if best.value_usd >= lp.value_usd - tol * max(1.0, abs(lp.value_usd)):
            break
        t = time.perf_counter()
        added = 0
        convexity = convexity_duals(problem, cols, lp.prices)
        for alpha in (smoothing, 0.0):
            point = alpha * best.prices + (1.0 - alpha) * lp.prices
            bound = fleet.dual(problem, point, supply_max)
            bounds.append(bound)
            if bound.value_usd > best.value_usd:
                best = bound
            enter = entering(problem, bound, lp.prices, convexity, tol)
            if len(enter):
                new = new_columns(problem, bound.pair_c, bound.pair_d, enter)
                model.add(new)
                cols = join(cols, new)
                added = len(enter)
                break
        seconds["pricing"] += time.perf_counter() - t
        if not added:
            break
    weights = np.zeros(len(cols.owner))  # columns added after the last LP weigh 0
    if lp is not None:
        weights[:len(lp.weights)] = lp.weights
    return Master(best, bounds, cols, weights, lp.value_usd if lp is not None else np.inf, r, seconds)


def pairs_of(cols: Columns, shape: tuple[int, int, int]) -> np.ndarray:
    """[W, Cp, Cd] True for every pair some column uses in some quarter."""
    keep = np.zeros(shape, bool)
    ok = cols.c >= 0
    keep[np.broadcast_to(cols.owner[:, None], ok.shape)[ok], cols.c[ok], cols.d[ok]] = True
    return keep


def _heaviest(cols: Columns, weights: np.ndarray) -> np.ndarray:
    """Per workload (in the order of their first appearance sorted by owner) the index of its heaviest
    column, the first among equal weights."""
    order = np.lexsort((np.arange(len(weights)), -weights, cols.owner))
    return order[np.r_[True, cols.owner[order][1:] != cols.owner[order][:-1]]]


def round_paths(problem: FleetProblem, cols: Columns, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(pair_c, pair_d) [Q, W]: each workload's heaviest path in the master's solution (the first column
    among equal weights)."""
    q, w = problem.demand_rps.shape
    first = _heaviest(cols, weights)
    c, d = np.full((q, w), -1), np.full((q, w), -1)
    c[:, cols.owner[first]], d[:, cols.owner[first]] = cols.c[first].T, cols.d[first].T
    return c, d
