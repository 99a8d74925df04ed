"""Queue models beyond M/M/1 (perf/queueing.py) and decode at the live batch (perf/live_decode.py), each
against an independent reference: closed forms, Erlang B by its recursion, brute-force searches, exact
Poisson sums (scipy)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from pdfleet.perf import live_decode, queueing

PAPER_BATCH = [10, 20, 30, 40, 50, 60]
PAPER_TPOT = [12.8, 16.4, 18.8, 21.6, 23.9, 26.2]


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def test_mg1_with_exponential_service_is_the_papers_mm1():
    mu, budget = 28309 / 6144, 1.9
    assert float(queueing.mg1_max_rate(mu, budget, 1.0, 0.0)) == pytest.approx(mu - 1 / budget, rel=1e-12)
    assert float(queueing.mg1_sojourn_s(mu, 3.0, 1.0, 0.0)) == pytest.approx(1 / (mu - 3.0), rel=1e-12)


def test_md1_mean_rate_by_hand():
    # fixed lengths: E[S] = s, E[S^2] = s^2; s + r s^2 / (2 (1 - r s)) = T  =>  r = 2 (T - s) / (s^2 + 2 (T - s) s)
    s, budget = 6144 / 28309, 1.9
    d = budget - s
    expected = 2 * d / (s * s + 2 * d * s)
    rate = float(queueing.mg1_max_rate(1 / s, budget, 0.0, 0.0))
    assert rate == pytest.approx(expected, rel=1e-12)
    assert float(queueing.mg1_sojourn_s(1 / s, rate, 0.0, 0.0)) == pytest.approx(budget, rel=1e-9)


@pytest.mark.parametrize("scv", [0.0, 0.5, 1.0, 2.0])
def test_mg1_quantile_rate_is_the_largest_rate_meeting_the_budget(scv):
    mu, budget, q = 5.0, 1.2, 0.9
    rate = float(queueing.mg1_max_rate(mu, budget, scv, q))
    assert 0 < rate < mu
    assert float(queueing.mg1_sojourn_s(mu, rate, scv, q)) <= budget * (1 + 1e-9)
    assert float(queueing.mg1_sojourn_s(mu, rate * 1.001, scv, q)) > budget
    assert float(queueing.mg1_max_rate(mu, 0.1, scv, q)) == 0.0  # below one service time


def _erlang_c_recursive(c: int, a: float) -> float:
    b = 1.0
    for k in range(1, c + 1):
        b = a * b / (k + a * b)
    return c * b / (c - a * (1 - b))


@pytest.mark.parametrize("c,a", [(1, 0.5), (2, 1.0), (4, 3.2), (16, 12.0), (64, 60.0), (300, 280.0)])
def test_erlang_c_against_the_erlang_b_recursion(c, a):
    assert float(queueing.erlang_c(float(c), a)) == pytest.approx(_erlang_c_recursive(c, a), rel=1e-9)


def test_mmc_with_one_server_is_mm1():
    mu, rate = 2.0, 1.5
    for q, k in ((0.0, 1.0), (0.9, math.log(10)), (0.99, math.log(100))):
        assert float(queueing.mmc_sojourn_s(mu, rate, 1.0, q)) == pytest.approx(k / (mu - rate), rel=1e-9)


def test_mmc_quantile_inverts_the_tail():
    mu, rate, c, q = 1.0, 10.0, 12.0, 0.9
    t = float(queueing.mmc_sojourn_s(mu, rate, c, q))
    assert float(queueing.mmc_tail(mu, rate, c, t)) == pytest.approx(1 - q, rel=1e-6)


@pytest.mark.parametrize("q", [0.0, 0.9])
def test_mmc_servers_is_the_smallest_count_brute_force(q):
    rng = np.random.default_rng(3)
    mu, rate, budget = rng.uniform(0.5, 5, 40), rng.uniform(0.1, 200, 40), rng.uniform(0.5, 4, 40)
    c = np.arange(1, 600, dtype=float)
    meets = np.asarray(queueing.mmc_meets(mu[:, None], rate[:, None], c[None], budget[:, None], q))
    brute = np.where(meets.any(1), c[np.argmax(meets, 1)], np.inf)
    got = np.asarray(queueing.mmc_servers(jnp.asarray(mu), jnp.asarray(rate), jnp.asarray(budget), q, 600.0))
    np.testing.assert_array_equal(got, brute)


def test_pooling_never_needs_more_than_the_split():
    mu, budget = 4.6, 1.9
    per_instance = float(queueing.mm1_max_rate(mu, budget, 1.0))
    rate = np.linspace(1, 200, 25)
    split = np.ceil(rate / per_instance)
    assert (np.asarray(queueing.mmc_servers(mu, jnp.asarray(rate), budget, 0.0, jnp.asarray(split))) <= split).all()


def _poisson_expect(f, m):
    n = np.arange(0, int(m + 12 * math.sqrt(m) + 30))
    return float(np.sum(stats.poisson.pmf(n, m) * f(n)))


@pytest.mark.parametrize("m", [5.0, 12.0, 30.0, 55.0])
def test_live_decode_expectations_against_exact_poisson_sums(m):
    tb, tt = jnp.array(PAPER_BATCH, float), jnp.array(PAPER_TPOT, float)
    step = lambda n: np.interp(np.maximum(n, 1), PAPER_BATCH, PAPER_TPOT) * 1e-3  # noqa: E731
    exact_tps = _poisson_expect(lambda n: n / step(n), m)
    assert float(live_decode.tokens_per_s(jnp.array(m), tb, tt)) == pytest.approx(exact_tps, rel=0.02)
    exact_mean = _poisson_expect(lambda n: step(n + 1), m) * 1e3
    assert float(live_decode.tpot_stat_ms(jnp.array(m), jnp.array(0.0), tb, tt)) == pytest.approx(exact_mean, rel=0.01)
    exact_q = 1 + stats.poisson.ppf(0.9, m)
    assert float(live_decode.batch_quantile(jnp.array(m), jnp.array(0.9))) == pytest.approx(exact_q, abs=1.0)


def test_live_decode_capacity_is_below_the_mean_batch_table():
    """On the paper's table, fluctuating batches lower decode capacity: a little for the mean TPOT (convex
    TPOT curve), more for its 90th percentile; operating_batch inverts tokens_per_s."""
    tb, tt = jnp.array(PAPER_BATCH, float), jnp.array(PAPER_TPOT, float)
    mean = float(live_decode.capacity_tokens_per_s(jnp.array(20.0), jnp.array(0.0), tb, tt, jnp.array(60.0)))
    p90 = float(live_decode.capacity_tokens_per_s(jnp.array(20.0), jnp.array(0.9), tb, tt, jnp.array(60.0)))
    assert 1600 < mean < 1714 and 1300 < p90 < mean
    m = float(live_decode.operating_batch(jnp.array(mean), tb, tt, jnp.array(60.0)))
    assert float(live_decode.tpot_stat_ms(jnp.array(m), jnp.array(0.0), tb, tt)) == pytest.approx(20.0, rel=1e-3)
    assert math.isinf(float(live_decode.operating_batch(jnp.array(5000.0), tb, tt, jnp.array(60.0))))


def _sim_rows(specs):
    """Engine rows (pdfleet.simulate) of Poisson arrivals: (rate, n, mean service s, service scv, output
    tokens, prefill servers, decode instances, seed); decode on the paper's TPOT table."""
    from pdfleet.simulate import engine

    rows = []
    for rate, n, service, scv, out, servers, instances, seed in specs:
        rng = np.random.default_rng(seed)
        s2 = math.log1p(scv)
        svc = service * (np.exp(rng.normal(-s2 / 2, math.sqrt(s2), n)) if scv > 0 else np.ones(n))
        rows.append((np.cumsum(rng.exponential(1 / rate, n)), svc, out, servers, instances, rate))
    r, n = len(rows), len(rows[0][0])
    tb, tt = np.array(PAPER_BATCH, float), np.array(PAPER_TPOT, float) * 1e-3
    return engine.simulate(engine.SimInput(
        np.stack([x[0] for x in rows]), np.full((r, n), 100), np.stack([np.full(n, x[2]) for x in rows]),
        np.stack([x[1] for x in rows]), np.ones((r, n), bool), np.array([x[3] for x in rows]), np.zeros(r),
        np.zeros(r), np.array([x[4] for x in rows]), np.tile(tb, (r, 1)), np.tile(tt, (r, 1)), np.full(r, 4096),
        np.array([x[5] for x in rows])))


def test_mg1_formulas_against_the_simulator():
    """P-K mean within 4%; the p90 approximation within 10% (on the safe side but for a hair at fixed
    lengths: measured -2.4% at rho 0.85). (Measured at 100k requests: the p99 approximation is optimistic
    at rho 0.85 with variable lengths, -15% to -20%: quantiles far out are not what mg1 is for.)"""
    mu, n = 5.0, 60_000
    cases = [(0.0, 0.7), (1.0, 0.7), (2.0, 0.5)]
    stats_ = _sim_rows([(rho * mu, n, 1 / mu, scv, 1, 1, 1, 11 + i) for i, (scv, rho) in enumerate(cases)])
    for k, (scv, rho) in enumerate(cases):
        mean = float(queueing.mg1_sojourn_s(mu, rho * mu, scv, 0.0))
        p90 = float(queueing.mg1_sojourn_s(mu, rho * mu, scv, 0.9))
        assert stats_.ttft_mean_s[k] == pytest.approx(mean, rel=0.04)
        assert 0.97 * stats_.ttft_p90_s[k] <= p90 <= 1.20 * stats_.ttft_p90_s[k]


def test_live_decode_against_the_simulator():
    """3 decode instances of the paper's table at 3.9 M tokens per minute: the live-batch model's mean
    TPOT within 2% of the simulated one, its p90 within 6% and not below it; the table model's mean batch
    is what the simulated instances run at."""
    rate = 3.9e6 / 60 / 6656
    st = _sim_rows([(rate, 20_000, 0.01, 0.0, 512, 3, 3, 5)])
    tb, tt = jnp.array(PAPER_BATCH, float), jnp.array(PAPER_TPOT, float)
    m = live_decode.operating_batch(jnp.array(rate * 512 / 3), tb, tt, jnp.array(4096.0))
    mean = float(live_decode.tpot_stat_ms(m, jnp.array(0.0), tb, tt))
    p90 = float(live_decode.tpot_stat_ms(m, jnp.array(0.9), tb, tt))
    assert st.tpot_mean_ms[0] == pytest.approx(mean, rel=0.02)
    assert st.tpot_p90_ms[0] <= p90 <= 1.06 * st.tpot_p90_ms[0]
    assert st.decode_batch_mean[0] == pytest.approx(float(m), rel=0.03)


def test_a_pinned_pool_reports_what_its_pair_needs_as_its_fractional_count():
    """deploy: pins the instances; instances_fractional of a pooled (mmc) prefill row stays the M/M/c
    count its pair needs at the demand (the unpinned plan's count on the same pair), not the pinned count."""
    from pdfleet import optimize, spec

    from conftest import tiny_fleet

    doc = tiny_fleet(**{"workloads.chat.queue": "mmc", "workloads.chat.rate_rps": {"q1": 40, "q2": 70}})
    free = optimize.run(spec.from_dict(doc)).plan
    rows = free.set_index(["quarter", "role"])
    pre, dec = rows.xs("prefill", level="role"), rows.xs("decode", level="role")
    assert pre["sku"].nunique() == 1 and dec["sku"].nunique() == 1  # one pair in both quarters: pin that one
    extra = 3
    doc["workloads"]["chat"]["deploy"] = {
        "prefill": {"sku": pre["sku"].iloc[0], "gpus_per_instance": int(pre["gpus_per_instance"].iloc[0]),
                    "instances": int(pre["instances"].max()) + extra},
        "decode": {"sku": dec["sku"].iloc[0], "gpus_per_instance": int(dec["gpus_per_instance"].iloc[0]),
                   "instances": int(dec["instances"].max())}}
    pinned = optimize.run(spec.from_dict(doc)).plan
    got = pinned[pinned["role"] == "prefill"].set_index("quarter")
    assert (got["instances"] == pre["instances"].max() + extra).all()
    assert got["instances_fractional"].to_dict() == pytest.approx(pre["instances"].astype(float).to_dict())
