"""The gradient-free fleet solver (pdfleet/search/evolution.py: CMA-ES over dual prices) against the
MILP reference on small random fleets with economics (tests/fleet_economics.py): its plan keeps every
limit, costs within 1% of the optimum, its bound stays below the optimum, a seed fixes the result, and
the population's vmapped path search equals paths.best_paths member by member.
"""

from __future__ import annotations

import functools

import jax
import numpy as np
import pytest

from pdfleet import optimize, spec
from pdfleet.search import evolution, lagrangian, milp, paths, procure
from pdfleet.search import fleet as F

from fleet_economics import random_economics_doc

# Fleets whose shared limits bind and that run in a few seconds. In 11 (a budget) and 24 (inventory and
# rent caps) the start prices' repaired plan is 92% and 7% above the optimum, so CMA-ES has to find
# the prices; in 9 and 20 it finds the prices whose bound meets the optimum. 9, 20 and 24 can serve
# every row; 11's budget leaves rows unserved.
SEEDS = (9, 11, 20, 24)
HARD = (7, 12)  # the search alone ended 24% and 17% above milp here; the restricted-program polish closes it
TOL = 1e-6


@pytest.fixture(autouse=True)
def _x64():
    """The fleet search runs in float64 (optimize.run wraps it in jax.enable_x64; so do these tests)."""
    with jax.enable_x64(True):
        yield


@functools.lru_cache(maxsize=None)
def problem(seed: int):
    return optimize.prepare(spec.from_dict(random_economics_doc(seed))).fleet_problem


@functools.lru_cache(maxsize=None)
def solved(seed: int):
    """(evolution result, milp result) of a fleet, computed once per test session."""
    with jax.enable_x64(True):
        fp = problem(seed)
        return evolution.solve(fp, seed=0), milp.solve(fp)


def assert_keeps_limits(fp, plan):
    """The procurement covers the plan's usage and respects every limit (checked here, not by procure)."""
    econ, proc = fp.economics, plan.procurement
    assert proc is not None
    use = F._usage(fp, plan.pair_c, plan.pair_d)
    assert np.all(use <= proc.owned_used + proc.rented + TOL)
    assert np.all(proc.owned_used <= proc.owned_total + TOL)
    assert np.all(proc.owned_total + proc.rented <= econ.inventory + TOL)
    assert np.all(proc.rented <= econ.rent_max + TOL)
    assert np.all(proc.bought <= procure.buy_upper(econ) + TOL)
    hourly = (proc.capex_per_hour + proc.opex_per_hour).sum(axis=0)
    assert np.all(hourly <= econ.budget * (1 + TOL) + TOL)
    assert np.isfinite(plan.objective_usd)


@pytest.mark.parametrize("seed", SEEDS + HARD)
def test_plan_keeps_limits_and_is_near_milp(seed):
    fp = problem(seed)
    res, ref = solved(seed)
    assert isinstance(res.plan, F.FleetPlan) and res.prices.shape == (len(fp.skus), len(fp.quarters))
    assert ref.optimal and ref.plan.procurement is not None
    assert_keeps_limits(fp, res.plan)
    best = ref.plan.objective_usd
    assert res.plan.objective_usd >= best * (1 - TOL) - TOL  # nothing beats the optimum
    assert res.plan.objective_usd <= best * 1.01 + TOL
    # A certified bound: below the optimum (hence below the evolution plan), and L(res.prices) is it.
    assert res.lower_bound_usd <= best * (1 + TOL) + TOL
    # fleet.dual searches in float32 and takes paths.RELATIVE_SLACK off; evolution sums float64 minima.
    assert res.lower_bound_usd == pytest.approx(F.dual(fp, res.prices).value_usd, rel=1e-5, abs=1e-6)
    assert res.lower_bound_usd >= F.dual(fp, lagrangian.start_prices(fp)).value_usd - TOL
    assert res.iterations >= 1 and res.seconds > 0


def test_serves_everything_when_milp_does():
    """Where the optimum serves every row with demand, so does the evolution plan, with a procurement."""
    full = 0
    for seed in SEEDS:
        fp = problem(seed)
        res, ref = solved(seed)
        wants = fp.demand_rps > 0
        if (ref.plan.pair_c[wants] >= 0).all():
            full += 1
            assert res.plan.procurement is not None
            assert (res.plan.pair_c[wants] >= 0).all() and res.plan.penalty_usd == 0.0
    assert full >= 2


def test_same_seed_same_plan():
    fp = problem(11)
    a = evolution.solve(fp, seed=3, max_generations=4)
    b = evolution.solve(fp, seed=3, max_generations=4)
    np.testing.assert_array_equal(a.plan.pair_c, b.plan.pair_c)
    np.testing.assert_array_equal(a.plan.pair_d, b.plan.pair_d)
    assert a.plan.objective_usd == b.plan.objective_usd
    assert a.lower_bound_usd == b.lower_bound_usd and a.iterations == b.iterations
    np.testing.assert_array_equal(a.prices, b.prices)


def test_progress_reports_every_generation():
    fp = problem(SEEDS[0])
    seen = []
    res = evolution.solve(fp, seed=0, max_generations=3, progress=lambda g, n, gap: seen.append((g, n, gap)))
    assert [g for g, _, _ in seen] == list(range(1, res.iterations + 1))
    assert all(n == 3 and gap >= 0 for _, n, gap in seen)
    assert seen[-1][2] == pytest.approx(lagrangian.gap(res.plan.objective_usd, res.lower_bound_usd))


def test_no_search_when_no_limit_binds():
    """Without shared limits the start prices' plan is optimal: generation 0 stops with gap 0."""
    fp = optimize.prepare(spec.from_dict(random_economics_doc(2, economics=False))).fleet_problem
    res = evolution.solve(fp, seed=0)
    assert res.iterations == 0
    assert res.plan.objective_usd == pytest.approx(milp.solve(fp).plan.objective_usd, rel=1e-9)


@pytest.mark.parametrize("chunk", [None, 1])
def test_population_paths_equal_member_by_member(chunk):
    """The vmapped population search (one compiled call, chunked over workloads) equals
    paths.best_paths called member by member."""
    fp = problem(SEEDS[1])
    ref = evolution.reference_prices(fp)
    rng = np.random.default_rng(0)
    prices = ref[None] * np.exp(rng.uniform(-3, 4, (6, *ref.shape)))  # [P, S, Q]
    prices[0] = lagrangian.start_prices(fp)
    pc, pd, values = evolution.population_paths(fp, prices, chunk=chunk)
    assert pc.shape == pd.shape == (6, len(fp.quarters), len(fp.workloads)) and values.shape == (6, len(fp.workloads))
    compiled = evolution._vmapped_paths._cache_size()
    again = evolution.population_paths(fp, prices * 1.5, chunk=chunk)  # same shapes: no recompilation
    assert evolution._vmapped_paths._cache_size() == compiled and again[0].shape == pc.shape
    x = paths.inputs(fp)
    econ = fp.economics
    for i in range(len(prices)):
        c, d, v = paths.best_paths(x, prices[i], econ.hours, econ.switch_usd)
        np.testing.assert_array_equal(pc[i], np.asarray(c))
        np.testing.assert_array_equal(pd[i], np.asarray(d))
        np.testing.assert_allclose(values[i], np.asarray(v), rtol=1e-12)
