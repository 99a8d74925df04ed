"""Piecewise-linear reading of a measured table: the one interpolation every kernel uses."""

import jax.numpy as jnp


def interp(x, xp, fp):
    """Linear interpolation of (xp, fp) at x, held constant outside [xp[0], xp[-1]].

    Equals jnp.interp for strictly increasing xp, written as fp[0] + sum_k (fp[k+1] - fp[k]) *
    clip((x - xp[k]) / (xp[k+1] - xp[k]), 0, 1): K fused multiply-adds and no search, which is several
    times faster than a binary search for the short tables (K <= 64) measurements give.
    Shapes: x [...] broadcast against xp, fp [..., K].
    """
    x = jnp.asarray(x)[..., None]
    frac = jnp.clip((x - xp[..., :-1]) / (xp[..., 1:] - xp[..., :-1]), 0.0, 1.0)
    return fp[..., 0] + jnp.sum(frac * (fp[..., 1:] - fp[..., :-1]), axis=-1)
