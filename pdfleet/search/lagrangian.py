"""The relaxed-gradient solver: dual prices on every (sku, quarter) cell, ascended with optax.

L(lambda) (search/fleet.py) is concave and piecewise linear; its subgradient at lambda is
H x (usage - supply): the GPUs the workloads' cheapest paths use at those prices minus what the
procurement term supplies. The ascent takes Polyak steps (optax.polyak_sgd on -L with the best plan's
cost, capped at 10% above the bound, as the target value), projected onto lambda >= 0; the step scale
halves when the bound stalls for 5 steps.
Every few steps the current paths are repaired into a feasible plan and improved (fleet.repair,
fleet.improve); the cheapest plan and the best bound are kept, so the reported gap is certified.
"""

from __future__ import annotations

import time
from typing import Callable, NamedTuple

import jax.numpy as jnp
import numpy as np
import optax

from pdfleet.search import fleet
from pdfleet.search.problem import FleetProblem, base_prices, max_usage


class Result(NamedTuple):
    plan: fleet.FleetPlan
    lower_bound_usd: float
    prices: np.ndarray  # [S, Q] the prices of the best bound
    iterations: int
    seconds: float


def start_prices(problem: FleetProblem) -> np.ndarray:
    """Base prices (the cheapest source of each sku); a sku with no source at all gets 10x the dearest
    rent, a finite price no plan will pay."""
    econ = problem.economics
    prices = base_prices(econ)
    return np.where(np.isfinite(prices), prices, 10.0 * float(np.max(econ.rent_price)))


def gap(cost: float, bound: float) -> float:
    """(cost - bound) / cost, 0 when both are 0, inf when there is no plan."""
    if not np.isfinite(cost):
        return float("inf")
    if cost <= 0:
        return 0.0
    return max(0.0, (cost - bound) / cost)


def solve(problem: FleetProblem, max_iter: int = 150, tol: float = 1e-4, repair_every: int = 10,
          progress: Callable[[int, int, float], None] | None = None, prices=None) -> Result:
    t0 = time.perf_counter()
    econ = problem.economics
    supply_max = max_usage(problem)
    prices = start_prices(problem) if prices is None else np.asarray(prices, np.float64)
    bound = fleet.dual(problem, prices, supply_max)
    best_bound = bound
    plan = fleet.improve(problem, fleet.repair(problem, bound.pair_c, bound.pair_d, prices), prices)
    scale, stall, it = 1.0, 0, 0
    for it in range(1, max_iter + 1):
        if gap(plan.objective_usd, best_bound.value_usd) <= tol:
            break
        grad = econ.hours * (bound.usage - bound.supply)  # d L / d prices
        norm2 = float(np.sum(grad**2))
        if norm2 == 0.0:
            break
        # Polyak's target: the best plan's cost, but never more than 10% above the bound (a plan with
        # unserved rows carries huge penalties, and a far target makes steps that overshoot).
        lb = best_bound.value_usd
        cap = lb + 0.1 * abs(lb) + 1.0
        target = min(plan.objective_usd, cap) if np.isfinite(plan.objective_usd) else cap
        step = optax.polyak_sgd(max_learning_rate=1e6, scaling=scale, f_min=-target)
        updates, _ = step.update(jnp.asarray(-grad), step.init(jnp.asarray(prices)), jnp.asarray(prices),
                                 value=-bound.value_usd)
        prices = np.maximum(np.asarray(optax.apply_updates(jnp.asarray(prices), updates), np.float64), 0.0)
        bound = fleet.dual(problem, prices, supply_max)
        if bound.value_usd > best_bound.value_usd + 1e-9 * abs(best_bound.value_usd):
            best_bound, stall = bound, 0
        else:
            stall += 1
            if stall >= 5:
                scale, stall = scale / 2.0, 0
        if it % repair_every == 0 or scale < 1e-3:
            trial = fleet.improve(problem, fleet.repair(problem, bound.pair_c, bound.pair_d, prices), prices)
            if trial.objective_usd < plan.objective_usd:
                plan = trial
        if progress:
            progress(it, max_iter, gap(plan.objective_usd, best_bound.value_usd))
        if scale < 1e-3:
            break
    trial = fleet.improve(problem, fleet.repair(problem, best_bound.pair_c, best_bound.pair_d, best_bound.prices),
                          best_bound.prices)
    if trial.objective_usd < plan.objective_usd:
        plan = trial
    return Result(plan, best_bound.value_usd, best_bound.prices, it, time.perf_counter() - t0)
