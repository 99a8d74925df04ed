"""The vmapped kernels equal a plain loop over candidates; the exact search equals a NumPy brute force."""

import jax
import numpy as np
import pytest

from pdfleet import arrays, evaluate, reference
from pdfleet.search import exact

from fleets import random_fleet


@pytest.mark.parametrize("seed,max_tables", [(0, 2), (1, 2), (2, 5)])  # 5 tables: the lax.map path
def test_vmap_equals_python_loop(seed, max_tables):
    problem, rows = arrays.build(random_fleet(seed, max_tables=max_tables))
    cap = jax.device_get(evaluate.evaluate(problem.workloads, problem.profiles, problem.block_candidates))
    kernel = jax.jit(evaluate.candidate)
    w_rows = evaluate.workload_rows(problem.workloads)
    candidates = problem.candidates
    for wi in [i for i, name in enumerate(rows) if name is not None]:
        w = jax.tree_util.tree_map(lambda a: a[wi], w_rows)
        for ci in range(candidates.shape[1]):
            one = jax.device_get(kernel(w, evaluate.profile_rows(problem.profiles, candidates[wi, ci])))
            for field in evaluate.Capacity._fields:
                # equal up to a few float32 ulps (XLA fuses the batched and single programs differently)
                np.testing.assert_allclose(getattr(one, field), getattr(cap, field)[wi, ci], rtol=1e-6, err_msg=field)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("nearest", [False, True])
def test_exact_search_matches_numpy_brute_force(seed, nearest):
    problem, rows = arrays.build(random_fleet(seed, n_workloads=20, max_tables=2 + seed % 3))
    real = np.array([name is not None for name in rows])
    sol = jax.device_get(exact.solve(problem, nearest=nearest))
    pre_cap, dec_cap = reference.capacities(problem)
    price = np.asarray(problem.profiles.price_per_hour, np.float64)[problem.candidates]
    demand = np.asarray(problem.workloads.demand_rps, np.float64)
    out_tokens = np.asarray(problem.workloads.output_tokens, np.float64)
    for role, cap in (("prefill", pre_cap), ("decode", dec_cap / out_tokens[:, None])):
        ref = reference.cheapest(demand, cap, price, nearest)[:, real]
        got = getattr(sol, role).cost_per_hour[:, real]
        feasible = getattr(sol, role).reason[:, real] == evaluate.OK
        assert np.array_equal(feasible, np.isfinite(ref)), role
        np.testing.assert_allclose(got[feasible], ref[feasible], rtol=1e-5, err_msg=role)


def test_reference_capacity_agrees_with_kernels():
    problem, _ = arrays.build(random_fleet(7, n_workloads=30))
    cap = jax.device_get(evaluate.evaluate(problem.workloads, problem.profiles, problem.block_candidates))
    pre, dec = reference.capacities(problem)
    valid = problem.candidate_valid
    np.testing.assert_allclose(np.where(valid, cap.prefill_rps, 0), pre, rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(np.where(valid, cap.decode_tps, 0), dec, rtol=2e-5, atol=1e-4)


def test_second_call_does_not_recompile():
    problem, _ = arrays.build(random_fleet(3))
    stages = (exact._capacity, exact._choose, exact._row_candidates, exact._per_request, exact._predict)
    exact.solve(problem)
    before = [f._cache_size() for f in stages]
    other, _ = arrays.build(random_fleet(4))  # same buckets -> same shapes
    assert jax.tree_util.tree_map(np.shape, other) == jax.tree_util.tree_map(np.shape, problem)
    exact.solve(other)
    assert [f._cache_size() for f in stages] == before
