"""Column generation over workload paths (pdfleet/search/master.py) against HiGHS.

References:
- without switch costs each workload's subproblem (one pair per row) has an integral LP, so the best
  Lagrangian bound equals the LP relaxation of the whole program (milp.program);
- with switch costs the master's bound (the Lagrangian dual's maximum) is at least that LP relaxation,
  which lets switch indicators be fractional, and never above the integer optimum (weak duality);
- a master holding every path of every workload is the whole program: its integer optimum is milp's,
  and its LP optimum is the Lagrangian dual's maximum, which column generation reaches.
"""

from __future__ import annotations

import itertools

import jax
import numpy as np
import pytest
from scipy.optimize import Bounds, LinearConstraint, milp as highs

from pdfleet.search import fleet, lagrangian, master, milp
from pdfleet.search.problem import max_usage

from fleet_economics import random_economics_doc
from test_fleet_search import problem_of, row_options


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


def generate(fp) -> master.Master:
    return master.generate(fp, lagrangian.start_prices(fp), rounds=200, tol=1e-8)


def every_path(fp) -> master.Columns:
    """Every path of every workload (each row's feasible pairs and 'unserved', in every combination)."""
    q, w = fp.demand_rps.shape
    cols = []
    for wi in range(w):
        for path in itertools.product(*(row_options(fp, qi, wi) for qi in range(q))):
            c, d = np.full((q, w), -1), np.full((q, w), -1)
            c[:, wi] = [p[0] for p in path]
            d[:, wi] = [p[1] for p in path]
            cols.append(master.new_columns(fp, c, d, np.array([wi])))
    out = cols[0]
    for more in cols[1:]:
        out = master.join(out, more)
    return out


def test_master_bound_equals_the_lp_relaxation_without_switch_costs():
    for seed in range(10):
        fp = problem_of(random_economics_doc(seed, n_skus=3, n_workloads=3, n_quarters=3))
        fp = fp._replace(economics=fp.economics._replace(switch_usd=0.0))
        got = generate(fp)
        lp = lp_relaxation(fp)
        assert got.best.value_usd <= lp * (1 + 1e-6) + 1e-6, seed
        assert got.best.value_usd == pytest.approx(lp, rel=1e-5, abs=1e-3), seed
        assert got.lp_usd == pytest.approx(lp, rel=1e-5, abs=1e-3), seed


def test_master_bound_lies_between_the_lp_relaxation_and_the_integer_optimum():
    stronger = 0
    for seed in range(10, 20):
        fp = problem_of(random_economics_doc(seed, n_skus=3, n_workloads=3, n_quarters=3))
        best = milp.solve(fp).plan.objective_usd
        got = generate(fp)
        lp = lp_relaxation(fp)
        assert got.best.value_usd <= best * (1 + 1e-6) + 1e-6, seed
        assert got.best.value_usd >= lp - 1e-5 * abs(lp) - 1e-3, seed
        assert got.best.value_usd >= got.bounds[0].value_usd  # never worse than the start prices
        stronger += got.best.value_usd > lp * (1 + 1e-6) + 1e-3
    assert stronger >= 1  # switch costs make the path bound strictly tighter somewhere


@pytest.mark.parametrize("seed", range(30, 36))
def test_a_master_of_every_path_is_the_whole_program(seed):
    fp = problem_of(random_economics_doc(seed, n_skus=2, n_workloads=3, n_quarters=2))
    cols = every_path(fp)
    w = fp.demand_rps.shape[1]
    c, d = master.solve_integer(fp, cols, np.zeros(len(cols.owner)), max_usage(fp), nodes=100_000,
                                free=np.ones(w, bool))
    want = milp.solve(fp, prune=False)
    assert want.optimal
    assert fleet.evaluate(fp, c, d).objective_usd == pytest.approx(want.plan.objective_usd, rel=1e-7, abs=1e-6)
    lp = master.solve_lp(fp, cols, max_usage(fp))
    got = generate(fp)
    assert lp.value_usd == pytest.approx(got.lp_usd, rel=1e-6, abs=1e-4)
    assert got.best.value_usd == pytest.approx(lp.value_usd, rel=2e-5, abs=1e-3)
    assert lp.value_usd <= want.plan.objective_usd * (1 + 1e-9) + 1e-6


def test_round_paths_takes_each_workloads_heaviest_column():
    fp = problem_of(random_economics_doc(3, n_skus=2, n_workloads=3, n_quarters=2))
    q, w = fp.demand_rps.shape
    cols = every_path(fp)
    rng = np.random.default_rng(0)
    weights = rng.random(len(cols.owner))
    c, d = master.round_paths(fp, cols, weights)
    for wi in range(w):
        mine = np.nonzero(cols.owner == wi)[0]
        k = mine[np.argmax(weights[mine])]
        np.testing.assert_array_equal(c[:, wi], cols.c[k])
        np.testing.assert_array_equal(d[:, wi], cols.d[k])
    split = master.split_workloads(cols, np.where(cols.owner == 1, 0.5, (np.arange(len(cols.owner)) == 0) * 1.0), w)
    np.testing.assert_array_equal(split, np.arange(w) == 1)
    keep = master.pairs_of(cols, fp.options.pre_n.shape[1:])
    for wi in range(w):
        for qi in range(q):
            for pc, pd_ in row_options(fp, qi, wi):
                if pc >= 0:
                    assert keep[wi, pc, pd_]


@pytest.mark.parametrize("seed", range(40, 44))
def test_the_warm_started_master_equals_a_cold_solve(seed):
    """WarmLP (highspy, columns appended to a live model) gives the LP value and prices of solve_lp
    (scipy, from scratch) on the same columns."""
    fp = problem_of(random_economics_doc(seed, n_skus=2, n_workloads=3, n_quarters=2))
    cols = every_path(fp)
    half = len(cols.owner) // 2
    first = master.Columns(cols.c[:half], cols.d[:half], cols.owner[:half], cols.cost[:half], cols.usage[:half])
    rest = master.Columns(cols.c[half:], cols.d[half:], cols.owner[half:], cols.cost[half:], cols.usage[half:])
    if len(np.unique(first.owner)) < fp.demand_rps.shape[1]:  # every workload needs a column from the start
        first = master.join(master.unserved_columns(fp), first)
    warm = master.WarmLP(fp, first, max_usage(fp))
    a = warm.solve()
    warm.add(rest)
    b = warm.solve()
    everything = master.join(first, rest)
    want = master.solve_lp(fp, everything, max_usage(fp))
    assert b.value_usd == pytest.approx(want.value_usd, rel=1e-7, abs=1e-6)
    assert a.value_usd >= b.value_usd - 1e-6  # more columns never cost more
    assert len(b.weights) == len(everything.owner)
    # complementary slackness at the warm model's prices: every column the LP uses is its workload's
    # cheapest at those prices (a sign slip or a wrong scale in the prices breaks it)
    value = everything.cost + fp.economics.hours * (everything.usage @ b.prices.ravel())
    reduced = value - master.convexity_duals(fp, everything, b.prices)[everything.owner]
    used = b.weights > 1e-9
    np.testing.assert_allclose(reduced[used], 0.0, atol=1e-6 * max(1.0, np.abs(value).max()))
    assert b.weights @ everything.cost <= b.value_usd + 1e-6
    np.testing.assert_allclose(np.bincount(everything.owner, weights=b.weights), 1.0, atol=1e-7)


def test_a_master_stopped_by_its_round_limit_still_rounds_every_workload():
    """After the last round's pricing the columns outnumber the last LP's weights: they weigh 0, and
    every workload still gets a path (its heaviest column among those the LP saw)."""
    fp = problem_of(random_economics_doc(11, n_skus=3, n_workloads=4, n_quarters=3))
    got = master.generate(fp, lagrangian.start_prices(fp), rounds=1, tol=0.0)
    assert len(got.weights) == len(got.columns.owner)
    c, d = master.round_paths(fp, got.columns, got.weights)
    assert c.shape == fp.demand_rps.shape
    np.testing.assert_allclose(np.bincount(got.columns.owner, weights=got.weights), 1.0, atol=1e-7)
    assert got.best.value_usd <= milp.solve(fp).plan.objective_usd * (1 + 1e-6) + 1e-6
