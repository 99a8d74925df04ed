"""Scenarios stacked into one block-diagonal fleet problem (search/stack.py), checked against HiGHS on each
scenario alone: the stack's optimum is the sum of the scenarios' optima, and a stacked lagrangian run gives
every scenario a plan within its limits, within 1% of its own optimum, above a bound below that optimum."""

import copy

import jax
import numpy as np
import pytest

from pdfleet import optimize, scenarios, spec
from pdfleet.search import milp, solve, stack

from fleet_economics import random_economics_doc

SEEDS = range(6)
TOL = 1e-6


def _scenario_problems(seed: int) -> dict:
    doc = random_economics_doc(700 + seed, n_skus=3, n_workloads=3, n_quarters=3)
    doc["planning"].pop("budget_usd_per_hour", None)  # a budget couples skus: such fleets are not stacked
    fleet = spec.from_dict(copy.deepcopy(doc))
    first = next(iter(fleet.skus))
    loaded = scenarios.load_dict({"base": {}, "more": {"demand_scale": 1.7},
                                  "cheap": {"prices": {first: 0.5 * fleet.skus[first].price_usd_per_gpu_hour}}})
    out, shared = {}, None
    for name, sc in loaded.items():
        prep = optimize.prepare(scenarios.apply(fleet, name, sc), shared=shared)
        shared = shared or prep
        out[name] = prep.fleet_problem
    return out


@pytest.fixture(scope="module")
def cases():
    with jax.enable_x64(True):
        out = []
        for seed in SEEDS:
            problems = _scenario_problems(seed)
            alone = {n: milp.solve(p) for n, p in problems.items()}
            assert all(r.optimal for r in alone.values())
            out.append((seed, problems, alone))
        return out


def test_stacked_optimum_is_the_sum_of_the_scenarios_optima(cases):
    with jax.enable_x64(True):
        for seed, problems, alone in cases:
            assert stack.stackable(list(problems.values())) is None
            whole = milp.solve(stack.stack(list(problems.values()), list(problems)))
            assert whole.optimal, seed
            want = sum(r.plan.objective_usd for r in alone.values())
            assert whole.plan.objective_usd == pytest.approx(want, rel=TOL), seed
            # and each block of the stacked optimum is its scenario's optimum
            for name, plan in zip(problems, stack.split_choices(list(problems.values()), whole.plan)):
                assert plan.objective_usd == pytest.approx(alone[name].plan.objective_usd, rel=TOL), (seed, name)


@pytest.mark.parametrize("solver", ["lagrangian", "auto"])
def test_stacked_search_is_feasible_near_optimal_and_certified_per_scenario(cases, solver):
    with jax.enable_x64(True):
        for seed, problems, alone in cases:
            got = stack.solve_scenarios(problems, solver)
            for name, (outcome, seconds) in got.items():
                best = alone[name].plan.objective_usd
                assert outcome.plan.procurement is not None, (seed, name)  # within every limit
                assert outcome.lower_bound_usd <= best * (1 + TOL) + TOL, (seed, name)
                if solver == "auto":  # small stacks get auto's milp cross-check: a proven optimum, tight bounds
                    assert outcome.lower_bound_usd >= outcome.plan.objective_usd * (1 - 1e-3), (seed, name)
                assert best * (1 - TOL) - TOL <= outcome.plan.objective_usd <= best * 1.01 + TOL, (seed, name)
                assert seconds > 0
                assert solver == "auto" or any("stacked" in n for n in outcome.notes)


def test_exact_and_settled_scenarios_match_their_solo_runs(cases):
    with jax.enable_x64(True):
        for seed, problems, _ in cases:
            for name, (outcome, _) in stack.solve_scenarios(problems, "exact").items():
                solo = solve.run(problems[name], "exact")
                np.testing.assert_array_equal(outcome.plan.pair_c, solo.plan.pair_c)
                np.testing.assert_array_equal(outcome.plan.pair_d, solo.plan.pair_d)
                assert outcome.plan.objective_usd == solo.plan.objective_usd


def test_a_budget_is_not_stacked():
    doc = random_economics_doc(3, n_skus=2, n_workloads=2, n_quarters=2)
    doc["planning"]["budget_usd_per_hour"] = 1000.0
    with jax.enable_x64(True):
        fp = optimize.prepare(spec.from_dict(doc)).fleet_problem
    assert stack.stackable([fp, fp]) == "a budget couples every sku of a quarter"
    with jax.enable_x64(True):  # searched one by one instead: each the same as its solo run
        got = stack.solve_scenarios({"a": fp, "b": fp}, "lagrangian")
        solo = solve.run(fp, "lagrangian")
    for outcome, _ in got.values():
        np.testing.assert_array_equal(outcome.plan.pair_c, solo.plan.pair_c)
        assert outcome.plan.objective_usd == solo.plan.objective_usd
        assert not any("stacked" in n for n in outcome.notes)


def test_block_bounds_take_the_best_valid_bound():
    # stack proven optimal at 30 = 10 + 20: each block's plan is optimal, so its bound is its objective
    assert stack.block_bounds(30.0, [8.0, 15.0], [10.0, 20.0], [-np.inf, 16.0]) == [10.0, 20.0]
    # a loose stack bound: the duals (or the block's own earlier bound) win
    assert stack.block_bounds(20.0, [8.0, 15.0], [10.0, 20.0], [-np.inf, 16.0]) == [8.0, 16.0]
