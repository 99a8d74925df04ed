"""Scenarios of one fleet as one block-diagonal fleet problem, searched in one solver run.

Scenarios (pdfleet/scenarios.py) share workloads, quarters and candidates and differ in demand, prices
and inventory. Stacked, scenario k's workloads use only scenario k's copy of every sku: no limit couples
two scenarios (inventory, owned, buy and rent caps are per sku and quarter), so the stacked program is the
scenarios' programs side by side. Its optimum is the sum of theirs, every solver step (the vectorized
argmin, repair, improvement) covers every scenario at once, and the Lagrangian dual separates: the bound
of scenario k is the dual of its own problem at its slice of the prices (Geoffrion 1974, "Lagrangean
relaxation for integer programming": the relaxation of a block-diagonal program decomposes by block).

A budget is one limit over every sku of a quarter; stacked it would couple the scenarios, so fleets with
a budget are not stacked (stackable says why) and their scenarios are searched one by one.
"""

from __future__ import annotations

import time

import numpy as np

from pdfleet.search import fleet
from pdfleet.search.problem import Economics, FleetProblem, Options

PER_QUARTER = ("pre_n", "dec_n", "pinned_prefill_need")  # Options fields [Q, W, ...]; the rest are [W, ...]


def stackable(problems: list[FleetProblem]) -> str | None:
    """None when the problems can be stacked, else the reason they cannot."""
    first = problems[0]
    if any(np.isfinite(p.economics.budget).any() for p in problems):
        return "a budget couples every sku of a quarter"
    if any(p.quarters != first.quarters or p.workloads != first.workloads or p.skus != first.skus for p in problems):
        return "scenarios differ in quarters, workloads or skus"
    e = first.economics
    if any((p.economics.hours, p.economics.switch_usd) != (e.hours, e.switch_usd) for p in problems):
        return "scenarios differ in hours_per_quarter or switch_cost_usd"
    return None


def _pad(a: np.ndarray, axis: int, width: int, fill) -> np.ndarray:
    extra = width - a.shape[axis]
    if extra <= 0:
        return a
    shape = list(a.shape)
    shape[axis] = extra
    return np.concatenate([a, np.full(shape, fill, a.dtype)], axis=axis)


def _options(o: Options, cp: int, cd: int, sku_offset: int) -> Options:
    """One scenario's options padded to (cp, cd) candidate columns, its sku indices moved to its block."""
    inf = np.inf
    return Options(
        pre_profile=_pad(o.pre_profile, 1, cp, -1), pre_sku=_pad(o.pre_sku + sku_offset, 1, cp, sku_offset),
        pre_gpi=_pad(o.pre_gpi, 1, cp, 0.0),
        dec_profile=_pad(o.dec_profile, 1, cd, -1), dec_sku=_pad(o.dec_sku + sku_offset, 1, cd, sku_offset),
        dec_gpi=_pad(o.dec_gpi, 1, cd, 0.0),
        pre_n=_pad(_pad(o.pre_n, 2, cp, inf), 3, cd, inf), dec_n=_pad(o.dec_n, 2, cd, inf), pooled=o.pooled,
        pinned_prefill_need=o.pinned_prefill_need,
        pre_rate=_pad(_pad(o.pre_rate, 1, cp, 0.0), 2, cd, 0.0), dec_rate=_pad(o.dec_rate, 1, cd, 0.0),
        transfer_s=_pad(_pad(o.transfer_s, 1, cp, 0.0), 2, cd, 0.0),
    )


def stack(problems: list[FleetProblem], names: list[str]) -> FleetProblem:
    """The scenarios' problems side by side: workloads and skus of scenario k renamed `name/...`, its
    workloads on its own skus only. Every problem must pass stackable()."""
    cp = max(p.options.pre_n.shape[2] for p in problems)
    cd = max(p.options.dec_n.shape[2] for p in problems)
    n_sku = len(problems[0].skus)
    opts = [_options(p.options, cp, cd, k * n_sku) for k, p in enumerate(problems)]
    options = Options(*(np.concatenate([getattr(o, f) for o in opts], axis=1 if f in PER_QUARTER else 0)
                        for f in Options._fields))
    econ = problems[0].economics
    per_sku = {f: np.concatenate([getattr(p.economics, f) for p in problems], axis=0)
               for f in Economics._fields if f not in ("budget", "hours", "switch_usd")}
    return FleetProblem(
        workloads=[f"{n}/{w}" for n, p in zip(names, problems) for w in p.workloads],
        skus=[f"{n}/{s}" for n, p in zip(names, problems) for s in p.skus],
        quarters=list(problems[0].quarters),
        demand_rps=np.concatenate([p.demand_rps for p in problems], axis=1),
        options=options,
        economics=econ._replace(**per_sku),
        row_reason=np.concatenate([p.row_reason for p in problems], axis=1),
        unserved_usd=np.concatenate([p.unserved_usd for p in problems], axis=1),
    )


def split_choices(problems: list[FleetProblem], plan: fleet.FleetPlan) -> list[fleet.FleetPlan]:
    """Each scenario's plan from the stacked plan's pair choices, evaluated on its own problem (its
    procurement, cost and unserved labels; the blocks share no sku, so the costs add up to the stack's)."""
    out, lo = [], 0
    for p in problems:
        hi = lo + len(p.workloads)
        out.append(fleet.evaluate(p, plan.pair_c[:, lo:hi], plan.pair_d[:, lo:hi]))
        lo = hi
    return out


def split_prices(problems: list[FleetProblem], prices: np.ndarray) -> list[np.ndarray]:
    """Each scenario's [S, Q] slice of the stacked dual prices."""
    n = len(problems[0].skus)
    return [prices[k * n:(k + 1) * n] for k in range(len(problems))]


def solve_scenarios(problems: dict[str, FleetProblem], solver: str = "auto", seed: int = 0,
                    progress=None) -> dict[str, tuple[object, float]]:
    """Every scenario's search.solve.Outcome and its search seconds, searched together where that is exact.

    exact first, per scenario (cheap): with `exact`, or with `auto` where no limit binds, that plan is final
    and the same as the scenario planned alone. The other scenarios are stacked and searched by the solver in
    one run (auto: lagrangian); each gets its own plan (split_choices), its own certified bound (block_bounds)
    and the run's seconds; with auto, then the milp cross-check of a scenario small enough on its own.
    milp and evolution, a fleet with a budget, or a single scenario left: one run each."""
    from pdfleet.search import solve

    names, out, left, first = list(problems), {}, list(problems), {}
    if solver in ("auto", "exact") and len(names) > 1:
        left = []
        for name in names:
            t0 = time.perf_counter()
            o = first[name] = solve.run(problems[name], "exact")
            if solver == "exact" or solve.exact_settles(o.plan.objective_usd, o.lower_bound_usd, o.breaks_limits):
                out[name] = (o, time.perf_counter() - t0)
            else:
                left.append(name)
    group = [problems[n] for n in left]
    if len(left) < 2 or solver in ("milp", "evolution") or stackable(group) is not None:
        for name in left:
            t0 = time.perf_counter()
            out[name] = (solve.run(problems[name], solver, seed=seed, progress=progress), time.perf_counter() - t0)
        return {n: out[n] for n in names}
    t0 = time.perf_counter()
    # auto's milp cross-check is per scenario below (judged on each one's size, as when planned alone)
    whole = solve.run(stack(group, left), "lagrangian" if solver == "auto" else solver, seed=seed, progress=progress)
    seconds = time.perf_counter() - t0
    note = f"searched in one stacked {whole.solver} run with scenarios {', '.join(left)} (search/stack.py)"
    plans = split_choices(group, whole.plan)
    duals = [fleet.dual(p, prices) for p, prices in zip(group, split_prices(group, whole.prices))]
    bounds = block_bounds(whole.lower_bound_usd, [d.value_usd for d in duals], [pl.objective_usd for pl in plans],
                          [first[n].lower_bound_usd if n in first else -np.inf for n in left])
    for name, p, plan, dual, bound in zip(left, group, plans, duals, bounds):
        got = solve.Outcome(whole.solver, plan, bound, dual.prices, dual.budget_price, whole.seconds,
                            {whole.solver: plan.objective_usd}, False, [*whole.notes, note])
        t1 = time.perf_counter()
        out[name] = (solve.cross_check(p, got) if solver == "auto" else got, seconds + time.perf_counter() - t1)
    return {n: out[n] for n in names}


def block_bounds(whole_bound: float, duals: list[float], objectives: list[float], own: list[float]) -> list[float]:
    """A certified lower bound per block of a stacked (separable) program, the best of three valid ones:
    - its Lagrangian dual at its slice of the prices (weak duality, block by block);
    - the stack's bound minus every other block's plan objective: each of those is at least that block's
      optimum, and the stack's optimum is the sum of the blocks' optima, so what is left bounds this block
      (tight when the stack's optimum is proven; above the dual where the stack's bound used a tighter
      supply than the block's own dual does);
    - the bound it got on its own before (exact's dual at the start prices), -inf when none."""
    total = float(np.sum(objectives))
    return [max(d, whole_bound - (total - obj), o) for d, obj, o in zip(duals, objectives, own)]
