"""What every fleet solver shares: the Lagrangian dual value, a plan's true cost, repair and improvement.

A plan chooses one pair per (quarter, workload), or leaves the row unserved (-1). Its true cost is the
cheapest procurement covering its GPU usage (procure.cover) plus its switch costs, in USD over the
horizon. Relaxing "usage <= supply" of every (sku, quarter) cell with prices lambda >= 0 (USD per
GPU-hour) splits the problem into one path search per workload (paths.best_paths at prices lambda)
and one procurement LP (procure.dual); their sum L(lambda) is a lower bound on every plan's cost
(weak duality), so each plan reports a certified gap (cost - bound) / cost.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from pdfleet.search import paths, procure
from pdfleet.search.problem import FleetProblem, max_usage

EPS = 1e-6


class FleetPlan(NamedTuple):
    pair_c: np.ndarray  # [Q, W] prefill column (-1 = unserved)
    pair_d: np.ndarray  # [Q, W] decode column
    limited: np.ndarray  # [Q, W] str: '' or the limit that left the row unserved ('inventory' | 'budget')
    procurement: procure.Procurement | None  # None when no procurement covers the plan (limits broken)
    cost_usd: float  # true spend over the horizon (procurement + switches); inf when procurement is None
    switch_usd: float
    penalty_usd: float  # penalties of rows left unserved while they have demand (problem.unserved_usd)

    @property
    def objective_usd(self) -> float:
        """What every solver minimizes and the bound bounds: spend + penalties of unserved rows."""
        return self.cost_usd + self.penalty_usd


class Bound(NamedTuple):
    value_usd: float  # L(prices)
    prices: np.ndarray  # [S, Q]
    pair_c: np.ndarray
    pair_d: np.ndarray
    usage: np.ndarray  # [S, Q]
    supply: np.ndarray  # [S, Q]
    budget_price: np.ndarray  # [Q] shadow price of each quarter's budget (USD over the horizon per USD/hour)


def dual(problem: FleetProblem, prices: np.ndarray, supply_max: np.ndarray | None = None) -> Bound:
    """L(prices) = sum of the workloads' cheapest paths at prices + the procurement dual term."""
    supply_max = max_usage(problem) if supply_max is None else supply_max
    c, d, values, use = paths.solve_paths(problem, prices)
    proc_value, supply, budget = procure.dual(problem.economics, prices, supply_max)
    paths_value = float(values.sum())
    paths_value -= paths.RELATIVE_SLACK * abs(paths_value)  # the float32 search (paths.solve_paths)
    return Bound(paths_value + proc_value, prices, c, d, use, supply, budget)


def switch_usd(problem: FleetProblem, c: np.ndarray, d: np.ndarray) -> float:
    """Switch costs of chosen paths over the horizon (USD): paths.path_costs at zero prices, no penalty."""
    if c.shape[0] < 2 or problem.economics.switch_usd == 0:
        return 0.0
    x = paths.device_inputs(problem)
    x = x._replace(unserved=jnp.zeros_like(x.unserved))
    zero = np.zeros((len(problem.skus), c.shape[0]))
    return float(np.sum(paths.path_costs(x, c, d, zero, problem.economics.hours, problem.economics.switch_usd)))


def cheapest_needs(problem: FleetProblem, rows: np.ndarray) -> np.ndarray:
    """[n, S] GPUs per sku of the cheapest pair of each (quarter, workload) row in rows [n, 2], at the
    cheapest source prices and ignoring every limit (what the row would ask for)."""
    from pdfleet.search.problem import base_prices

    o = problem.options
    need = np.zeros((len(rows), len(problem.skus)))
    if len(rows) == 0:
        return need
    base = base_prices(problem.economics)
    prices = np.where(np.isfinite(base), base, BLOCKED)
    cost = np.asarray(paths.pair_costs_jit(paths.device_inputs(problem), prices, problem.economics.hours))[:, :, :-1, :-1]
    for k, (q_i, w_i) in enumerate(rows):  # unserved rows are few; each reads only its own [Cp, Cd] slice
        pc, pd_ = np.unravel_index(np.argmin(cost[q_i, w_i]), cost.shape[2:])
        if np.isfinite(cost[q_i, w_i, pc, pd_]):
            need[k, o.pre_sku[w_i, pc]] += o.pre_n[q_i, w_i, pc, pd_] * o.pre_gpi[w_i, pc]
            need[k, o.dec_sku[w_i, pd_]] += o.dec_n[q_i, w_i, pd_] * o.dec_gpi[w_i, pd_]
    return need


def label_unserved(problem: FleetProblem, c: np.ndarray, d: np.ndarray, use: np.ndarray) -> np.ndarray:
    """[Q, W] the limit that leaves each row with demand (and some feasible pair) unserved: 'inventory'
    when its cheapest pair ignoring limits does not fit in what its cells have left (supply caps), else
    'budget' (the GPUs are there, the money is not)."""
    out = np.full(c.shape, "", dtype=object)
    rows = np.argwhere((c < 0) & (problem.demand_rps > 0) & (problem.row_reason == 0).all(axis=2))
    room = procure.supply_cap(problem.economics) - use
    budget = np.isfinite(problem.economics.budget)
    for (q_i, w_i), need in zip(rows, cheapest_needs(problem, rows)):
        fits = bool((need <= room[:, q_i] + EPS).all())
        out[q_i, w_i] = "budget" if fits and budget[q_i] else "inventory"
    return out


def evaluate(problem: FleetProblem, c: np.ndarray, d: np.ndarray) -> FleetPlan:
    """True cost of a choice: cheapest covering procurement + switch costs (inf when none covers), and
    the limit that leaves each unserved row unserved."""
    use = paths.usage_of(paths.device_inputs(problem), c, d, n_skus=len(problem.skus))
    proc = procure.cover(problem.economics, np.asarray(use, np.float64))
    sw = switch_usd(problem, c, d)
    limited = label_unserved(problem, c, d, np.asarray(use, np.float64))
    cost = proc.cost_usd + sw if proc is not None else np.inf
    penalty = float(np.sum(np.where(c < 0, problem.unserved_usd, 0.0)))
    return FleetPlan(c, d, limited, proc, cost, sw, penalty)


def path_values(problem: FleetProblem, prices: np.ndarray, c: np.ndarray, d: np.ndarray) -> np.ndarray:
    """[W] cost of each workload's given path at prices (USD over the horizon, switches included)."""
    econ = problem.economics
    return np.asarray(paths.path_costs(paths.device_inputs(problem), c, d, prices, econ.hours, econ.switch_usd))


def _usage_per_workload(problem: FleetProblem, c: np.ndarray, d: np.ndarray,
                        roles: tuple[str, ...] = ("prefill", "decode")) -> np.ndarray:
    """[W, S, Q] GPUs each workload's path uses in each cell, of the given roles (paths.usage_per_workload,
    on the device)."""
    return np.asarray(paths.usage_per_workload(paths.device_inputs(problem), jnp.asarray(c), jnp.asarray(d),
                                               n_skus=len(problem.skus), roles=tuple(roles)))


def repair(problem: FleetProblem, c: np.ndarray, d: np.ndarray, prices: np.ndarray,
           max_rounds: int = 60) -> FleetPlan:
    """Make a choice respect every cell's supply cap (inventory, owned + buyable + rentable), then the
    budget, moving the workloads whose moves cost least per GPU freed (at prices); a workload with no
    other way is left unserved (limited = 'inventory' / 'budget'). Each round is one vectorized path
    search with every cell found overfull so far forbidden to the moved workloads (so moves cannot
    oscillate between two full cells); rounds repeat until nothing is overfull, and improve() may later
    use what slack the moves left."""
    econ = problem.economics
    cap = procure.supply_cap(econ)
    c, d = c.copy(), d.copy()
    forbidden = np.zeros(cap.shape, bool)  # cells found overfull so far: moved workloads avoid them all
    for _ in range(max_rounds):
        per_w = _usage_per_workload(problem, c, d)  # [W, S, Q]
        use = per_w.sum(axis=0)
        over = use > cap + EPS
        if not over.any():
            break
        forbidden |= over
        ac, ad, alt_value, _ = paths.solve_paths(problem, prices, cells=forbidden)
        delta = alt_value - path_values(problem, prices, c, d)
        freed = per_w - _usage_per_workload(problem, ac, ad)  # [W, S, Q]
        move = np.zeros(len(problem.workloads), bool)
        for s_i, q_i in zip(*np.nonzero(over)):  # overfull cells: few
            excess = use[s_i, q_i] - cap[s_i, q_i]
            gain = freed[:, s_i, q_i]
            who = np.nonzero(gain > EPS)[0]
            excess -= gain[move].sum()
            if excess <= EPS:
                continue
            move[_cheapest_cover(who, gain[who], delta[who], excess)] = True
        if not move.any():
            break
        c[:, move], d[:, move] = ac[:, move], ad[:, move]
    plan = evaluate(problem, c, d)
    if plan.procurement is None and not (_usage(problem, c, d) > cap + EPS).any():
        plan = _repair_budget(problem, plan, prices)
    return plan


def _cheapest_cover(who, gain, delta, excess):
    """Workloads to move so their freed GPUs cover excess at a small total extra cost: the better of the
    ratio-greedy prefix (least extra cost per GPU freed first) and the single cheapest workload that frees
    enough alone (the greedy prefix can overshoot with a big workload where one small move would do)."""
    order = np.lexsort((who, delta / gain))
    need = np.cumsum(gain[order])
    prefix = order[: int(np.searchsorted(need, excess - EPS)) + 1]
    alone = np.nonzero(gain >= excess - EPS)[0]
    if len(alone):
        one = alone[np.argmin(delta[alone])]
        if delta[one] < delta[prefix].sum():
            return who[[one]]
    return who[prefix]


def _usage(problem, c, d):
    return np.asarray(paths.usage_of(paths.device_inputs(problem), c, d, n_skus=len(problem.skus)), np.float64)


def _repair_budget(problem: FleetProblem, plan: FleetPlan, prices: np.ndarray) -> FleetPlan:
    """No procurement within the budget: leave rows unserved, dearest per request first, in the quarters
    whose budget binds, until a procurement exists."""
    econ = problem.economics
    c, d = plan.pair_c.copy(), plan.pair_d.copy()
    per_w = _usage_per_workload(problem, c, d)
    row_cost = np.einsum("wsq,sq->qw", per_w, prices)  # USD per hour at prices
    per_request = row_cost / np.maximum(problem.demand_rps, EPS)
    free = problem._replace(economics=econ._replace(budget=np.full_like(econ.budget, np.inf)))
    unbudgeted = evaluate(free, c, d).procurement
    if unbudgeted is None:
        return plan
    hourly = (unbudgeted.capex_per_hour + unbudgeted.opex_per_hour).sum(axis=0)
    for qi in np.nonzero(hourly > econ.budget + EPS)[0]:  # only the quarters whose budget is short
        order = np.argsort(-per_request[qi], kind="stable")
        for wi in order:  # stops at the first feasible plan; each step is one small LP
            trial = evaluate(problem, c, d)
            if trial.procurement is not None:
                return trial
            if c[qi, wi] >= 0:
                c[qi, wi], d[qi, wi] = -1, -1
    return evaluate(problem, c, d)


def room_left(per_w: np.ndarray, room: np.ndarray) -> np.ndarray:
    """[Q, W, S] GPUs a workload may use in each cell without breaking its cap: what the cell has left
    (room [S, Q]) plus what the workload itself uses there now (per_w [W, S, Q])."""
    return room.T[:, None, :] + per_w.transpose(2, 0, 1)


def marginal_prices(problem: FleetProblem, plan: FleetPlan) -> tuple[np.ndarray, np.ndarray]:
    """([S, Q] USD per GPU-hour of one more GPU in each cell, [S, Q] what one GPU less saves), given the
    plan's procurement. One more: an idle owned (or already bought) GPU costs its running price; else
    renting where the caps leave room; else buying where that can arrive (problem.buy_prices); else
    BLOCKED. One less: the rent of a rented GPU where some are rented, else the running price of an
    owned one (a purchase is not undone by one GPU)."""
    from pdfleet.search.problem import buy_prices

    econ, proc = problem.economics, plan.procurement
    idle = proc.owned_total - proc.owned_used
    rent_room = np.minimum(econ.rent_max - proc.rented, econ.inventory - proc.owned_total - proc.rented)
    buy_room = np.minimum(procure.buy_upper(econ) - proc.bought, econ.inventory - proc.owned_total - proc.rented)
    buy = np.where(buy_room >= 1, buy_prices(econ), np.inf)
    rent = np.where(rent_room >= 1, econ.rent_price[:, None], np.inf)
    more = np.where(idle >= 1, econ.own_price[:, None], np.minimum(rent, buy))
    less = np.where(proc.rented >= 1, econ.rent_price[:, None], np.broadcast_to(econ.own_price[:, None], idle.shape))
    return np.where(np.isfinite(more), more, BLOCKED), less


BLOCKED = 1e6  # USD per GPU-hour of a cell with no GPU left: finite, so 0 instances x price stays 0


def improve(problem: FleetProblem, plan: FleetPlan, rounds: int = 8, singles: int = 16) -> FleetPlan:
    """Vectorized local search from a feasible plan. Each round finds every workload's best path with
    one more GPU priced at its marginal cost (marginal_prices) and compares it with its current path
    valued at what its GPUs would save if released; the moves are applied in order of that saving while
    every cell stays within its cap, and the round is kept only if the true cost (procure.cover +
    switches) falls. Failing that, half as many moves, then each of the `singles` best moves alone."""
    if plan.procurement is None:
        return plan
    cap = procure.supply_cap(problem.economics)
    for _ in range(rounds):
        c, d = plan.pair_c, plan.pair_d
        more, less = marginal_prices(problem, plan)
        per_w = _usage_per_workload(problem, c, d)
        use = per_w.sum(axis=0)
        ac, ad, alt_value, _ = paths.solve_paths(problem, more, left=room_left(per_w, cap - use))
        saving = path_values(problem, less, c, d) - alt_value
        moved = (ac != c).any(axis=0) | (ad != d).any(axis=0)
        who = np.nonzero((saving > EPS * np.maximum(1.0, np.abs(alt_value))) & moved)[0]
        if len(who) == 0:
            break
        order = who[np.argsort(-saving[who], kind="stable")]
        change = (_usage_per_workload(problem, ac, ad) - per_w)[order]  # [M, S, Q]
        running = use[None] + np.cumsum(change, axis=0)
        ok = (running <= cap[None] + EPS).all(axis=(1, 2))
        n_ok = int(np.argmin(ok)) if not ok.all() else len(order)
        tries = []
        while n_ok > 1:
            tries.append(order[:n_ok])
            n_ok //= 2
        tries += [order[i:i + 1] for i in range(min(singles, len(order)))]
        better = None
        for take in tries:
            nc, nd = c.copy(), d.copy()
            nc[:, take], nd[:, take] = ac[:, take], ad[:, take]
            trial = evaluate(problem, nc, nd)
            if trial.objective_usd < plan.objective_usd - EPS:
                better = trial
                break
        if better is None:
            break
        plan = better
    return plan


def tidy(problem: FleetProblem, plan: FleetPlan, prices: np.ndarray) -> FleetPlan:
    """Every workload at once moves to its cheapest path at prices (switches included) among the pairs
    that use no more GPUs than its path does now in any cell: no cap can break, so no move needs the
    others' room. It drops switches and GPUs that repair and improve left (measured on gen_fleet 20,000
    rows: it lets improve go on from where it stopped). Kept only if the true cost falls."""
    if plan.procurement is None:
        return plan
    per_w = _usage_per_workload(problem, plan.pair_c, plan.pair_d)
    c, d, _, _ = paths.solve_paths(problem, prices, left=per_w.transpose(2, 0, 1))
    if np.array_equal(c, plan.pair_c) and np.array_equal(d, plan.pair_d):
        return plan
    trial = evaluate(problem, c, d)
    return trial if trial.objective_usd < plan.objective_usd - EPS else plan


def runner_up(problem: FleetProblem, plan: FleetPlan, prices: np.ndarray) -> dict:
    """Why each chosen role won: the best other candidate for that role with the other role kept, and
    its extra cost in USD per hour at prices (the plan's dual prices; the cheapest source where no
    limit binds). Arrays [Q, W]: pre_alt / dec_alt columns (-1 = none) and pre_extra / dec_extra."""
    x = paths.device_inputs(problem)
    h = problem.economics.hours
    cost = np.asarray(paths.pair_costs_jit(x, jnp.asarray(prices), h))[:, :, :-1, :-1] / h  # [Q, W, Cp, Cd]
    c, d = plan.pair_c, plan.pair_d
    served = c >= 0
    q, w = c.shape
    qi, wi = np.arange(q)[:, None], np.arange(w)[None, :]
    cc, dd = np.maximum(c, 0), np.maximum(d, 0)
    chosen = cost[qi, wi, cc, dd]
    pre_row = cost[qi, wi, :, dd]  # [Q, W, Cp] other prefill, same decode
    pre_row[qi, wi, cc] = np.inf
    dec_row = cost[qi, wi, cc, :]  # [Q, W, Cd]
    dec_row[qi, wi, dd] = np.inf
    out = {}
    for role, row in (("pre", pre_row), ("dec", dec_row)):
        alt = np.argmin(row, axis=2)
        best = np.take_along_axis(row, alt[..., None], 2)[..., 0]
        ok = served & np.isfinite(best)
        out[f"{role}_alt"] = np.where(ok, alt, -1)
        with np.errstate(invalid="ignore"):  # inf - inf where no alternative: masked to NaN
            out[f"{role}_extra"] = np.where(ok, best - chosen, np.nan)
    return out
