"""Piecewise-linear reading of a measured table: the one interpolation every kernel uses."""

import jax.numpy as jnp


def interp(x, xp, fp):
    """Linear interpolation of (xp, fp) at x, held constant outside [xp[0], xp[-1]].

    Equals jnp.interp for strictly increasing xp, written as
        fp[0] + sum_k (fp[k+1] - fp[k]) * clip((x - xp[k]) / (xp[k+1] - xp[k]), 0, 1)
    with the sum unrolled over the (static, short) table axis: every term is then an elementwise op
    on the candidate grid, which XLA fuses into one loop; a search or a [..., K] intermediate costs
    about 10x more on CPU (measured: scripts/bench_kernels.py). Shapes: x [...], xp, fp [..., K] -> [...].
    """
    y = fp[..., 0]
    for k in range(xp.shape[-1] - 1):
        step = jnp.clip((x - xp[..., k]) / (xp[..., k + 1] - xp[..., k]), 0.0, 1.0)
        y = y + (fp[..., k + 1] - fp[..., k]) * step
    return y
