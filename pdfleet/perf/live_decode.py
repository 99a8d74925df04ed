"""Decode under random arrivals: the TPOT requests see at the live batch, not at the mean one.

The paper sizes decode at the batch B* whose measured TPOT meets the SLO, as if the batch sat at its mean.
With Poisson arrivals it does not: the number of requests in decode on one instance, N, fluctuates, and
every token is paid at the step time of the batch it was produced in. Model (used when a workload sets
`slo.tpot_quantile` or planning.tpot_quantile; checked against the simulator in tests/test_queue_models.py):
- N is Poisson with mean m in time (an M/G/inf population: requests do not wait for each other in a
  continuous batch below its limit; its distribution does not depend on the service-time shape).
- An instance then produces E[N / tau(N)] tokens per second, tau(n) the step time at batch n (the
  measured table, seconds). Balance with the demand: E[N / tau(N)] = rate x output_tokens, which fixes m.
- A request sees the batch from inside, size-biased: 1 + Poisson(m). Its TPOT is taken as tau at that
  batch: mean E[tau(1 + N)], quantile q tau(quantile_q(1 + N)). This ignores that one request averages
  over the steps of its life (so the quantile errs high, the safe side).
- A batch may not exceed the limit (largest measured batch, KV memory): m is kept where the 99th
  percentile of 1 + N fits it.
Expectations over the Poisson use Gauss-Hermite quadrature on its normal approximation (mean m, variance
m), and its quantile the Cornish-Fisher correction m + z sqrt(m) + (z^2 - 1) / 6; both are within a few
percent of the exact sums from m ~ 5 up, and at smaller m the TPOT is near the table's first point anyway.
"""

import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtri

from pdfleet.perf import decode, queueing

_NODES, _WEIGHTS = np.polynomial.hermite_e.hermegauss(24)  # probabilists' Hermite: weight exp(-x^2/2)
_WEIGHTS = _WEIGHTS / _WEIGHTS.sum()
_Z99 = 2.3263478740408408
_BISECT = 40


def _expect(f, m):
    """E[f(N)], N ~ Normal(m, m) clipped at 0 (the Poisson(m) approximation). m [...] -> [...]."""
    x = jnp.asarray(_NODES, m.dtype)
    n = jnp.maximum(m[..., None] + jnp.sqrt(m)[..., None] * x, 0.0)
    return jnp.sum(jnp.asarray(_WEIGHTS, m.dtype) * f(n), axis=-1)


def _step_s(batch, table_batch, table_tpot):
    """Step time [s] at a batch; batches below 1 are priced at batch 1 (a step always serves someone)."""
    tb, tt = table_batch[..., None, :], table_tpot[..., None, :]
    return decode.tpot_ms(jnp.maximum(batch, 1.0), tb, tt) * 1e-3


def tokens_per_s(m, table_batch, table_tpot):
    """E[N / tau(N)]: output tokens per second of one instance whose batch is Poisson(m)."""
    return _expect(lambda n: n / _step_s(n, table_batch, table_tpot), m)


def batch_quantile(m, quantile):
    """Quantile of the size-biased batch 1 + Poisson(m) (Cornish-Fisher on the normal approximation)."""
    z = ndtri(jnp.clip(quantile, 1e-6, 1 - 1e-6))
    return 1.0 + jnp.maximum(m + z * jnp.sqrt(m) + (z * z - 1) / 6, 0.0)


def tpot_stat_ms(m, quantile, table_batch, table_tpot):
    """Per-request TPOT [ms] at mean batch m: mean E[tau(1 + N)] (quantile <= 0) or tau at the quantile."""
    mean = _expect(lambda n: _step_s(n + 1.0, table_batch, table_tpot), m) * 1e3
    at_q = decode.tpot_ms(batch_quantile(m, quantile), table_batch, table_tpot)
    return jnp.where(quantile > 0, at_q, mean)


def _largest(fits, hi):
    """Largest m in [0, hi] with fits(m) (fits holds at 0 and fails beyond some point)."""
    return queueing.largest_true(fits, jnp.zeros_like(hi), hi, _BISECT)


def capacity_tokens_per_s(slo_ms, quantile, table_batch, table_tpot, batch_limit):
    """Output tokens/s of one instance at the largest mean batch m whose TPOT statistic meets the SLO and
    whose 99th-percentile batch fits batch_limit; 0 when even a near-empty instance misses the SLO.
    Shapes: slo, quantile, batch_limit [...]; tables [..., K]."""
    def fits(m):
        return (tpot_stat_ms(m, quantile, table_batch, table_tpot) <= slo_ms) & (batch_quantile(m, 0.99) <= batch_limit)

    m = _largest(fits, jnp.maximum(batch_limit, 1.0))
    ok = fits(jnp.full_like(m, 1e-3))
    return jnp.where(ok, tokens_per_s(m, table_batch, table_tpot), 0.0)


def operating_batch(out_tokens_per_s, table_batch, table_tpot, batch_limit):
    """Mean batch m at which one instance carries r output tokens/s (E[N / tau(N)] = r); inf when even
    the batch limit carries less."""
    r = jnp.asarray(out_tokens_per_s)
    hi = jnp.maximum(batch_limit, 1.0)
    m = _largest(lambda m: tokens_per_s(m, table_batch, table_tpot) <= r, hi)
    return jnp.where(tokens_per_s(hi, table_batch, table_tpot) >= r, m, jnp.inf)
