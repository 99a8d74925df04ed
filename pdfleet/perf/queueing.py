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

import jax.numpy as jnp


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
