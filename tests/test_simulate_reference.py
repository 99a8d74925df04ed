"""The JAX kernels equal the plain NumPy reference (pdfleet/simulate/reference.py) on small random cases,
in x64, request by request: prefill pool (both policies), decode batching (both dispatch rules, a KV
limit that binds, output_tokens = 1, padding), and simulate()'s statistics rebuilt from the reference."""

import jax
import numpy as np
import pytest

from pdfleet.simulate import decode, prefill, reference
from pdfleet.simulate.engine import SimInput, simulate

GRID = np.array([1.0, 4.0, 16.0])
STEP = np.array([0.010, 0.013, 0.030])


def _close(a, b):
    np.testing.assert_allclose(np.asarray(a, np.float64), b, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("policy", ["rr", "least_work"])
def test_pool_equals_reference(policy):
    rng = np.random.default_rng(1)
    for _ in range(6):
        n, servers = 300, int(rng.integers(1, 6))
        arrival = np.cumsum(rng.exponential(1 / (0.9 * servers), n))
        service = rng.exponential(1.0, n) if rng.random() < 0.5 else np.full(n, 0.9)
        valid = rng.random(n) < 0.9
        with jax.enable_x64(True):
            start, finish, server = prefill.pool_jit(arrival, service, valid, servers=6, n_servers=servers,
                                                     policy=policy)
        r_start, r_finish, r_server = reference.pool(arrival, service, valid, servers, policy)
        _close(np.where(valid, start, 0), np.where(valid, r_start, 0))
        _close(np.where(valid, finish, 0), np.where(valid, r_finish, 0))
        np.testing.assert_array_equal(np.asarray(server), r_server)


@pytest.mark.parametrize("dispatch", ["rr", "least_loaded"])
def test_decode_equals_reference(dispatch):
    rng = np.random.default_rng(2)
    for _ in range(6):
        n, inst, max_batch = 200, int(rng.integers(1, 4)), int(rng.integers(1, 7))
        ready = np.sort(rng.uniform(0, n * 0.05 / inst, n))
        ready[5:8] = ready[4]  # ties are dispatched by index
        out = rng.integers(1, 60, n) if _ % 2 else np.full(n, 30)  # fixed lengths: several leave at once
        valid = rng.random(n) < 0.9
        with jax.enable_x64(True):
            start, finish, where, st = decode.decode_jit(ready, out, valid, inst, dispatch, GRID, STEP, max_batch,
                                                         instances=4, slots=8)
        r_start, r_finish, r_where, r_st = reference.decode(ready, out, valid, inst, dispatch, GRID, STEP, max_batch)
        np.testing.assert_array_equal(np.isnan(np.asarray(finish)), ~valid)
        _close(np.where(valid, start, 0), np.where(valid, r_start, 0))
        _close(np.where(valid, finish, 0), np.where(valid, r_finish, 0))
        np.testing.assert_array_equal(np.asarray(where), r_where)
        _close(np.asarray(st["busy_s"])[:inst], r_st["busy_s"])
        _close(np.asarray(st["batch_s"])[:inst], r_st["batch_s"])
        _close(np.asarray(st["tokens_by_batch"])[:max_batch + 1], r_st["tokens_by_batch"])
        assert np.asarray(st["tokens_by_batch"])[max_batch + 1:].sum() == 0
        assert np.nanmax(np.where(valid, r_start - ready, np.nan)) > 0.05  # the KV limit made requests wait


def test_step_time_extrapolates_and_holds():
    """Held at the first point below it, linear inside, along the last segment past the end."""
    with jax.enable_x64(True):
        got = np.asarray(decode.step_time(np.array([0, 1, 2, 16, 20]), GRID, STEP))
    want = [reference.step_time(b, GRID, STEP) for b in [0, 1, 2, 16, 20]]
    _close(got, want)
    _close(got, [0.010, 0.010, 0.011, 0.030, 0.030 + 4 * 0.017 / 12])


def test_simulate_statistics_equal_reference():
    rng = np.random.default_rng(3)
    rows, n = 3, 120
    arrival = np.sort(rng.uniform(0, 40, (rows, n)), axis=1)
    service = rng.exponential(0.5, (rows, n))
    out = rng.integers(1, 40, (rows, n))
    valid = rng.random((rows, n)) < 0.95
    x = SimInput(arrival_s=arrival, input_tokens=np.full((rows, n), 100), output_tokens=out, service_s=service,
                 valid=valid, prefill_servers=np.array([1, 2, 3]), overhead_s=np.array([0.1, 0.2, 0.0]),
                 transfer_s=np.array([0.0, 0.05, 0.01]), decode_instances=np.array([2, 1, 3]),
                 tpot_batch=np.tile(GRID, (rows, 1)), tpot_step_s=np.tile(STEP, (rows, 1)),
                 max_batch=np.array([3, 5, 2]), rate_rps=np.zeros(rows), slo_ttft_s=np.array([1.0, 2.0, 0.5]),
                 slo_tpot_s=np.array([0.02, 0.05, 0.03]))
    with jax.enable_x64(True):
        got = simulate(x, prefill_policy="least_work", decode_dispatch="least_loaded", warmup=0.1, cooldown=0.05)
    for r in range(rows):
        start, done, _ = reference.pool(arrival[r], service[r], valid[r], int(x.prefill_servers[r]), "least_work")
        ready = done + x.transfer_s[r]
        d_start, finish, _, st = reference.decode(ready, out[r], valid[r], int(x.decode_instances[r]),
                                                  "least_loaded", GRID, STEP, int(x.max_batch[r]))
        idx = np.flatnonzero(valid[r])
        m = len(idx)
        keep = idx[int(np.floor(0.1 * m)): m - int(np.floor(0.05 * m))]
        ttft = (done - arrival[r] + x.overhead_s[r])[keep]
        multi = keep[out[r][keep] > 1]
        tpot_ms = 1e3 * (finish - done)[multi] / (out[r][multi] - 1)
        wait = (start - arrival[r])[keep]
        assert got.requests[r] == len(keep)
        _close(got.ttft_mean_s[r], ttft.mean())
        _close([got.ttft_p50_s[r], got.ttft_p90_s[r], got.ttft_p99_s[r]], np.quantile(ttft, [0.5, 0.9, 0.99]))
        _close(got.tpot_mean_ms[r], tpot_ms.mean())
        _close(got.tpot_p90_ms[r], np.quantile(tpot_ms, 0.9))
        _close(got.decode_batch_mean[r], st["batch_s"].sum() / st["busy_s"].sum())
        _close(got.decode_wait_mean_s[r], (d_start - ready)[multi].mean())
        _close(got.prefill_wait_mean_s[r], wait.mean())
        _close(got.prefill_wait_prob[r], (wait > 0).mean())
        ttft_ok = ttft <= x.slo_ttft_s[r]
        tpot_ok = np.ones(len(keep), bool)
        tpot_ok[out[r][keep] > 1] = tpot_ms <= 1e3 * x.slo_tpot_s[r]
        _close(got.ttft_attainment[r], ttft_ok.mean())
        _close(got.tpot_attainment[r], tpot_ok.mean())
        _close(got.slo_attainment[r], (ttft_ok & tpot_ok).mean())
        tokens = st["tokens_by_batch"]
        steps = np.array([reference.step_time(max(b, 1), GRID, STEP) for b in range(len(tokens))])
        _close(got.tpot_token_mean_ms[r], 1e3 * (tokens * steps).sum() / tokens.sum())
        per_token = np.repeat(steps, tokens.astype(int))
        _close(got.tpot_token_p90_ms[r], 1e3 * np.sort(per_token)[int(np.ceil(0.9 * len(per_token))) - 1])
    assert ((got.slo_attainment > 0) & (got.slo_attainment < 1)).any()  # the SLOs cut through some sample


def test_decode_batch_of_one_is_the_prefill_queue():
    """With max_batch = 1 and a flat TPOT curve, each decode instance is a FIFO server with service
    (L_out - 1) x step: rr dispatch over n instances must equal the prefill pool's round robin (the
    max-plus scan, itself checked against M/D/1 and M/M/1) request by request, at scale."""
    rng = np.random.default_rng(4)
    n, inst, dt = 20_000, 3, 0.01
    ready = np.cumsum(rng.exponential(1 / (0.8 * inst / (63 * dt)), n))
    out = rng.integers(2, 128, n)
    ok = np.ones(n, bool)
    with jax.enable_x64(True):
        start, finish, where, _ = decode.decode_jit(ready, out, ok, inst, "rr", np.array([1.0, 2.0]),
                                                    np.array([dt, dt]), 1, instances=inst, slots=1)
        p_start, p_finish, server = prefill.pool_jit(ready, (out - 1) * dt, ok, servers=inst, n_servers=inst,
                                                     policy="rr")
    _close(start, np.asarray(p_start))
    _close(finish, np.asarray(p_finish))
    np.testing.assert_array_equal(np.asarray(where), np.asarray(server))
    assert np.mean(np.asarray(start) > ready) > 0.3  # requests did queue


@pytest.mark.parametrize("dispatch", ["rr", "least_loaded"])
def test_decode_burst_leaves_together(dispatch):
    """A burst of simultaneous arrivals with equal lengths joins at one boundary and leaves at one boundary
    (the kernel takes them one per iteration at the same time): same trajectory as the reference."""
    rng = np.random.default_rng(5)
    n = 60
    ready = np.sort(rng.uniform(0, 3.0, n))
    ready[10:16] = ready[10]
    ready[40:45] = ready[40]
    out = np.full(n, 25)
    ok = np.ones(n, bool)
    with jax.enable_x64(True):
        start, finish, where, st = decode.decode_jit(ready, out, ok, 2, dispatch, GRID, STEP, 6, instances=2, slots=6)
    r_start, r_finish, r_where, r_st = reference.decode(ready, out, ok, 2, dispatch, GRID, STEP, 6)
    assert np.max(np.unique(r_finish, return_counts=True)[1]) >= 3  # several left at one boundary
    _close(start, r_start)
    _close(finish, r_finish)
    np.testing.assert_array_equal(np.asarray(where), r_where)
    _close(np.asarray(st["batch_s"])[:2], r_st["batch_s"])
