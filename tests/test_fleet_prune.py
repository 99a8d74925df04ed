"""Exact dominance pruning (pdfleet/search/prune.py): a hand-made case for each rule, and on random
fleets with economics the optimum is unchanged (brute force over the unpruned rows, HiGHS with and
without pruning)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from pdfleet.search import milp, prune
from pdfleet.search.problem import Economics, FleetProblem, Options

from fleet_economics import random_economics_doc
from test_fleet_search import brute_force, problem_of

INF = np.inf


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


def hand_problem(pre_n, dec_n, pre_sku, pre_gpi, dec_sku, dec_gpi, switch_usd: float) -> FleetProblem:
    """A one-workload problem from counts [Q, 1, Cp, Cd] / [Q, 1, Cd]; only what pruning reads is real."""
    pre_n, dec_n = np.asarray(pre_n, float), np.asarray(dec_n, float)
    q, _, cp, cd = pre_n.shape
    opts = Options(pre_profile=np.arange(cp)[None], pre_sku=np.asarray(pre_sku)[None],
                   pre_gpi=np.asarray(pre_gpi, float)[None], dec_profile=np.arange(cd)[None],
                   dec_sku=np.asarray(dec_sku)[None], dec_gpi=np.asarray(dec_gpi, float)[None],
                   pre_n=pre_n, dec_n=dec_n, pooled=np.zeros(1, bool),
                   pinned_prefill_need=np.full((pre_n.shape[0], 1), np.nan), pre_rate=np.ones((1, cp, cd)),
                   dec_rate=np.ones((1, cd)), transfer_s=np.zeros((1, cp, cd)))
    z = np.zeros((2, q))
    econ = Economics(z, z + INF, np.ones(2), np.zeros(2), np.full(2, INF), np.ones(2), np.zeros(2), z + INF,
                     z + INF, np.full(q, INF), 2190.0, switch_usd)
    return FleetProblem(["w"], ["a", "b"], [f"q{i}" for i in range(q)], np.ones((q, 1)), opts, econ,
                        np.zeros((q, 1, 2), np.int32), np.ones((q, 1)))


def _prefill_case(c1_second_decode: float, switch_usd: float):
    """Prefill columns on sku a: c0 = 1 instance of 4 GPUs, c1 = 3 instances of 1 GPU (3 GPUs, more
    instances), c2 = c0 again; c3 on sku b. One decode column; two quarters."""
    row = [[1.0, 1.0], [3.0, c1_second_decode], [1.0, 1.0], [1.0, 1.0]]
    pre_n = np.array([row, row])[:, None]  # [Q, 1, Cp=4, Cd=2]
    dec_n = np.ones((2, 1, 2))
    return hand_problem(pre_n, dec_n, [0, 0, 0, 1], [4, 1, 4, 1], [0, 1], [1, 1], switch_usd)


def test_prefill_dominance_by_hand():
    # no switch cost: only GPUs count; c1 (3 GPUs) beats c0 and c2 (4 GPUs); c3 is alone on its sku
    pre, dec = prune.dominated(_prefill_case(3.0, 0.0))
    assert pre[0].tolist() == [True, False, True, False]
    assert dec[0].tolist() == [False, False]
    # with switch costs instances count too: c1 has 3 instances to c0's 1, so neither beats the other;
    # c2 equals c0 and the lower column stays
    pre, _ = prune.dominated(_prefill_case(3.0, 500.0))
    assert pre[0].tolist() == [False, False, True, False]
    # c1 infeasible with decode 1 where c0 is feasible: c1 no longer beats c0
    pre, _ = prune.dominated(_prefill_case(INF, 0.0))
    assert pre[0].tolist() == [False, False, True, False]


def test_decode_dominance_by_hand():
    """Decode d1 uses fewer GPUs than d0 on the same sku; it beats d0 only while every prefill column
    needs no more instances when paired with it (the KV transfer can make the pair slower)."""
    dec_n = np.array([[[2.0, 1.0, 1.0]], [[2.0, 1.0, 1.0]]])  # [Q, 1, Cd=3]; d2 on sku b

    def case(pre_d1):
        pre_n = np.array([[[[1.0, pre_d1, 1.0]]]] * 2)  # [Q, 1, Cp=1, Cd=3]
        return hand_problem(pre_n, dec_n, [0], [1], [0, 0, 1], [1, 1, 1], 0.0)

    assert prune.dominated(case(1.0))[1][0].tolist() == [True, False, False]
    assert prune.dominated(case(2.0))[1][0].tolist() == [False, False, False]  # pair (0, d1) needs more prefill
    assert prune.dominated(case(INF))[1][0].tolist() == [False, False, False]  # pair (0, d1) infeasible


def test_pruning_keeps_the_brute_force_optimum():
    checked = removed = 0
    for seed in range(200):
        rng = np.random.default_rng(20_000 + seed)
        doc = random_economics_doc(20_000 + seed, n_skus=2, n_workloads=2, n_quarters=int(rng.integers(1, 4)),
                                   max_profiles=3)
        fp = problem_of(doc)
        best, n = brute_force(fp)
        if best is None:
            continue
        pruned = prune.prune(fp)
        removed += milp.size(fp) - milp.size(pruned)
        assert brute_force(pruned, limit=n)[0] == pytest.approx(best, rel=1e-9), seed
        assert milp.solve(fp).plan.objective_usd == pytest.approx(best, rel=1e-6), seed  # milp prunes itself
        checked += 1
        if checked >= 8:
            break
    assert checked >= 8 and removed > 0, (checked, removed)


def test_pruned_milp_equals_unpruned_milp_on_random_fleets():
    removed = 0
    for seed in range(8):
        fp = problem_of(random_economics_doc(seed, n_skus=3, n_workloads=3, n_quarters=3))
        full = milp.solve(fp, prune=False)
        cut = milp.solve(fp, prune=True)
        removed += milp.size(fp) - milp.size(prune.prune(fp))
        assert full.optimal and cut.optimal
        assert cut.plan.objective_usd == pytest.approx(full.plan.objective_usd, rel=1e-6), seed
    assert removed > 0
