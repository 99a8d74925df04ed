"""Instance counts from demand and per-instance capacity (PAPER.md, eqs. 5-7).

N_prefill = TP_total L_in / ((L_in + L_out) TP_prefill) and N_decode = TP_total L_out /
((L_in + L_out) TP_decode) are, with the request rate lambda = TP_total / (L_in + L_out),
simply lambda / capacity_rps (prefill) and lambda L_out / capacity_tokens_per_s (decode).
"""

import jax.numpy as jnp

# ceil() of a ratio that is an integer up to rounding noise must not add an instance: a few ulps.
_CEIL_ULPS = 8


def fractional_instances(demand, capacity):
    """demand / capacity in the same unit; inf where capacity is 0 and demand is positive."""
    has_cap = capacity > 0
    return jnp.where(has_cap, demand / jnp.where(has_cap, capacity, 1.0), jnp.where(demand > 0, jnp.inf, 0.0))


def round_instances(fractional, nearest: bool):
    """Whole instances: ceil (SLO-safe default) or nearest, half up (the paper's 3P4D); never 0 for
    positive demand."""
    fractional = jnp.asarray(fractional)
    if nearest:
        whole = jnp.floor(fractional + 0.5)  # half up (jnp.round would take 2.5 to 2)
    else:
        whole = jnp.ceil(fractional * (1.0 - _CEIL_ULPS * jnp.finfo(fractional.dtype).eps))
    return jnp.where(fractional > 0, jnp.maximum(whole, 1.0), 0.0)


def pd_ratio(prefill_fractional, decode_fractional):
    """R_P/D = N_prefill / N_decode (eq. 7), from the fractional counts; NaN when either is missing."""
    ok = (decode_fractional > 0) & jnp.isfinite(prefill_fractional)
    return jnp.where(ok, prefill_fractional / jnp.where(ok, decode_fractional, 1.0), jnp.nan)
