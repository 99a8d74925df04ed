"""Column-generation prices (pdfleet/search/colgen.py) against HiGHS on the LP relaxation.

Without switch costs every workload's subproblem (one pair per row) has an integral LP, so the best
Lagrangian bound equals the LP relaxation of the whole program (milp.program), and column generation
reaches it: at its last prices no row has a pair cheaper than the restricted LP's, which is then the
full LP's optimum, and L at its duals is that optimum (LP duality). The bound must also never exceed
the integer optimum (weak duality), with or without switch costs.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from scipy.optimize import Bounds, LinearConstraint, milp as highs

from pdfleet.search import colgen, lagrangian, milp

from fleet_economics import random_economics_doc
from test_fleet_search import problem_of


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


def lp_relaxation(fp) -> float:
    prog = milp.program(fp)
    res = highs(prog.cost, constraints=LinearConstraint(prog.a, prog.lo, prog.hi),
                bounds=Bounds(np.zeros(len(prog.cost)), prog.upper))
    assert res.status == 0, res.message
    return float(res.fun)


def test_colgen_bound_reaches_the_lp_relaxation_without_switch_costs():
    reached = 0
    for seed in range(10):
        fp = problem_of(random_economics_doc(seed, n_skus=3, n_workloads=3, n_quarters=3))
        fp = fp._replace(economics=fp.economics._replace(switch_usd=0.0))
        lp = lp_relaxation(fp)
        got = colgen.prices(fp, lagrangian.start_prices(fp), rounds=50).best.value_usd
        assert got <= lp * (1 + 1e-6) + 1e-6, seed  # never above the LP (it is its dual)
        assert got == pytest.approx(lp, rel=1e-5, abs=1e-3), seed
        reached += 1
    assert reached == 10


def test_colgen_bound_stays_below_the_integer_optimum_with_switch_costs():
    for seed in range(10, 18):
        fp = problem_of(random_economics_doc(seed, n_skus=3, n_workloads=3, n_quarters=3))
        best = milp.solve(fp).plan.objective_usd
        start = lagrangian.start_prices(fp)
        got = colgen.prices(fp, start)
        assert got.best.value_usd <= best * (1 + 1e-6) + 1e-6, seed
        assert got.best.value_usd >= got.bounds[0].value_usd  # never worse than the start prices
