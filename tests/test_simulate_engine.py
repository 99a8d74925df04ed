"""The simulator against closed forms (M/M/1, M/D/1, Erlang C) and its input checks.

Closed forms (written here, independent of the engine):
- M/M/1: sojourn ~ Exp(mu - lambda): mean 1 / (mu - lambda), p90 ln(10) / (mu - lambda).
- M/D/1: mean sojourn D + rho D / (2 (1 - rho)) (Pollaczek-Khinchine); waiting-time CDF by Erlang's
  formula P(W <= t) = (1 - rho) sum_{k=0}^{floor(t/D)} (lambda (kD - t))^k / k! e^{-lambda (kD - t)},
  summed exactly in rationals (Fraction, with e^x from a 60-digit Decimal) so the alternating terms do not
  cancel in floating point; p90 sojourn = D + the 0.9 quantile of W (bisection).
- M/M/c (least_work = one FIFO queue, c servers): Erlang C
  P(wait > 0) = (a^c / c! c / (c - a)) / (sum_{k<c} a^k / k! + a^c / c! c / (c - a)), a = lambda / mu,
  mean wait = P(wait > 0) / (c mu - lambda).
"""

import math
from decimal import Decimal, getcontext
from fractions import Fraction

import jax
import numpy as np
import pytest

from pdfleet.simulate import prefill
from pdfleet.simulate.engine import SimInput, pad_rows, poisson_arrivals, simulate

N = 1_000_000  # >= 200,000; a million keeps the sampling error (autocorrelated at these loads) near 1%


def _arrivals(rate, seed, n=N):
    with jax.enable_x64(True):
        return np.asarray(poisson_arrivals(jax.random.PRNGKey(seed), rate, n))


def _sojourn(arrival, service, servers, policy):
    with jax.enable_x64(True):
        ok = np.ones(len(arrival), bool)
        wait, _ = prefill.pool_waits_jit(arrival, service, ok, servers, servers, policy)
        return np.asarray(wait), np.asarray(wait) + service


def _exp_decimal(x: Fraction) -> Fraction:
    getcontext().prec = 60
    return Fraction((Decimal(x.numerator) / Decimal(x.denominator)).exp())


def md1_wait_cdf(t: float, lam: float, d: float) -> float:
    """Erlang's M/D/1 waiting-time distribution P(W <= t), in exact rationals."""
    lam_f, d_f, t_f = Fraction(lam), Fraction(d), Fraction(t)
    rho = lam_f * d_f
    total = Fraction(0)
    for k in range(int(t // d) + 1):
        x = lam_f * (k * d_f - t_f)
        total += x ** k / math.factorial(k) * _exp_decimal(-x)
    return float((1 - rho) * total)


def md1_wait_quantile(q: float, lam: float, d: float) -> float:
    lo, hi = 0.0, d
    while md1_wait_cdf(hi, lam, d) < q:
        hi *= 2
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if md1_wait_cdf(mid, lam, d) < q else (lo, mid)
    return hi


def erlang_c(c: int, a: float) -> float:
    top = a ** c / math.factorial(c) * c / (c - a)
    return top / (sum(a ** k / math.factorial(k) for k in range(c)) + top)


def test_md1_cdf_sane():
    """Erlang's formula: P(W = 0) = 1 - rho, and its mean matches Pollaczek-Khinchine rho D / (2 (1 - rho))."""
    lam, d = 0.8, 1.0
    assert md1_wait_cdf(0.0, lam, d) == pytest.approx(0.2, rel=1e-12)
    ts = np.linspace(0, 30, 601)
    tail = np.array([1 - md1_wait_cdf(t, lam, d) for t in ts])
    assert np.trapezoid(tail, ts) == pytest.approx(0.8 / (2 * 0.2), rel=2e-3)


@pytest.mark.parametrize("policy", ["rr", "least_work"])
def test_mm1_sojourn(policy):
    mu, rho = 1.0, 0.8
    lam = rho * mu
    arrival = _arrivals(lam, 1)
    with jax.enable_x64(True):
        service = np.asarray(jax.random.exponential(jax.random.PRNGKey(2), (N,), np.float64)) / mu
    _, sojourn = _sojourn(arrival, service, 1, policy)
    assert sojourn.mean() == pytest.approx(1 / (mu - lam), rel=0.03)
    assert np.quantile(sojourn, 0.9) == pytest.approx(math.log(10) / (mu - lam), rel=0.03)


def test_md1_sojourn():
    d, rho = 1.0, 0.8
    lam = rho / d
    arrival = _arrivals(lam, 3)
    _, sojourn = _sojourn(arrival, np.full(N, d), 1, "rr")
    assert sojourn.mean() == pytest.approx(d + rho * d / (2 * (1 - rho)), rel=0.03)
    assert np.quantile(sojourn, 0.9) == pytest.approx(d + md1_wait_quantile(0.9, lam, d), rel=0.03)


@pytest.mark.parametrize("c", [4, 16])
def test_erlang_c_least_work(c):
    mu, rho, n = 1.0, 0.8, 2 * N  # the mean wait of M/M/16 needs the longer run for 3%
    lam = rho * c * mu
    arrival = _arrivals(lam, 10 + c, n)
    with jax.enable_x64(True):
        service = np.asarray(jax.random.exponential(jax.random.PRNGKey(20 + c), (n,), np.float64)) / mu
    wait, _ = _sojourn(arrival, service, c, "least_work")
    p_wait = erlang_c(c, lam / mu)
    assert (wait > 0).mean() == pytest.approx(p_wait, rel=0.03)
    assert wait.mean() == pytest.approx(p_wait / (c * mu - lam), rel=0.03)


def test_rr_pool_waits_more_than_least_work():
    """Round robin splits Poisson arrivals into c Erlang-c streams, each an E_c/M/1 queue: it waits more
    than one central queue (least_work) at the same load; the same c = 1 queue gives the same waits."""
    lam, c = 3.4, 4
    arrival = _arrivals(lam, 5)[:50_000]
    service = np.random.default_rng(0).exponential(size=50_000)
    with jax.enable_x64(True):
        ok = np.ones(50_000, bool)
        w_rr = np.asarray(prefill.pool_waits_jit(arrival, service, ok, 4, c, "rr")[0])
        w_lw = np.asarray(prefill.pool_waits_jit(arrival, service, ok, 4, c, "least_work")[0])
        one_rr = np.asarray(prefill.pool_waits_jit(arrival / 4, service, ok, 4, 1, "rr")[0])
        one_lw = np.asarray(prefill.pool_waits_jit(arrival / 4, service, ok, 4, 1, "least_work")[0])
    assert w_rr.mean() > 1.5 * w_lw.mean()
    np.testing.assert_allclose(one_rr, one_lw, rtol=1e-9, atol=1e-9)


def _tiny_input(**over):
    r, n = 2, 50
    x = dict(arrival_s=np.tile(np.arange(n) * 0.5, (r, 1)), input_tokens=np.full((r, n), 100),
             output_tokens=np.full((r, n), 20), service_s=np.full((r, n), 0.3), valid=np.ones((r, n), bool),
             prefill_servers=np.array([1, 2]), overhead_s=np.array([0.1, 0.0]), transfer_s=np.array([0.0, 0.05]),
             decode_instances=np.array([1, 2]), tpot_batch=np.tile([1.0, 8.0], (r, 1)),
             tpot_step_s=np.tile([0.01, 0.02], (r, 1)), max_batch=np.array([4, 8]), rate_rps=np.array([2.0, 3.0]))
    x.update(over)
    return SimInput(**x)


def test_simulate_deterministic_per_seed_chunking_and_row_loop():
    a = simulate(_tiny_input(), seed=7, parallel_rows=True)
    b = simulate(_tiny_input(), seed=7, chunk_rows=1)
    c = simulate(_tiny_input(), seed=8)
    for k in a._fields:
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k))
    assert not np.array_equal(a.ttft_mean_s, c.ttft_mean_s)


def test_simulate_hand_case():
    """One request every 0.5 s, service 0.3 s, 19 decode steps of 10 ms alone in its batch (B = 1):
    nobody waits, TTFT = 0.3 + overhead, TPOT = (transfer + 19 x 0.01) / 19."""
    s = simulate(_tiny_input(), warmup=0.0, cooldown=0.0, chunk_rows=1)
    np.testing.assert_allclose(s.ttft_mean_s, [0.4, 0.3], rtol=1e-6)
    np.testing.assert_allclose(s.ttft_p99_s, [0.4, 0.3], rtol=1e-6)
    np.testing.assert_allclose(s.tpot_mean_ms, [10.0, (0.05 + 0.19) / 19 * 1e3], rtol=1e-5)
    np.testing.assert_allclose(s.decode_batch_mean, [1.0, 1.0], rtol=1e-6)
    np.testing.assert_allclose(s.prefill_wait_prob, [0.0, 0.0])
    np.testing.assert_allclose(s.requests, [50, 50])


@pytest.mark.parametrize("field, value, message", [
    ("prefill_servers", np.array([0, 1]), "prefill_servers"),
    ("max_batch", np.array([0, 1]), "max_batch"),
    ("tpot_batch", np.tile([8.0, 1.0], (2, 1)), "tpot_batch"),
    ("output_tokens", np.zeros((2, 50), int), "output_tokens"),
    ("arrival_s", np.tile(np.arange(50)[::-1] * 1.0, (2, 1)), "arrival_s"),
])
def test_simulate_rejects_bad_input(field, value, message):
    with pytest.raises(ValueError, match=message):
        simulate(_tiny_input(**{field: value}))


def test_simulate_trace_clock_is_rebased():
    """Absolute timestamps (a trace in epoch seconds) give the same statistics as times from 0: float32
    could not resolve 10 ms steps at 1.7e9 s."""
    base = simulate(_tiny_input(), chunk_rows=1)
    late = simulate(_tiny_input(arrival_s=np.tile(np.arange(50) * 0.5 + 1.7e9, (2, 1))), chunk_rows=1)
    for k in base._fields:
        np.testing.assert_allclose(getattr(late, k), getattr(base, k), rtol=1e-6)


def test_pad_rows():
    out, valid = pad_rows([np.array([1.0, 2.0]), np.array([3.0]), np.array([])], fill=-1.0)
    np.testing.assert_array_equal(out, [[1.0, 2.0], [3.0, -1.0], [-1.0, -1.0]])
    np.testing.assert_array_equal(valid, [[True, True], [True, False], [False, False]])


def test_simulate_empty_row_is_nan_not_zero():
    valid = np.ones((2, 50), bool)
    valid[1] = False
    s = simulate(_tiny_input(valid=valid), chunk_rows=1)
    assert s.requests[1] == 0 and s.requests[0] == 50 - 2 - 2  # floor(5% of 50) off each end
    assert np.isnan(s.ttft_mean_s[1]) and np.isnan(s.tpot_mean_ms[1]) and np.isnan(s.ttft_p90_s[1])
    assert np.isfinite(s.ttft_mean_s[0])
