"""The gradient-free solver: CMA-ES over the same dual prices the Lagrangian ascends.

Method. A candidate is a vector of log-multipliers m [S x Q] (an [S, Q] array, flattened) bounded to
[lo, hi]; its prices are

    prices[s, q] = ref[s, q] x exp(m[s, q])   (USD per GPU-hour, always > 0),

ref being the start prices (lagrangian.start_prices: each sku's cheapest source ignoring every limit),
with a zero price (an owned GPU that costs nothing to run) lifted to the quarter's cheapest positive
price so that it can move at all. The fitness of a candidate is the objective (true spend + penalties of
unserved rows, USD over the horizon) of the plan the prices lead to: every workload's cheapest path at
those prices (paths.best_paths), made feasible (fleet.repair) and improved (fleet.improve); a plan
with no procurement counts as worse than leaving every row unserved. No gradient is needed: the
fitness is piecewise constant in the prices, which is why a rank-based evolution strategy fits it.
Its plateaus are wide (many prices repair to the same plan), so members of equal objective are ranked
by their dual value L(prices), higher first: on a plateau the search climbs the dual, whose optimum is
where the prices are most informative for the repair. CMA-ES sees only ranks, so the population is
told its lexicographic rank by (objective, -L).

The box: m in [lo, hi] (default [-3, 3]), the upper end raised per cell to reach the price at which a
GPU-hour there costs as much as the dearest row's penalty (problem.unserved_usd / hours): only such
prices make the paths themselves leave rows unserved, which a budget (priced inside the procurement
LP, not by a cell price) can require.

CMA-ES (covariance matrix adaptation evolution strategy): N. Hansen and A. Ostermeier, "Completely
derandomized self-adaptation in evolution strategies", Evolutionary Computation 9(2), 2001; the update
rules are those of N. Hansen, "The CMA Evolution Strategy: A Tutorial", arXiv:1604.00772 (eqs. 39-58),
as implemented by the maintained `cmaes` library (M. Nomura and M. Shibata, "cmaes: A Simple yet
Practical Python Library for CMA-ES", arXiv:2402.01373), `cmaes.CMA`, used here as is: ask P members,
tell their fitness. Population P = CMA's default 4 + floor(3 ln(S x Q)) clipped to [8, 16]; the mean
starts at m = 0 (the reference prices), step size sigma0 (default 0.5) in log space.

Per generation the path search of the whole population is one compiled call: paths.best_paths vmapped
over stacked prices [P, S, Q] (`population_paths`, chunked over workloads as paths.solve_paths does);
repair and improvement then run per member on the host.

Bound. Any prices >= 0 give a lower bound L(prices) (fleet.dual, weak duality). Every member's L is
kept (its path values come from the same vmapped call; the procurement term is one small LP), with
L at the start prices; the best is reported, so the gap (objective - bound) / objective is certified.

A last polish solves the integer program restricted to the pairs some member's paths chose
(lagrangian.polish), when that program is small. Stops after `max_generations`, when the gap <= tol, when neither the best objective nor the best bound
has moved for `patience` generations, or when CMA-ES reports convergence. Deterministic for a fixed
seed (CMA's sampler is seeded; everything else is deterministic). Generation 0 is the start prices
themselves; where no limit binds its plan is optimal (gap 0) and no generation runs.
"""

from __future__ import annotations

import time
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from cmaes import CMA

from pdfleet.search import fleet, paths, procure
from pdfleet.search.lagrangian import POLISH_PAIRS, gap, polish, start_prices
from pdfleet.search.problem import FleetProblem, max_usage

PATH_CELLS = 8192  # population members x workloads per compiled path-search call (paths.solve_paths' chunk)


class Result(NamedTuple):
    plan: fleet.FleetPlan
    lower_bound_usd: float
    prices: np.ndarray  # [S, Q] the prices of the best bound
    iterations: int  # generations run
    seconds: float


@jax.jit
def _vmapped_paths(x: paths.PathInputs, prices, hours, switch):
    """best_paths for every member: prices [P, S, Q] -> (pair_c [P, Q, W], pair_d [P, Q, W], value [P, W])."""
    return jax.vmap(paths.best_paths, in_axes=(None, 0, None, None))(x, prices, hours, switch)


def population_paths(problem: FleetProblem, prices: np.ndarray, chunk: int | None = None):
    """Cheapest paths of every workload for every member of a population, prices [P, S, Q] (USD per
    GPU-hour). Workloads go in chunks of `chunk` (default PATH_CELLS // P), padded to one shape, so a
    population is one compiled call per chunk. Returns NumPy (pair_c [P, Q, W], pair_d [P, Q, W] with -1
    = unserved, value [P, W] in USD over the horizon incl. switches), equal to paths.best_paths member
    by member."""
    econ = problem.economics
    prices = jnp.asarray(prices)
    n_pop = prices.shape[0]
    w = len(problem.workloads)
    chunk = max(1, PATH_CELLS // max(n_pop, 1)) if chunk is None else chunk
    cs, ds, vs = [], [], []
    for lo in range(0, w, chunk):
        hi = min(lo + chunk, w)
        x = paths._pad_workloads(paths.inputs(problem, lo, hi), chunk if w > chunk else hi - lo)
        c, d, v = _vmapped_paths(x, prices, econ.hours, econ.switch_usd)
        n = hi - lo
        cs.append(np.asarray(c)[:, :, :n])
        ds.append(np.asarray(d)[:, :, :n])
        vs.append(np.asarray(v)[:, :n])
    return np.concatenate(cs, 2), np.concatenate(ds, 2), np.concatenate(vs, 1)


def reference_prices(problem: FleetProblem) -> np.ndarray:
    """[S, Q] ref of prices = ref x exp(m): the start prices, a zero price lifted to the least positive
    start price of its quarter (1 USD per GPU-hour when a quarter has none)."""
    start = start_prices(problem)
    positive = np.where(start > 0, start, np.inf)
    floor = np.min(positive, axis=0, keepdims=True)
    floor = np.where(np.isfinite(floor), floor, 1.0)
    return np.where(start > 0, start, floor)


def search_bounds(problem: FleetProblem, ref: np.ndarray, bounds: tuple[float, float]) -> np.ndarray:
    """[S x Q, 2] box of m: [lo, hi], the upper end raised where needed so that a cell's price can reach
    the price at which one GPU-hour there costs as much as leaving the dearest row unserved for the
    quarter (max unserved_usd / hours): above it a cell is priced out of every path (all its workloads
    go to other skus or unserved), so prices that high are all the search ever needs."""
    lo, hi = bounds
    top = float(np.max(problem.unserved_usd, initial=0.0)) / problem.economics.hours
    upper = np.maximum(hi, np.log(np.maximum(top, 1e-12) / ref) + 0.5).ravel()
    return np.stack([np.full(upper.shape, lo), upper], axis=1)


def population_size(n_dim: int) -> int:
    """CMA-ES's default 4 + floor(3 ln n) (Hansen's tutorial, eq. 48), clipped to [8, 16]."""
    return int(np.clip(4 + np.floor(3 * np.log(max(n_dim, 1))), 8, 16))


def lexicographic_ranks(primary: np.ndarray, secondary: np.ndarray) -> np.ndarray:
    """[P] rank (0 = best) of each member by primary, ties broken by secondary, then by index. CMA-ES
    uses only the order of the fitness values (Hansen's tutorial, eq. 39), so ranks lose nothing."""
    order = np.lexsort((np.arange(len(primary)), secondary, primary))
    ranks = np.empty(len(primary))
    ranks[order] = np.arange(len(primary), dtype=np.float64)
    return ranks


def _dual_value(econ, prices: np.ndarray, supply_max: np.ndarray, path_values: np.ndarray) -> float:
    """L(prices) from the members' path values [W] and the procurement LP; -inf where HiGHS fails on
    the LP (then this member simply gives no bound)."""
    try:
        return float(path_values.sum()) + procure.dual(econ, prices, supply_max)[0]
    except RuntimeError:
        return -np.inf


def _plan_at(problem: FleetProblem, c: np.ndarray, d: np.ndarray, prices: np.ndarray) -> fleet.FleetPlan:
    return fleet.improve(problem, fleet.repair(problem, c, d, prices))


def solve(problem: FleetProblem, seed: int = 0, max_generations: int = 30, tol: float = 1e-4,
          population: int | None = None, sigma0: float = 0.5, bounds: tuple[float, float] = (-3.0, 3.0),
          patience: int = 10, progress: Callable[[int, int, float], None] | None = None) -> Result:
    """CMA-ES over log-multipliers of the start prices; see the module docstring. progress(generation,
    max_generations, gap) after every generation."""
    t0 = time.perf_counter()
    econ = problem.economics
    supply_max = max_usage(problem)
    start = start_prices(problem)
    ref = reference_prices(problem)
    shape = start.shape  # [S, Q]
    n_dim = int(np.prod(shape))

    # Generation 0: the start prices themselves (the exact plan where no limit binds).
    bound0 = fleet.dual(problem, start, supply_max)
    best_bound, best_prices = bound0.value_usd, start
    plan = _plan_at(problem, bound0.pair_c, bound0.pair_d, start)
    # Fitness of a plan with no procurement (limits broken): worse than leaving every row unserved.
    worst = 2.0 * float(np.sum(problem.unserved_usd)) + 1.0
    if gap(plan.objective_usd, best_bound) <= tol:
        if progress:
            progress(0, max_generations, gap(plan.objective_usd, best_bound))
        return Result(plan, best_bound, best_prices, 0, time.perf_counter() - t0)

    size = population or population_size(n_dim)
    cma = CMA(mean=np.zeros(n_dim), sigma=sigma0, bounds=search_bounds(problem, ref, bounds), seed=seed,
              population_size=size)
    stall, generation = 0, 0
    seen = {"c": [bound0.pair_c], "d": [bound0.pair_d]}  # every member's paths: the polish's columns
    for generation in range(1, max_generations + 1):
        ms = np.stack([cma.ask() for _ in range(cma.population_size)])  # [P, S x Q]
        prices = ref[None] * np.exp(ms.reshape(-1, *shape))  # [P, S, Q]
        pc, pd, values = population_paths(problem, prices)
        seen["c"] += list(pc)
        seen["d"] += list(pd)
        objective, dual_value, improved = np.empty(len(ms)), np.empty(len(ms)), False
        for i in range(len(ms)):
            dual_value[i] = _dual_value(econ, prices[i], supply_max, values[i])
            if dual_value[i] > best_bound:
                improved |= dual_value[i] > best_bound + 1e-6 * abs(best_bound)
                best_bound, best_prices = float(dual_value[i]), prices[i]
            trial = _plan_at(problem, pc[i], pd[i], prices[i])
            objective[i] = trial.objective_usd if np.isfinite(trial.objective_usd) else worst
            if trial.objective_usd < plan.objective_usd - fleet.EPS * max(1.0, abs(plan.objective_usd)):
                plan, improved = trial, True
        cma.tell(list(zip(ms, lexicographic_ranks(objective, -dual_value))))
        stall = 0 if improved else stall + 1
        g = gap(plan.objective_usd, best_bound)
        if progress:
            progress(generation, max_generations, g)
        if g <= tol or stall >= patience or cma.should_stop():
            break
    if gap(plan.objective_usd, best_bound) > tol:  # the same restricted-program polish as lagrangian's
        plan = polish(problem, plan, seen, np.asarray(best_prices, np.float64), POLISH_PAIRS)
    return Result(plan, best_bound, np.asarray(best_prices, np.float64), generation, time.perf_counter() - t0)
