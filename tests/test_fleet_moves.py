"""The device kernels of repair and improve (paths.avoid_pairs, paths.usage_per_workload) against the
host NumPy code they replaced (kept here as the reference), on random fleets with economics; the search
with forbidden pairs against the same search on a problem whose forbidden pairs are made infeasible."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from pdfleet.search import fleet, paths, procure

from fleet_economics import random_economics_doc
from test_fleet_search import problem_of

EPS = fleet.EPS


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


def _finite(a):
    return np.where(np.isfinite(a), a, 0.0)


def old_usage_per_workload(problem, c, d, roles=("prefill", "decode")):
    """The NumPy version fleet._usage_per_workload had (np.add.at over rows)."""
    o = problem.options
    q, w = c.shape
    s = len(problem.skus)
    served = c >= 0
    cc, dd = np.maximum(c, 0), np.maximum(d, 0)
    qi, wi = np.meshgrid(np.arange(q), np.arange(w), indexing="ij")
    pre = np.where(served, _finite(o.pre_n[qi, wi, cc, dd]) * o.pre_gpi[wi, cc], 0.0)
    dec = np.where(served, _finite(o.dec_n[qi, wi, dd]) * o.dec_gpi[wi, dd], 0.0)
    out = np.zeros((w, s, q))
    if "prefill" in roles:
        np.add.at(out, (wi, o.pre_sku[wi, cc], qi), pre)
    if "decode" in roles:
        np.add.at(out, (wi, o.dec_sku[wi, dd], qi), dec)
    return out


def old_cell_mask(problem, cells):
    """The NumPy version of repair's mask: pairs using a marked cell."""
    o = problem.options
    pre = cells.T[:, o.pre_sku]
    dec = cells.T[:, o.dec_sku]
    return pre[:, :, :, None] | dec[:, :, None, :]


def old_room_mask(problem, per_w, room):
    """The NumPy version of improve's mask: pairs that do not fit in what their cells have left."""
    o = problem.options
    q = room.shape[1]
    left = room.T[:, None, :] + per_w.transpose(2, 0, 1)
    pre_need = _finite(o.pre_n) * o.pre_gpi[None, :, :, None]
    dec_need = _finite(o.dec_n) * o.dec_gpi[None]
    qi = np.arange(q)[:, None, None]
    wi = np.arange(o.pre_sku.shape[0])[None, :, None]
    pre_left = left[qi, wi, o.pre_sku[None]]
    dec_left = left[qi, wi, o.dec_sku[None]]
    same = o.pre_sku[:, :, None] == o.dec_sku[:, None, :]
    total = pre_need + dec_need[:, :, None, :]
    return np.where(same[None], total > pre_left[..., None] + EPS,
                    (pre_need > pre_left[..., None] + EPS) | (dec_need > dec_left + EPS)[:, :, None, :])


def _random_problem(seed):
    return problem_of(random_economics_doc(seed, n_skus=3, n_workloads=6, n_quarters=3))


@pytest.mark.parametrize("seed", range(6))
def test_device_kernels_equal_the_numpy_reference(seed):
    fp = _random_problem(seed)
    rng = np.random.default_rng(seed)
    s, q = len(fp.skus), len(fp.quarters)
    prices = rng.uniform(0.5, 5.0, (s, q))
    c, d, _, _ = paths.solve_paths(fp, prices)
    for roles in (("prefill", "decode"), ("prefill",), ("decode",)):
        np.testing.assert_allclose(fleet._usage_per_workload(fp, c, d, roles=roles),
                                   old_usage_per_workload(fp, c, d, roles), rtol=0, atol=1e-12)
    x = paths.device_inputs(fp)
    per_w = old_usage_per_workload(fp, c, d)
    cap = procure.supply_cap(fp.economics)
    room = np.where(np.isfinite(cap), cap, 1e9) - per_w.sum(axis=0) - rng.integers(0, 3, (s, q))
    cells = rng.random((s, q)) < 0.3
    no_cells = np.zeros((s, q), bool)
    no_room = np.full((q, len(fp.workloads), s), np.inf)
    got_room = np.asarray(paths.avoid_pairs(x, no_cells, fleet.room_left(per_w, room)))
    got_cells = np.asarray(paths.avoid_pairs(x, cells, no_room))
    np.testing.assert_array_equal(got_room, old_room_mask(fp, per_w, room))
    np.testing.assert_array_equal(got_cells, old_cell_mask(fp, cells))


@pytest.mark.parametrize("seed", range(6))
def test_search_with_forbidden_pairs_equals_search_on_the_masked_problem(seed):
    """solve_paths(cells=, left=) finds the same paths as solve_paths on a problem whose forbidden pairs
    are infeasible (the old repair/improve passed such a mask), also across chunks of workloads."""
    fp = _random_problem(100 + seed)
    rng = np.random.default_rng(seed)
    s, q = len(fp.skus), len(fp.quarters)
    prices = rng.uniform(0.5, 5.0, (s, q))
    c, d, _, _ = paths.solve_paths(fp, prices)
    per_w = old_usage_per_workload(fp, c, d)
    room = rng.integers(0, 6, (s, q)).astype(float)
    cells = rng.random((s, q)) < 0.3
    left = fleet.room_left(per_w, room)
    mask = old_cell_mask(fp, cells) | old_room_mask(fp, per_w, room)
    o = fp.options
    masked = fp._replace(options=o._replace(pre_n=np.where(mask, np.inf, o.pre_n)))
    want = paths.solve_paths(masked, prices)
    for chunk in (8192, 4):
        got = paths.solve_paths(fp, prices, chunk=chunk, cells=cells, left=left)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
        np.testing.assert_allclose(got[2], want[2], rtol=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_tidy_never_costs_more_nor_uses_more_gpus_per_workload(seed):
    """fleet.tidy from a repaired plan: the true cost does not rise, no workload uses more GPUs in any
    cell, and the plan stays within every cap."""
    fp = _random_problem(300 + seed)
    rng = np.random.default_rng(seed)
    prices = rng.uniform(0.5, 5.0, (len(fp.skus), len(fp.quarters)))
    c, d, _, _ = paths.solve_paths(fp, prices)
    plan = fleet.repair(fp, c, d, prices)
    if plan.procurement is None:
        pytest.skip("no feasible repaired plan on this fleet")
    out = fleet.tidy(fp, plan, prices)
    assert out.objective_usd <= plan.objective_usd + 1e-9
    before = old_usage_per_workload(fp, plan.pair_c, plan.pair_d)
    after = old_usage_per_workload(fp, out.pair_c, out.pair_d)
    assert (after <= before + 1e-9).all()
    assert out.procurement is not None


@pytest.mark.parametrize("seed", range(4))
def test_row_cheapest_equals_a_stable_sort_of_the_pair_costs(seed):
    """paths.row_cheapest (device top_k, chunked) against the host code it replaced: a stable argsort
    of paths.pair_costs, and the reduced costs min over quarters of (cost - the row's cheapest)."""
    fp = _random_problem(400 + seed)
    rng = np.random.default_rng(seed)
    prices = rng.uniform(0.5, 5.0, (len(fp.skus), len(fp.quarters)))
    prices[0] = prices[1]  # equal prices make ties between skus: the lower index must come first
    q, w, cp, cd = fp.options.pre_n.shape
    cost = np.asarray(paths.pair_costs_jit(paths.device_inputs(fp), prices, fp.economics.hours))[:, :, :-1, :-1]
    flat = cost.reshape(q, w, -1)
    want = np.argsort(flat, axis=2, kind="stable")[:, :, :3]
    with np.errstate(invalid="ignore"):
        want_reduced = np.min(flat - np.min(flat, axis=2, keepdims=True), axis=0)
    for chunk in (8192, 4):
        idx, got_cost, reduced = paths.row_cheapest(fp, prices, 3, chunk=chunk)
        finite = np.take_along_axis(flat, want, 2) < np.inf
        np.testing.assert_array_equal(idx[finite], want[finite])
        np.testing.assert_array_equal(got_cost, np.take_along_axis(flat, want, 2))
        np.testing.assert_allclose(reduced, want_reduced, rtol=1e-12)


def test_polish_and_crosscheck_use_node_limits_not_time_limits(monkeypatch):
    """The polish and auto's milp cross-check run HiGHS under a node limit (a work limit), never a time
    limit, so a plan does not depend on the machine's speed; with a generous node limit milp.solve
    still proves the optimum of a small fleet, and twice gives the same plan."""
    from pdfleet.search import lagrangian, milp, solve

    fp = _random_problem(7)
    calls = []
    real = milp.solve

    def spy(problem, *args, **kw):
        calls.append(kw)
        return real(problem, *args, **kw)

    monkeypatch.setattr(milp, "solve", spy)
    res = lagrangian.solve(fp, tol=-1.0)  # a negative tolerance: the polish runs whatever the gap
    assert len(calls) == 1
    out = solve.run(fp, "auto")
    assert len(calls) >= 2 and all(k.get("time_limit") is None and k.get("node_limit") for k in calls), calls
    assert np.isfinite(res.plan.objective_usd) and np.isfinite(out.plan.objective_usd)
    a, b = real(fp, node_limit=10_000), real(fp, node_limit=10_000)
    assert a.optimal
    np.testing.assert_array_equal(a.plan.pair_c, b.plan.pair_c)
    np.testing.assert_array_equal(a.plan.pair_d, b.plan.pair_d)
    assert a.plan.objective_usd == pytest.approx(real(fp).plan.objective_usd, rel=1e-9)
