"""The relaxed-gradient solver: dual prices on every (sku, quarter) cell, ascended with optax.

The problem is first pruned of dominated candidates (search/prune.py, exact) and the prices come from
column generation over whole workload paths (search/master.py, Dantzig-Wolfe), whose master LP reaches
the maximum of L itself: on gen_fleet 20,000 rows 35,222.9 USD/h in 13 rounds, where column generation
over single pairs without switch costs stopped at 35,147.6 and the subgradient ascent alone 26% short.

L(lambda) (search/fleet.py) is concave and piecewise linear; its subgradient at lambda is
H x (usage - supply): the GPUs the workloads' cheapest paths use at those prices minus what the
procurement term supplies. The ascent takes Polyak steps (optax.polyak_sgd on -L with the best plan's
cost, capped at 10% above the bound, as the target value), projected onto lambda >= 0; the step scale
halves when the bound stalls for 5 steps; from column-generation prices it stops after PATIENCE steps
without a better bound.
Primal plans: the first from the master's solution rounded to each workload's heaviest path (and, on
small fleets, the master solved with whole paths; the paths at the start prices without a master), then,
when the master has not converged, every few ascent steps from the current paths; each is repaired into a
feasible plan and improved (fleet.repair, fleet.improve, fleet.tidy). The cheapest plan and the best
bound are kept, so the reported gap is certified. A last polish solves a restricted integer program
under a HiGHS node limit (a work limit: the plan does not depend on the machine's speed).
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


POLISH_PAIRS = 60_000  # restricted programs up to this many pair variables are solved by HiGHS
# The integer master (whole paths, search/master.py) is solved on fleets with at most this many path columns.
# gen_fleet 1,000 rows (1,728 columns): 2.8 s, 1,718.28 USD/h against 1,732.55 from the rounded master;
# 20,000 rows (28,003 columns): 128 s for 35,229.54 against 35,234.77.
INTEGER_COLUMNS = 5_000
# HiGHS branch-and-bound nodes of the polish: a work limit, not a time limit, so a plan does not depend
# on the machine's speed (tests/test_determinism.py). gen_fleet 2,000 rows (restricted program under
# POLISH_PAIRS), whole lagrangian: 1 node 17 s, 20 nodes 26 s, 100 nodes 73 s, 2,000 nodes ~215 s, the same
# plan from 1 to 100 nodes (gap 0.41%); without the polish 2.9 s and gap 2.0%.
POLISH_NODES = 20
# The polish runs only when the plan is further than this (and than the solver's tol) from the bound.
# gen_fleet 1,000 rows: after the path master the plan is 0.25% above the bound; the polish took 30 s
# there and found nothing cheaper.
POLISH_GAP = 0.005
IMPROVE_ROUNDS = 16  # fleet.improve rounds per primal
TIDY_ROUNDS = 3  # fleet.tidy + improve rounds per primal, while the cost falls
PATIENCE = 10  # ascent steps without a better bound before it stops, from column-generation prices
FILL_PAIRS = 1_000  # pair variables of least reduced cost the polish adds (more made HiGHS time out at 1,000 rows)


def solve(problem: FleetProblem, max_iter: int = 80, tol: float = 1e-4, repair_every: int = 10,
          progress: Callable[[int, int, float], None] | None = None, prices=None,
          polish_pairs: int = POLISH_PAIRS, polish_nodes: int | None = None, prune: bool = True,
          master_rounds: int = 40, eta: float | None = None, patience: int | None = None) -> Result:
    """The ascent of the module docstring on `problem` after exact dominance pruning (search/prune.py;
    prune=False skips it), started from column generation over paths (search/master.py, at most
    master_rounds rounds; 0 starts from `prices` or the cheapest source prices, and the ascent alone
    climbs from there; a converged master leaves nothing to ascend); the plan returned is costed on the unpruned
    problem. eta: the first step scale relative to a typical price (default 1, or 0.1 from column-generation
    prices, which are near the dual optimum: measured on gen_fleet 20,000 rows, 50 steps at scale 1 from
    them never raised the bound). patience: steps without a better bound after which the ascent stops
    (default PATIENCE from column-generation prices: there the 35 steps of the halving schedule never
    raised the bound on gen_fleet 20,000 rows; unlimited otherwise). The plan of a bound whose prices
    were already repaired is not computed again."""
    from pdfleet.search import master
    from pdfleet.search import prune as pruning

    t0 = time.perf_counter()
    full = problem
    problem = pruning.prune(problem) if prune else problem
    econ = problem.economics
    supply_max = max_usage(problem)
    prices = start_prices(problem) if prices is None else np.asarray(prices, np.float64)
    top = price_ceiling(problem)
    unit = float(np.median(prices[prices > 0])) if (prices > 0).any() else 1.0
    candidates = []  # (pair_c, pair_d) [Q, W] the first plans start from
    if master_rounds > 0:
        start = master.generate(problem, prices, rounds=master_rounds, supply_max=supply_max, progress=progress)
        # the polish keeps the columns' pairs (every entering path) and the best bound's paths; the paths of
        # every priced point are not kept (at 1,000,000 rows that would be ~0.7 GB for a polish that never runs)
        seen = _visit(None, start.best)
        seen["keep"] = master.pairs_of(start.columns, problem.options.pre_n.shape[1:])
        bound = start.best
        prices = bound.prices
        # the master's solution rounded; when HiGHS solved no master LP, bound's own paths (None)
        candidates.append(master.round_paths(problem, start.columns, start.weights) if np.isfinite(start.lp_usd)
                          else None)
        if len(start.columns.owner) <= INTEGER_COLUMNS:
            whole = master.solve_integer(problem, start.columns, start.weights, supply_max, POLISH_NODES,
                                         free=np.ones(problem.demand_rps.shape[1], bool))
            if whole is not None:
                candidates.append(whole)
        if start.lp_usd - bound.value_usd <= master.TOL * max(1.0, abs(start.lp_usd)):
            max_iter = 0  # the master converged: bound is the Lagrangian dual's maximum, no ascent can raise it
    else:
        bound = fleet.dual(problem, prices, supply_max)
        seen = _visit(None, bound)
    eta = (0.1 if master_rounds > 0 else 1.0) if eta is None else eta
    patience = (PATIENCE if master_rounds > 0 else max_iter + 1) if patience is None else patience
    best_bound = bound
    # the first plan: the master's solution rounded, and its integer solution on small fleets (else the
    # paths at the start prices). gen_fleet 20,000 rows: the rounded master repaired is 0.025% above the
    # bound (the old pair LP's rounding: 1.15%).
    plan = None
    for choice in candidates or [None]:
        trial = _primal(problem, bound, choice, tol)
        if plan is None or trial.objective_usd < plan.objective_usd:
            plan = trial
    repaired = [bound.prices]  # prices whose plan was computed (the same prices give the same plan)
    stall, since_best, it = 0, 0, 0
    for it in range(1, max_iter + 1):
        if gap(plan.objective_usd, best_bound.value_usd) <= tol:
            break
        grad = econ.hours * (bound.usage - bound.supply)  # d L / d prices
        norm2 = float(np.sum(grad**2))
        if norm2 == 0.0:
            break
        target = plan.objective_usd if np.isfinite(plan.objective_usd) else 2.0 * abs(best_bound.value_usd) + 1.0
        # Polyak's step, but no price moves by more than eta x a typical price per step.
        limit = eta * unit / (float(np.max(np.abs(grad))) + 1e-30)
        step = optax.polyak_sgd(max_learning_rate=limit, scaling=eta, f_min=-target)
        updates, _ = step.update(jnp.asarray(-grad), step.init(jnp.asarray(prices)), jnp.asarray(prices),
                                 value=-bound.value_usd)
        prices = np.clip(np.asarray(optax.apply_updates(jnp.asarray(prices), updates), np.float64), 0.0, top)
        bound = fleet.dual(problem, prices, supply_max)
        seen = _visit(seen, bound)
        if bound.value_usd > best_bound.value_usd + 1e-9 * abs(best_bound.value_usd):
            best_bound, stall, since_best = bound, 0, 0
        else:
            stall, since_best = stall + 1, since_best + 1
            if stall >= 5:  # restart from the best prices with half the step
                eta, stall, prices, bound = eta / 2.0, 0, best_bound.prices, best_bound
        if it % repair_every == 0 and not _seen_prices(repaired, bound.prices):
            repaired.append(bound.prices)
            trial = _primal(problem, bound, tol=tol)
            if trial.objective_usd < plan.objective_usd:
                plan = trial
        if progress:
            progress(it, max_iter, gap(plan.objective_usd, best_bound.value_usd))
        if eta < 1e-3 or since_best >= patience:
            break
    if not _seen_prices(repaired, best_bound.prices):
        trial = _primal(problem, best_bound, tol=tol)
        if trial.objective_usd < plan.objective_usd:
            plan = trial
    if gap(plan.objective_usd, best_bound.value_usd) > max(tol, POLISH_GAP):
        plan = polish(problem, plan, seen, best_bound.prices, polish_pairs, polish_nodes,
                      bound_usd=best_bound.value_usd)
    if prune:
        plan = fleet.evaluate(full, plan.pair_c, plan.pair_d)
    return Result(plan, best_bound.value_usd, best_bound.prices, it, time.perf_counter() - t0)


def price_ceiling(problem: FleetProblem) -> float:
    """No dual price needs to exceed the largest penalty of a row per GPU-hour: at that price every
    row would rather go unserved than use one GPU."""
    return float(np.max(problem.unserved_usd, initial=1.0)) / problem.economics.hours + \
        float(np.max(problem.economics.rent_price))


def _seen_prices(seen: list, prices: np.ndarray) -> bool:
    return any(np.array_equal(p, prices) for p in seen)


def _primal(problem: FleetProblem, bound: fleet.Bound, choice: tuple | None = None,
            tol: float = 1e-4) -> fleet.FleetPlan:
    """A feasible plan from the paths of a bound (or another choice (pair_c, pair_d)) at its prices:
    repair; unless that is within tol of the bound, improve, then tidy and improve again while that lowers
    the cost (at most TIDY_ROUNDS)."""
    c, d = (bound.pair_c, bound.pair_d) if choice is None else choice
    plan = fleet.repair(problem, c, d, bound.prices)
    if gap(plan.objective_usd, bound.value_usd) <= tol:
        return plan  # already within the search's tolerance of the bound (the master's rounding, at scale)
    plan = fleet.improve(problem, plan, rounds=IMPROVE_ROUNDS)
    for _ in range(TIDY_ROUNDS):
        trial = fleet.improve(problem, fleet.tidy(problem, plan, bound.prices), rounds=IMPROVE_ROUNDS)
        if trial.objective_usd >= plan.objective_usd - fleet.EPS * max(1.0, abs(plan.objective_usd)):
            break
        plan = trial
    return plan


def _visit(seen, bound: fleet.Bound):
    """The paths of every dual step (the pairs a restricted program keeps): {'c': [...], 'd': [...]}."""
    if seen is None:
        return {"c": [bound.pair_c.copy()], "d": [bound.pair_d.copy()]}
    seen["c"].append(bound.pair_c.copy())
    seen["d"].append(bound.pair_d.copy())
    return seen


def polish(problem: FleetProblem, plan: fleet.FleetPlan, seen, prices, max_pairs: int, nodes: int | None = None,
           cheapest: int = 2, bound_usd: float | None = None) -> fleet.FleetPlan:
    """Primal polish: the integer program (milp.py) restricted, per workload, to the pairs the dual
    search visited (with column generation's restricted-LP pairs, seen['keep'] [W, Cp, Cd]), the plan's
    own and each row's `cheapest` pairs at prices, when that is at most max_pairs variables; kept if
    cheaper. A plan of the restricted program is a plan of the full one, so the certified bound still
    holds. Up to FILL_PAIRS more pair variables (max_pairs in all) are added: the pairs of least reduced cost (cost at prices
    minus the row's cheapest) up to the gap objective - bound_usd: a pair of an optimal plan costs at
    most that much above its row's cheapest at any prices when the paths need no switch (weak duality
    applied to that plan), so these are the pairs an optimal plan can use (seed 13 of the random fleets:
    its optimal pair ties at the dual prices but is neither visited nor among the 2 cheapest)."""
    from pdfleet.search import milp, paths

    o = problem.options
    q, w, cp, cd = o.pre_n.shape
    keep = np.zeros((w, cp, cd), bool)
    best, cost, reduced = paths.row_cheapest(problem, prices, cheapest)  # [Q, W, k], [Q, W, k], [W, Cp x Cd]
    finite = cost < np.inf
    wk = np.broadcast_to(np.arange(w)[None, :, None], best.shape)
    keep[wk[finite], best[finite] // cd, best[finite] % cd] = True
    wi = np.arange(w)[None, :]
    if "keep" in seen:
        keep |= seen["keep"]
    for c, d in zip(seen["c"] + [plan.pair_c], seen["d"] + [plan.pair_d]):
        ok = c >= 0
        keep[np.broadcast_to(wi, c.shape)[ok], c[ok], d[ok]] = True
    if int(keep.sum()) * q > max_pairs:
        return plan
    if bound_usd is not None and np.isfinite(plan.objective_usd):
        _fill_by_reduced_cost(keep, reduced, plan.objective_usd - bound_usd, min(max_pairs, int(keep.sum()) * q + FILL_PAIRS) // q)
    restricted = problem._replace(options=o._replace(pre_n=np.where(keep[None], o.pre_n, np.inf)))
    res = milp.solve(restricted, node_limit=POLISH_NODES if nodes is None else nodes)
    if res.plan.procurement is None:
        return plan
    trial = fleet.evaluate(problem, res.plan.pair_c, res.plan.pair_d)
    return trial if trial.objective_usd < plan.objective_usd else plan


def _fill_by_reduced_cost(keep: np.ndarray, reduced: np.ndarray, gap_usd: float, most: int) -> None:
    """Add to keep [W, Cp, Cd] the (workload, pair)s of least reduced cost (reduced [W, Cp x Cd]: pair cost
    at prices minus the row's cheapest, least over the quarters; paths.row_cheapest) at most gap_usd,
    while keep has at most `most` entries."""
    w, cp, cd = keep.shape
    reduced = reduced.reshape(w, cp, cd)
    candidate = ~keep & np.isfinite(reduced) & (reduced <= gap_usd)
    room = most - int(keep.sum())
    if room <= 0 or not candidate.any():
        return
    idx = np.flatnonzero(candidate)
    take = idx[np.argsort(reduced.ravel()[idx], kind="stable")[:room]]
    keep.ravel()[take] = True
