"""Prefill as a queue: the TTFT budget turned into a sustainable request rate per instance.

Kingsoft paper (PAPER.md, eqs. 8-13): each prefill instance is an M/M/1 queue with service rate
mu = TPmax / L_in [req/s]. Its sojourn time (queue + compute) is exponential with rate mu - lambda, so
  mean:        E[sojourn]   = 1 / (mu - lambda)
  quantile q:  sojourn_q    = ln(1 / (1 - q)) / (mu - lambda)
Both are k / (mu - lambda) with k = 1 (mean) or k = ln(1/(1-q)). Requiring sojourn <= T, the budget
T = TTFT - T_overhead, gives lambda_max = mu - k / T, which is the paper's eq. 13 after multiplying by
L_in: TP_prefill = TPmax - L_in / (TTFT - T_overhead). Infeasible when k / T >= mu (the budget is below
k service times): capacity 0.
"""

import jax
import jax.numpy as jnp
from jax.scipy.special import gammaincc, gammaln, ndtri


def sojourn_factor(quantile):
    """k of the formulas above: 1 for the mean (quantile <= 0 encodes 'mean'), ln(1/(1-q)) otherwise."""
    q = jnp.asarray(quantile)
    safe_q = jnp.where(q > 0, q, 0.5)
    return jnp.where(q > 0, -jnp.log1p(-safe_q), 1.0)


def mm1_max_rate(mu, budget_s, k):
    """Largest arrival rate [req/s] whose sojourn statistic stays within budget_s; 0 when unreachable."""
    return jnp.maximum(mu - k / budget_s, 0.0)


def mm1_sojourn_s(mu, rate, k):
    """Sojourn statistic k / (mu - rate) [s]; inf when the queue is unstable (rate >= mu)."""
    gap = mu - rate
    stable = gap > 0
    return jnp.where(stable, k / jnp.where(stable, gap, 1.0), jnp.inf)


# ---------------------------------------------------------------- queue models beyond M/M/1 (DESIGN.md, Prefill)
MM1, MG1, MMC = 0, 1, 2  # codes of planning.queue / workloads.*.queue
QUEUE_CODES = {"mm1": MM1, "mg1": MG1, "mmc": MMC}
_BISECT = 48  # halvings: the bracket shrinks by 2^-48, below float32 and float64-relevant resolution


def largest_true(fits, lo, hi, steps: int = _BISECT):
    """Bisection: the largest x in [lo, hi] with fits(x), for a predicate true at lo and false beyond some
    point (to within (hi - lo) / 2^steps). Shared by every model here and in perf/live_decode.py."""
    def step(_, bracket):
        lo, hi = bracket
        mid = (lo + hi) / 2
        ok = fits(mid)
        return jnp.where(ok, mid, lo), jnp.where(ok, hi, mid)

    lo, _ = jax.lax.fori_loop(0, steps, step, (lo, hi))
    return lo


def _normal_quantile(q):
    return ndtri(jnp.clip(q, 1e-6, 1 - 1e-6))


def service_quantile_s(mu, scv, quantile):
    """Quantile of the service time S = L / TPmax for a length with squared coefficient of variation scv,
    read as a lognormal of mean 1/mu: exp(ln(1/mu) - sigma^2/2 + sigma z_q), sigma^2 = ln(1 + scv).
    Fixed lengths (scv 0) give 1/mu. quantile <= 0 (the mean) gives 1/mu."""
    sigma2 = jnp.log1p(scv)
    z = _normal_quantile(quantile)
    tail = jnp.exp(jnp.sqrt(sigma2) * z - sigma2 / 2)
    return jnp.where(quantile > 0, tail, 1.0) / mu


def mg1_sojourn_s(mu, rate, scv, quantile):
    """M/G/1 sojourn statistic [s] (Pollaczek-Khinchine; M/D/1 for fixed lengths, DistServe's model).

    E[S] = 1/mu, E[S^2] = (1 + scv)/mu^2, rho = rate/mu, E[W] = rate E[S^2] / (2 (1 - rho)) (P-K), and
      mean:       E[S] + E[W]                                               (exact)
      quantile q: S_q + W_q with W_q = E[W]/rho ln(rho/(1-q)) when rho > 1-q, else 0
    The quantile approximation takes the wait as 0 with probability 1 - rho (exact for M/G/1) and, when
    positive, exponential with its conditional mean E[W]/rho (exact for M/M/1, an approximation of the
    M/D/1 tail, which is close to exponential), and adds the service quantile (S and W are independent;
    for the upper tail the sum of quantiles errs high). Checked against the simulator
    (tests/test_queue_models.py). inf when rate >= mu."""
    mu, rate, scv, quantile = (jnp.asarray(x) for x in (mu, rate, scv, quantile))
    rho = rate / mu
    stable = rho < 1
    ew = rate * (1 + scv) / mu**2 / (2 * jnp.where(stable, 1 - rho, 1.0))
    mean = 1 / mu + ew
    safe_rho = jnp.maximum(rho, 1e-30)
    wq = jnp.where(rho > 1 - quantile, ew / safe_rho * jnp.log(safe_rho / (1 - jnp.clip(quantile, 0, 1 - 1e-9))), 0.0)
    stat = jnp.where(quantile > 0, service_quantile_s(mu, scv, quantile) + wq, mean)
    return jnp.where(stable, stat, jnp.inf)


def mg1_max_rate(mu, budget_s, scv, quantile):
    """Largest arrival rate whose M/G/1 sojourn statistic fits budget_s; 0 when unreachable. The mean has a
    closed form (solve E[S] + rate E[S^2] / (2 (1 - rate E[S])) = T: rate = 2d / (E[S^2] + 2 d E[S]),
    d = T - E[S]; with scv = 1 it is mu - 1/T, the paper's eq. 13); a quantile is found by bisection on
    the rate (the statistic rises with it)."""
    mu, budget_s, scv, quantile = (jnp.asarray(x) for x in (mu, budget_s, scv, quantile))
    es = 1 / mu
    d = budget_s - es
    mean_rate = jnp.where(d > 0, 2 * d / ((1 + scv) * es**2 + 2 * d * es), 0.0)

    def fits(rate):
        return mg1_sojourn_s(mu, rate, scv, quantile) <= budget_s

    lo = largest_true(fits, jnp.zeros_like(mu * budget_s), mu * jnp.ones_like(budget_s))
    reachable = service_quantile_s(mu, scv, quantile) < budget_s
    return jnp.where(quantile > 0, jnp.where(reachable, lo, 0.0), mean_rate)


def max_rate(model, mu, budget_s, quantile, scv, mg1: bool = True):
    """Capacity per prefill instance [req/s] under its queue model: M/M/1 (the paper, also the per-instance
    split that mmc is compared with) or M/G/1. An M/M/c pool is sized as a whole (mmc_servers). mg1
    (static) False skips the M/G/1 computation when no row uses it."""
    mm1 = mm1_max_rate(mu, budget_s, sojourn_factor(quantile))
    if not mg1:
        return mm1
    return jnp.where(model == MG1, mg1_max_rate(mu, budget_s, scv, quantile), mm1)


def erlang_c(servers, load):
    """P(wait > 0) in M/M/c with c servers and offered load a = rate/mu < c (Erlang C), from Erlang B as a
    ratio of Poisson terms: B = pmf(c; a) / cdf(c; a), C = c B / (c - a (1 - B)). Run it under x64 for
    hundreds of servers (the log terms cancel to a few units)."""
    c, a = servers, load
    log_pmf = c * jnp.log(jnp.maximum(a, 1e-300)) - a - gammaln(c + 1)
    b = jnp.exp(log_pmf) / gammaincc(c + 1, a)
    return jnp.where(a < c, c * b / (c - a * (1 - b)), 1.0)


def mmc_tail(mu, rate, servers, t):
    """P(sojourn > t) in M/M/c (FIFO): with probability 1 - C no wait and S ~ Exp(mu); with probability C
    a wait W ~ Exp(theta), theta = c mu - rate, plus S: P(W + S > t) = (theta e^-mu t - mu e^-theta t) /
    (theta - mu), and (1 + mu t) e^-mu t when theta = mu."""
    theta = servers * mu - rate
    c_wait = erlang_c(servers, rate / mu)
    close = jnp.abs(theta - mu) < 1e-9 * mu
    both = (theta * jnp.exp(-mu * t) - mu * jnp.exp(-theta * t)) / jnp.where(close, 1.0, theta - mu)
    both = jnp.where(close, (1 + mu * t) * jnp.exp(-mu * t), both)
    return (1 - c_wait) * jnp.exp(-mu * t) + c_wait * both


def _mmc_mean_s(mu, rate, servers):
    """(stable, mean sojourn [s]) of M/M/c: 1/mu + C / (c mu - rate)."""
    stable = rate < servers * mu
    theta = jnp.where(stable, servers * mu - rate, 1.0)
    return stable, 1 / mu + erlang_c(servers, rate / mu) / theta


def mmc_sojourn_s(mu, rate, servers, quantile):
    """M/M/c sojourn statistic [s]: mean 1/mu + C / (c mu - rate); quantile q by bisection of mmc_tail = 1 - q.
    inf when the pool is unstable (rate >= c mu)."""
    stable, mean = _mmc_mean_s(mu, rate, servers)
    theta = jnp.where(stable, servers * mu - rate, 1.0)
    q = jnp.clip(quantile, 0, 1 - 1e-9)
    hi = -jnp.log(1 - q) * (1 / mu + 1 / theta) * 2 + 1 / mu
    t = largest_true(lambda t: mmc_tail(mu, rate, servers, t) > 1 - q, jnp.zeros_like(hi), hi)
    return jnp.where(stable, jnp.where(quantile > 0, t, mean), jnp.inf)


def mmc_meets(mu, rate, servers, budget_s, quantile):
    """True when c servers keep the M/M/c sojourn statistic within budget_s (no bisection: the quantile
    check is P(sojourn > budget) <= 1 - q)."""
    stable, mean = _mmc_mean_s(mu, rate, servers)
    tail_ok = mmc_tail(mu, rate, servers, budget_s) <= 1 - quantile
    return stable & jnp.where(quantile > 0, tail_ok, mean <= budget_s)


def mmc_servers(mu, rate, budget_s, quantile, most):
    """Smallest c <= most with mmc_meets, by bisection over whole numbers (the statistic falls as c grows);
    inf when even `most` servers miss or the budget is below one service statistic. 0 without demand."""
    mu, rate, budget_s, quantile, most = jnp.broadcast_arrays(mu, rate, budget_s, quantile, most)
    lo = jnp.floor(rate / mu)  # unstable at c <= a: lo never meets
    hi = jnp.maximum(most, lo + 1)

    def step(_, bracket):
        lo, hi = bracket
        mid = jnp.floor((lo + hi) / 2)
        ok = mmc_meets(mu, rate, mid, budget_s, quantile)
        return jnp.where(ok, lo, mid), jnp.where(ok, mid, hi)

    lo, hi = jax.lax.fori_loop(0, 40, step, (lo, hi))
    ok = mmc_meets(mu, rate, hi, budget_s, quantile)
    return jnp.where(rate > 0, jnp.where(ok, jnp.maximum(hi, 1.0), jnp.inf), 0.0)
