"""Decode capacity from a measured TPOT-vs-batch table (the paper's empirical method).

TPOT(B) is interpolated piecewise-linearly in the batch B between measured points. Why linear: it
passes through every measurement (a least-squares polynomial, like the paper's quadratic script, does
not), it never overshoots between points, and a decode step is memory-bound, so its time grows close to
linearly in B (weights once + B KV caches). Outside the table nothing is extrapolated: batches above
the largest measured one are not used, and below the smallest the smallest's TPOT is assumed (a smaller
batch is never slower, so this is conservative).

Tables reach these kernels as their running maximum (spec.DecodeTable.tpot_envelope): a larger batch is
never assumed faster, so every batch up to B* meets the SLO too.

B* = the largest whole batch <= the KV-memory limit with TPOT(B) <= SLO; capacity = B* / TPOT(B*)
output tokens/s per instance (PAPER.md, "Decode under a TPOT SLO").
"""

import jax.numpy as jnp

from pdfleet.perf.table import interp

_EPS = 1e-5  # relative slack so a batch that meets the SLO exactly is not lost to rounding


def mean_context(input_tokens, output_tokens):
    """Mean context a decode step of a request sees over its life: input + output / 2 (DESIGN.md)."""
    return input_tokens + output_tokens / 2


def tpot_ms(batch, table_batch, table_tpot):
    """TPOT [ms] at `batch` by linear interpolation, held at the ends. Tables [K], padded past the end."""
    return interp(batch, table_batch, table_tpot)


def largest_batch_within(slo_ms, table_batch, table_tpot, batch_hi):
    """Largest real batch B in [b_0, batch_hi] with interpolated TPOT(B) <= slo_ms; 0 if none.

    Looks at every segment [b_k, b_k+1]: if its right end meets the SLO the whole segment does,
    else if its left end does the crossing point is b_k + (slo - t_k)/(t_k+1 - t_k) (b_k+1 - b_k).
    Taking the max over segments handles noisy, non-monotone tables. Unrolled over the table axis
    (see pdfleet.perf.table.interp for why). Shapes: slo [...], tables [..., K] -> [...].
    """
    b, t = table_batch, table_tpot
    best = jnp.where(t[..., 0] <= slo_ms, b[..., 0], 0.0)
    for k in range(b.shape[-1] - 1):
        b0, b1, t0, t1 = b[..., k], b[..., k + 1], t[..., k], t[..., k + 1]
        rising = t1 > t0
        frac = (slo_ms - t0) / jnp.where(rising, t1 - t0, 1.0)
        crossing = b0 + jnp.clip(frac, 0.0, 1.0) * (b1 - b0)
        best = jnp.maximum(best, jnp.where(t1 <= slo_ms, b1, jnp.where(t0 <= slo_ms, crossing, 0.0)))
    return jnp.minimum(best, batch_hi)


def max_batch_memory(memory_bytes, weight_bytes, kv_bytes_per_token, context_tokens):
    """B_mem = floor((usable memory - weights) / (KV bytes per token x tokens per request)) (DESIGN.md)."""
    free = memory_bytes - weight_bytes
    return jnp.floor(jnp.maximum(free, 0.0) / (kv_bytes_per_token * context_tokens))


def best_batch(slo_ms, table_batch, table_tpot, batch_hi, batch_mem):
    """B*: whole batch meeting the TPOT SLO and the KV limit; 0 when no batch does."""
    b = largest_batch_within(slo_ms, table_batch, table_tpot, batch_hi)
    return jnp.floor(jnp.minimum(b * (1.0 + _EPS), batch_mem))


def capacity_tokens_per_s(bstar, table_batch, table_tpot):
    """B* / TPOT(B*) output tokens/s of one instance; 0 when B* = 0."""
    t = tpot_ms(jnp.maximum(bstar, 1.0), table_batch, table_tpot)
    return jnp.where(bstar >= 1.0, bstar / (t * 1e-3), 0.0)


def operating_batch(out_tokens_per_s, table_batch, table_tpot, batch_max):
    """Mean decode batch B at a load of r output tokens/s per instance: the smallest B = r TPOT(B).

    Little's law: requests in decode = arrival rate of tokens x time per token. g(B) = B - r TPOT(B)
    starts negative at B = 0, so the smallest root is where the batch settles. Solved exactly on each
    linear piece: below b_0, B = r t_0; on [b_k, b_k+1] with slope s_k, B = r (t_k - s_k b_k) / (1 - r s_k).
    inf when no root lies within batch_max (the allocation cannot carry the load). Unrolled over the
    table axis. Shapes: r and batch_max [...], tables [..., K] -> [...].
    """
    r = jnp.asarray(out_tokens_per_s) * 1e-3  # tokens per ms
    b, t = table_batch, table_tpot
    below = r * t[..., 0]
    best = jnp.where(below <= b[..., 0], below, jnp.inf)
    for k in range(b.shape[-1] - 1):
        b0, b1, t0, t1 = b[..., k], b[..., k + 1], t[..., k], t[..., k + 1]
        slope = (t1 - t0) / (b1 - b0)
        denom = 1.0 - r * slope
        ok = denom > 0
        root = r * (t0 - slope * b0) / jnp.where(ok, denom, 1.0)
        best = jnp.minimum(best, jnp.where(ok & (root >= b0) & (root <= b1), root, jnp.inf))
    return jnp.where(best <= batch_max, best, jnp.inf)
