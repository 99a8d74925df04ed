"""A plain NumPy (float64) implementation of the capacity and exact-search math.

Independent of the JAX kernels on purpose: tests check the kernels against it, and
scripts/bench_kernels.py times it as the baseline. Same formulas as pdfleet/perf (see there for
sources); arrays as in pdfleet.arrays.
"""

from __future__ import annotations

import numpy as np


def _interp_rows(x, xp, fp):
    """np.interp row by row, vectorized: x [...], xp/fp [..., K] (xp increasing), ends held."""
    k = xp.shape[-1]
    idx = np.clip((xp < x[..., None]).sum(-1), 1, k - 1)
    x0 = np.take_along_axis(xp, idx[..., None] - 1, -1)[..., 0]
    x1 = np.take_along_axis(xp, idx[..., None], -1)[..., 0]
    y0 = np.take_along_axis(fp, idx[..., None] - 1, -1)[..., 0]
    y1 = np.take_along_axis(fp, idx[..., None], -1)[..., 0]
    with np.errstate(invalid="ignore"):  # padded rows hold inf
        t = np.clip((x - x0) / (x1 - x0), 0.0, 1.0)
        y = y0 + t * (y1 - y0)
    return np.where(x <= xp[..., 0], fp[..., 0], np.where(x >= xp[..., -1], fp[..., -1], y))


def capacities(problem):
    """prefill_rps, decode_tps [W, C] (0 where infeasible), float64."""
    w, p, cand = problem.workloads, problem.profiles, problem.candidates
    f = lambda a: np.asarray(a, np.float64)  # noqa: E731
    L, out = f(w.input_tokens)[:, None], f(w.output_tokens)[:, None]
    q = f(w.ttft_quantile)[:, None]
    k = np.where(q > 0, -np.log1p(-np.where(q > 0, q, 0.5)), 1.0)
    mu = _interp_rows(np.broadcast_to(L, cand.shape), f(p.prefill_len)[cand], f(p.prefill_tps)[cand]) / L
    rate = np.maximum(mu - k / f(w.budget_s)[:, None], 0.0)
    free = f(p.memory_bytes)[cand] - f(p.weight_bytes)[cand]
    prompt_fits = free >= f(p.kv_bytes_per_token)[cand] * L
    prefill_rps = np.where(p.has_prefill[cand] & (rate > 0) & prompt_fits, rate, 0.0)

    ctx = L + out / 2
    tctx, tvalid = f(p.decode_ctx)[cand], p.decode_valid[cand]  # [W, C, T]
    covers = tvalid & (tctx >= ctx[..., None] * (1 - 1e-6))
    t = np.where(covers.any(-1), np.argmin(np.where(covers, tctx, np.inf), -1),
                 np.argmax(np.where(tvalid, tctx, -np.inf), -1))
    pick = lambda a: np.take_along_axis(f(a)[cand], t[..., None, None], 2)[:, :, 0]  # noqa: E731
    tb, tt = pick(p.decode_batch), pick(p.decode_tpot)
    hi = np.take_along_axis(f(p.decode_hi)[cand], t[..., None], 2)[..., 0]
    slo = f(w.tpot_slo_ms)[:, None, None]
    b0, b1, t0, t1 = tb[..., :-1], tb[..., 1:], tt[..., :-1], tt[..., 1:]
    with np.errstate(divide="ignore", invalid="ignore"):
        cross = b0 + np.clip((slo - t0) / np.where(t1 > t0, t1 - t0, 1.0), 0, 1) * (b1 - b0)
    seg = np.where(t1 <= slo, b1, np.where(t0 <= slo, cross, 0.0)).max(-1)
    best = np.minimum(np.maximum(np.where(tt[..., 0] <= slo[..., 0], tb[..., 0], 0.0), seg), hi)
    bmem = np.floor(np.maximum(f(p.memory_bytes)[cand] - f(p.weight_bytes)[cand], 0)
                    / (f(p.kv_bytes_per_token)[cand] * (L + out)))
    bstar = np.floor(np.minimum(best * (1 + 1e-5), bmem))
    tpot = _interp_rows(np.maximum(bstar, 1.0), tb, tt)
    decode_tps = np.where(p.has_decode[cand] & (bstar >= 1), bstar / (tpot * 1e-3), 0.0)
    valid = problem.candidate_valid
    return np.where(valid, prefill_rps, 0.0), np.where(valid, decode_tps, 0.0)


def cheapest(demand, capacity, price, nearest: bool):
    """Least cost per (quarter, workload): demand [Q, W], capacity/price [W, C] -> cost [Q, W] (inf if none)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(capacity[None] > 0, demand[:, :, None] / capacity[None], np.inf)
    whole = np.floor(frac + 0.5) if nearest else np.ceil(frac * (1 - 8 * np.finfo(np.float32).eps))
    whole = np.where(demand[:, :, None] > 0, np.maximum(whole, 1), 0)
    cost = np.where(np.isfinite(frac), whole * price[None], np.inf)
    return cost.min(-1)
