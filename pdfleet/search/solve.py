"""One interface for every fleet solver: problem in, a plan (pair per row + procurement), a certified
lower bound and the limits' dual prices out. The latency predictions of the chosen plan are computed
afterwards by one shared stage (pdfleet/chosen.py), whatever the solver.

- exact: every workload's cheapest path with each sku at its cheapest source price, ignoring limits.
  Optimal (gap 0) when no limit binds; when one does, the plan breaks it and says so.
- lagrangian: relaxed-gradient search (search/lagrangian.py).
- evolution: CMA-ES over the same prices (search/evolution.py).
- milp: HiGHS on the whole integer program (search/milp.py), the reference.
- auto: exact when no limit binds, else lagrangian; on small fleets milp cross-checks and wins ties.
"""

from __future__ import annotations

import time
from typing import Callable, NamedTuple

import numpy as np

from pdfleet.search import fleet, lagrangian, milp, paths, procure
from pdfleet.search.problem import FleetProblem

SOLVERS = ("auto", "exact", "lagrangian", "evolution", "milp")
MILP_CROSSCHECK_PAIRS = 20_000  # auto runs milp beside lagrangian up to this many pair variables
# HiGHS branch-and-bound nodes of the cross-check: a work limit (a time limit would make the plan kept
# depend on the machine's speed).
CROSSCHECK_NODES = 5_000


class Outcome(NamedTuple):
    solver: str  # the solver whose plan was kept
    plan: fleet.FleetPlan
    lower_bound_usd: float
    prices: np.ndarray  # [S, Q] dual prices of the bound (USD per GPU-hour)
    budget_price: np.ndarray  # [Q]
    seconds: dict  # per solver run
    costs: dict  # cost_usd of each solver run
    breaks_limits: bool  # the plan needs more than some limit allows (exact only)
    notes: list


def _unlimited(econ):
    inf = np.full_like(econ.inventory, np.inf)
    return econ._replace(inventory=inf, rent_max=inf, buy_max=inf, budget=np.full_like(econ.budget, np.inf))


def exact(problem: FleetProblem) -> tuple[fleet.FleetPlan, fleet.Bound, bool]:
    """(plan, bound at the start prices, breaks_limits). A plan that breaks limits is costed as if they
    did not exist, so its numbers still mean something."""
    prices = lagrangian.start_prices(problem)
    bound = fleet.dual(problem, prices)
    plan = fleet.evaluate(problem, bound.pair_c, bound.pair_d)
    if plan.procurement is not None:
        return plan, bound, False
    free = problem._replace(economics=_unlimited(problem.economics))
    loose = fleet.evaluate(free, bound.pair_c, bound.pair_d)
    return loose, bound, True


def exact_settles(objective_usd: float, bound_usd: float, breaks: bool) -> bool:
    """auto keeps the exact plan: it breaks no limit and meets its own bound (up to the float32 slack of the
    path search), so no limit binds and it is optimal."""
    return not breaks and lagrangian.gap(objective_usd, bound_usd) <= 2 * paths.RELATIVE_SLACK


def run(problem: FleetProblem, solver: str = "auto", seed: int = 0,
        progress: Callable[[str, int, int, float], None] | None = None, time_limit: float | None = None) -> Outcome:
    seconds, costs, notes = {}, {}, []

    def timed(name, fn):
        t0 = time.perf_counter()
        out = fn()
        seconds[name] = time.perf_counter() - t0
        return out

    def report(name):
        return (lambda i, n, g: progress(name, i, n, g)) if progress else None

    if solver in ("auto", "exact"):
        plan, bound, breaks = timed("exact", lambda: exact(problem))
        costs["exact"] = plan.objective_usd
        if solver == "exact" or exact_settles(plan.objective_usd, bound.value_usd, breaks):
            return Outcome("exact", plan, bound.value_usd, bound.prices, bound.budget_price, seconds, costs, breaks,
                           notes)
        notes.append("shared limits bind (inventory, owned GPUs, budget or purchase caps): searched with lagrangian")
    if solver == "milp":
        res = timed("milp", lambda: milp.solve(problem, time_limit=time_limit))
        costs["milp"] = res.plan.objective_usd
        if not res.optimal:
            notes.append(f"milp stopped before proving optimality: {res.message}")
        bound = fleet.dual(problem, lagrangian.start_prices(problem))
        return Outcome("milp", res.plan, res.lower_bound_usd, bound.prices, bound.budget_price, seconds, costs, False,
                       notes)
    if solver == "evolution":
        from pdfleet.search import evolution

        res = timed("evolution", lambda: evolution.solve(problem, seed=seed, progress=report("evolution")))
        costs["evolution"] = res.plan.objective_usd
        bound = fleet.dual(problem, res.prices)
        return Outcome("evolution", res.plan, res.lower_bound_usd, res.prices, bound.budget_price, seconds, costs,
                       False, notes)
    res = timed("lagrangian", lambda: lagrangian.solve(problem, progress=report("lagrangian")))
    costs["lagrangian"] = res.plan.objective_usd
    best = Outcome("lagrangian", res.plan, res.lower_bound_usd, res.prices,
                   fleet.dual(problem, res.prices).budget_price, seconds, costs, False, notes)
    return cross_check(problem, best) if solver == "auto" else best


def cross_check(problem: FleetProblem, best: Outcome) -> Outcome:
    """auto's milp cross-check on a small fleet (up to MILP_CROSSCHECK_PAIRS pair variables): HiGHS under a
    node limit; the cheaper plan wins and the larger bound is kept. Larger fleets: `best` unchanged."""
    if milp.size(problem) > MILP_CROSSCHECK_PAIRS:
        return best
    t0 = time.perf_counter()
    ref = milp.solve(problem, node_limit=CROSSCHECK_NODES)
    out = best._replace(seconds={**best.seconds, "milp": time.perf_counter() - t0},
                        costs={**best.costs, "milp": ref.plan.objective_usd},
                        lower_bound_usd=max(best.lower_bound_usd, ref.lower_bound_usd))
    if ref.plan.objective_usd < best.plan.objective_usd - 1e-6 * max(1.0, abs(best.plan.objective_usd)):
        note = (f"milp cross-check found a cheaper plan than {best.solver} "
                f"({lagrangian.gap(best.plan.objective_usd, ref.plan.objective_usd):.3%} less): kept milp's")
        out = out._replace(solver="milp", plan=ref.plan, notes=[*best.notes, note])
    return out


def binding_limits(problem: FleetProblem, outcome: Outcome) -> list[dict]:
    """Cells whose supply cap is reached, with their dual price and what one more GPU there would save
    per hour (dual price - rent price: the extra GPU would be rented); budgets with their shadow price."""
    plan, econ = outcome.plan, problem.economics
    if plan.procurement is None:
        return []
    use = fleet._usage(problem, plan.pair_c, plan.pair_d)
    cap = procure.supply_cap(econ)
    starved = _starved(problem, plan, use, cap)
    out = []
    for s_i, q_i in zip(*np.nonzero((use >= cap - 1e-6) | (starved != ""))):
        if cap[s_i, q_i] <= 0 and use[s_i, q_i] <= 0:
            continue
        price = float(outcome.prices[s_i, q_i])
        which = "inventory" if cap[s_i, q_i] >= econ.inventory[s_i, q_i] - 1e-9 else "owned + buy_max + rent_max"
        out.append({
            "limit": which, "sku": problem.skus[s_i], "quarter": problem.quarters[q_i],
            "used_gpus": float(use[s_i, q_i]), "cap_gpus": float(cap[s_i, q_i]),
            "dual_usd_per_gpu_hour": price,
            "one_more_gpu_saves_usd_per_hour": max(0.0, price - float(econ.rent_price[s_i])),
            "starves": starved[s_i, q_i].split(",") if starved[s_i, q_i] else [],
        })
    for q_i in np.nonzero(outcome.budget_price > 1e-9)[0]:
        out.append({"limit": "budget", "quarter": problem.quarters[q_i],
                    "budget_usd_per_hour": float(econ.budget[q_i]),
                    "one_more_usd_per_hour_saves_usd": float(outcome.budget_price[q_i])})
    return out


def _starved(problem: FleetProblem, plan: fleet.FleetPlan, use: np.ndarray, cap: np.ndarray) -> np.ndarray:
    """[S, Q] comma-joined workloads left unserved for want of GPUs in that cell: each unserved row's
    cheapest pair ignoring limits (fleet.cheapest_needs) would take the cell past its cap."""
    out = np.full(use.shape, "", dtype=object)
    rows = np.argwhere(plan.limited == "inventory")
    for (q_i, w_i), need in zip(rows, fleet.cheapest_needs(problem, rows)):
        for s_i in np.nonzero((need > 0) & (use[:, q_i] + need > cap[:, q_i] + 1e-6))[0]:
            name = problem.workloads[w_i]
            out[s_i, q_i] = f"{out[s_i, q_i]},{name}" if out[s_i, q_i] else name
    return out
