"""Procurement per sku and quarter: which GPUs are owned, bought and rented to cover the plan's usage.

One small linear program over S x Q cells (HiGHS through scipy), in two modes:
- `cover(usage)`: the cheapest integer procurement covering a plan's usage (the plan's true cost), or
  None when no procurement meets the limits;
- `dual(prices)`: the procurement part of the Lagrangian dual at prices (USD per GPU-hour) on
  "usage <= supply": min cost - prices x supply, continuous (a relaxation, so the dual stays a bound).

Variables per cell (s, q): ou (owned GPUs in use), r (rented), b (bought, arriving in quarter q).
Costs (USD over the horizon): H own_price ou + H rent_price r + purchase min(A, Q - q) / A b: a bought GPU
is amortized over A quarters from its arrival, and only the quarters inside the horizon are charged.
Limits: ou <= owned + bought so far; owned + bought so far + r <= inventory; r <= rent_max;
b <= buy_max of the ordering quarter q - lead (none before lead); per quarter the hourly cost (opex of ou
and r plus the amortization of GPUs in their window) <= budget.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
from scipy.optimize import Bounds, LinearConstraint, linprog, milp

from pdfleet.search.problem import Economics


class Procurement(NamedTuple):
    owned_used: np.ndarray  # [S, Q]
    rented: np.ndarray  # [S, Q]
    bought: np.ndarray  # [S, Q] arriving in that quarter
    owned_total: np.ndarray  # [S, Q] owned before the horizon + bought so far
    capex_per_hour: np.ndarray  # [S, Q] amortization of bought GPUs in their window
    opex_per_hour: np.ndarray  # [S, Q] owned GPUs in use + rented
    cost_usd: float  # over the horizon


def _capex_weights(econ: Economics) -> tuple[np.ndarray, np.ndarray]:
    """(total [S, Q]: USD charged in the horizon per GPU arriving in q; window [S, Qa, Q]: 1 where a GPU
    arriving in Qa is amortized in quarter Q)."""
    s, q = econ.owned.shape
    a = np.arange(q)
    window = (a[None, :, None] <= a[None, None, :]) & (a[None, None, :] < a[None, :, None] + econ.amortization[:, None, None])
    purchase = np.where(np.isfinite(econ.purchase), econ.purchase, 0.0)
    total = purchase[:, None] * window.sum(axis=2) / econ.amortization[:, None]
    return total, window


def buy_upper(econ: Economics) -> np.ndarray:
    """[S, Q] most GPUs that can arrive in each quarter (0 where the sku cannot be bought or before lead)."""
    s, q = econ.owned.shape
    out = np.zeros((s, q))
    for i in range(s):
        if not np.isfinite(econ.purchase[i]):
            continue
        lead = int(econ.lead[i])
        out[i, lead:] = econ.buy_max[i, : q - lead] if lead < q else 0.0
    return out


def supply_cap(econ: Economics) -> np.ndarray:
    """[S, Q] the most GPUs usable in a cell if everything else were free: min(inventory,
    owned + every purchase that can have arrived + rent_max)."""
    return np.minimum(econ.inventory, econ.owned + np.cumsum(buy_upper(econ), axis=1) + econ.rent_max)


def program(econ: Economics, supply_max: np.ndarray):
    """(cost c [3n], constraints, lower, upper bounds) shared by both modes; n = S x Q, x = [ou, r, b]."""
    s, q = econ.owned.shape
    n = s * q
    h = econ.hours
    total, window = _capex_weights(econ)
    cost = np.concatenate([h * np.repeat(econ.own_price, q), h * np.repeat(econ.rent_price, q), total.ravel()])
    eye = sp.identity(n, format="csr")
    cum = sp.block_diag([sp.csr_matrix(np.tril(np.ones((q, q))))] * s, format="csr")  # bought so far
    rows, lo, hi = [], [], []
    # ou - bought so far <= owned
    rows.append(sp.hstack([eye, sp.csr_matrix((n, n)), -cum]))
    lo.append(np.full(n, -np.inf))
    hi.append(econ.owned.ravel())
    # bought so far + r <= inventory - owned
    finite = np.isfinite(econ.inventory).ravel()
    if finite.any():
        m = sp.hstack([sp.csr_matrix((n, n)), eye, cum]).tocsr()[finite]
        rows.append(m)
        lo.append(np.full(int(finite.sum()), -np.inf))
        hi.append((econ.inventory - econ.owned).ravel()[finite])
    # ou + r <= the most any plan could use (keeps the dual bounded)
    rows.append(sp.hstack([eye, eye, sp.csr_matrix((n, n))]))
    lo.append(np.full(n, -np.inf))
    hi.append(supply_max.ravel())
    # budget per quarter (USD per hour)
    if np.isfinite(econ.budget).any():
        purchase = np.where(np.isfinite(econ.purchase), econ.purchase, 0.0)
        per_hour = (purchase / econ.amortization / h)[:, None, None] * window  # [S, Qa, Q]
        b_rows = sp.csr_matrix(per_hour.transpose(2, 0, 1).reshape(q, n))
        sel = lambda price: sp.csr_matrix(  # noqa: E731
            (np.repeat(price, q), (np.tile(np.arange(q), s), np.arange(n))), shape=(q, n))
        m = sp.hstack([sel(econ.own_price), sel(econ.rent_price), b_rows]).tocsr()
        keep = np.isfinite(econ.budget)
        rows.append(m[keep])
        lo.append(np.full(int(keep.sum()), -np.inf))
        hi.append(econ.budget[keep])
    upper = np.concatenate([np.full(n, np.inf), np.minimum(econ.rent_max, supply_max).ravel(),
                            np.minimum(buy_upper(econ), supply_max.max(axis=1, keepdims=True)).ravel()])
    return cost, rows, lo, hi, upper


def _solve(cost, rows, lo, hi, upper, integral: bool):
    a = sp.vstack(rows).tocsr()
    res = milp(cost, constraints=LinearConstraint(a, np.concatenate(lo), np.concatenate(hi)),
               bounds=Bounds(np.zeros(len(cost)), upper),
               integrality=np.ones(len(cost)) if integral else None,
               options={"presolve": True, "mip_rel_gap": 0.0})
    return res


def cover(econ: Economics, usage: np.ndarray) -> Procurement | None:
    """Cheapest whole-GPU procurement with ou + r >= usage in every cell; None when none meets the limits."""
    s, q = econ.owned.shape
    n = s * q
    usage = np.ceil(usage - 1e-6)
    if np.any(usage > supply_cap(econ) + 1e-9):
        return None
    cost, rows, lo, hi, upper = program(econ, np.maximum(usage, 0.0))
    eye = sp.identity(n, format="csr")
    rows = rows + [sp.hstack([eye, eye, sp.csr_matrix((n, n))])]
    lo = lo + [usage.ravel()]
    hi = hi + [np.full(n, np.inf)]
    res = _solve(cost, rows, lo, hi, upper, integral=True)
    if res.x is None:
        return None
    return _procurement(econ, np.round(res.x), cost)


def _procurement(econ: Economics, x: np.ndarray, cost: np.ndarray) -> Procurement:
    s, q = econ.owned.shape
    n = s * q
    ou, r, b = (x[i * n:(i + 1) * n].reshape(s, q) for i in range(3))
    _, window = _capex_weights(econ)
    purchase = np.where(np.isfinite(econ.purchase), econ.purchase, 0.0)
    capex = np.einsum("sa,saq->sq", b * (purchase / econ.amortization)[:, None], window) / econ.hours
    opex = ou * econ.own_price[:, None] + r * econ.rent_price[:, None]
    return Procurement(ou, r, b, econ.owned + np.cumsum(b, axis=1), capex, opex, float(cost @ x))


def dual(econ: Economics, prices: np.ndarray, supply_max: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """min over continuous procurement of cost - H prices . supply (the dual's procurement term), the
    supply [S, Q] that attains it, and the budget's shadow price per quarter [Q] (USD over the horizon
    per USD/hour of budget; 0 where it does not bind)."""
    s, q = econ.owned.shape
    n = s * q
    cost, rows, lo, hi, upper = program(econ, supply_max)
    credit = econ.hours * prices.ravel()
    shifted = cost - np.concatenate([credit, credit, np.zeros(n)])
    scale = max(float(np.max(np.abs(shifted))), 1.0)  # HiGHS fails on objectives of 1e12 and more
    res = linprog(shifted / scale, A_ub=sp.vstack(rows).tocsr(), b_ub=np.concatenate(hi),
                  bounds=np.stack([np.zeros(3 * n), upper], axis=1), method="highs")
    if res.x is None:  # x = 0 is feasible (every limit is >= 0): only a numerical failure lands here
        res = linprog(shifted / scale, A_ub=sp.vstack(rows).tocsr(), b_ub=np.concatenate(hi),
                      bounds=np.stack([np.zeros(3 * n), upper], axis=1), method="highs-ipm")
        if res.x is None:
            raise RuntimeError(f"procurement dual: {res.message}")
    supply = (res.x[:n] + res.x[n:2 * n]).reshape(s, q)
    budget = np.zeros(q)
    if np.isfinite(econ.budget).any():
        budget[np.isfinite(econ.budget)] = -scale * res.ineqlin.marginals[-int(np.isfinite(econ.budget).sum()):]
    return float(res.fun) * scale, supply, budget
