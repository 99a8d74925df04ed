"""The paper's case (../shared/PAPER.md) in the simulator, and the simulated TPM limit of a deployment.

DeepSeek-V3.1 on H200 (one 8-GPU node per instance): fixed input 6144 and output 512 tokens, prefill
service 6144 / 28,309 s per request, overhead 0.1 s (it includes the P->D KV transfer, so transfer_s = 0),
decode TPOT table batch 10..60 -> 12.8..26.2 ms, SLOs mean TTFT 2 s and mean TPOT 20 ms; Poisson arrivals
at TPM / 60 / 6656 requests per second. max_batch defaults to 256: the KV memory of an 8 x H200 node holds
far more 6.6k-token requests than the batches these loads reach, so the limit does not bind.

`tpm_limit` bisects the demand at which a deployment stops meeting both SLOs, with common random numbers
(one draw of Exp(1) gaps, scaled by each candidate rate), so that the simulated outcome is monotone in the
demand up to the discreteness of the dynamics. Run `python -m pdfleet.simulate.paper` for the report.
"""

from __future__ import annotations

import numpy as np

from pdfleet.simulate.engine import SimInput, simulate

INPUT_TOKENS, OUTPUT_TOKENS = 6144, 512
TPMAX_PREFILL = 28309.0
OVERHEAD_S = 0.1
TTFT_SLO_S, TPOT_SLO_MS = 2.0, 20.0
TPOT_BATCH = np.array([10.0, 20, 30, 40, 50, 60])
TPOT_MS = np.array([12.8, 16.4, 18.8, 21.6, 23.9, 26.2])


def rate_rps(tpm):
    """Requests per second for a demand in tokens per minute (input + output)."""
    return np.asarray(tpm, np.float64) / 60.0 / (INPUT_TOKENS + OUTPUT_TOKENS)


def closed_form_decode_tpm(decode_instances: int) -> float:
    """Table-based decode limit: B* where the linearly interpolated TPOT reaches the SLO, B*/TPOT tokens/s
    per instance (1,714 here), turned into total TPM."""
    b_star = float(np.interp(TPOT_SLO_MS, TPOT_MS, TPOT_BATCH))
    out_tps = decode_instances * b_star / (TPOT_SLO_MS / 1e3)
    return out_tps * (INPUT_TOKENS + OUTPUT_TOKENS) / OUTPUT_TOKENS * 60.0


def paper_input(tpm, prefill_servers, decode_instances, n_req: int, *, seed: int = 0,
                max_batch: int = 256) -> SimInput:
    """SimInput rows, one per entry of tpm, with Poisson arrivals from common random numbers (the same
    Exp(1) gaps for every row, divided by the row's rate). Simulate with seed=None."""
    tpm = np.atleast_1d(np.asarray(tpm, np.float64))
    r = tpm.shape[0]
    rate = rate_rps(tpm)
    gaps = np.random.default_rng(seed).exponential(size=n_req)
    ones = np.ones((r, n_req))
    per = lambda v, dt=np.float64: np.broadcast_to(np.asarray(v, dt), (r,)).copy()  # noqa: E731
    return SimInput(
        arrival_s=np.cumsum(gaps)[None, :] / rate[:, None], input_tokens=(INPUT_TOKENS * ones).astype(np.int32),
        output_tokens=(OUTPUT_TOKENS * ones).astype(np.int32), service_s=ones * (INPUT_TOKENS / TPMAX_PREFILL),
        valid=ones.astype(bool), prefill_servers=per(prefill_servers, np.int32), overhead_s=per(OVERHEAD_S),
        transfer_s=per(0.0), decode_instances=per(decode_instances, np.int32),
        tpot_batch=np.tile(TPOT_BATCH, (r, 1)), tpot_step_s=np.tile(TPOT_MS / 1e3, (r, 1)),
        max_batch=per(max_batch, np.int32), rate_rps=rate)


def meets(stats) -> np.ndarray:
    """Both SLOs as the paper states them: mean TTFT <= 2 s and mean TPOT <= 20 ms."""
    return (stats.ttft_mean_s <= TTFT_SLO_S) & (stats.tpot_mean_ms <= TPOT_SLO_MS)


def tpm_limit(prefill_servers: int, decode_instances: int, lo: float, hi: float, *, n_req: int = 20000,
              seed: int = 0, tol: float = 0.01e6, **sim):
    """Bisect the largest TPM in [lo, hi] meeting both SLOs (lo must meet them, hi must not).
    Returns (limit_tpm, stats at the limit as a dict of floats)."""
    def run(tpm):
        return simulate(paper_input([tpm], prefill_servers, decode_instances, n_req, seed=seed), None, **sim)

    s_lo, s_hi = run(lo), run(hi)
    if not (meets(s_lo)[0] and not meets(s_hi)[0]):
        raise ValueError(f"tpm_limit: [{lo:.4g}, {hi:.4g}] does not bracket the limit")
    while hi - lo > tol:
        mid = 0.5 * (lo + hi)
        s = run(mid)
        if meets(s)[0]:
            lo, s_lo = mid, s
        else:
            hi = mid
    return lo, {k: float(getattr(s_lo, k)[0]) for k in s_lo._fields}


def main() -> None:
    cases = [(4.8e6, 3, 4), (5.5e6, 3, 4), (4.4e6, 3, 3)]
    s = simulate(paper_input([c[0] for c in cases], [c[1] for c in cases], [c[2] for c in cases], 20000), None)
    for i, (tpm, p, d) in enumerate(cases):
        print(f"{p}P{d}D at {tpm / 1e6:.1f} M TPM: TTFT mean {s.ttft_mean_s[i]:.3f} s, TPOT mean "
              f"{s.tpot_mean_ms[i]:.2f} ms (p90 {s.tpot_p90_ms[i]:.2f}, per token p90 {s.tpot_token_p90_ms[i]:.2f}),"
              f" batch {s.decode_batch_mean[i]:.1f}, meets {bool(meets(s)[i])}")
    limit, at = tpm_limit(3, 3, 3.6e6, 4.4e6)
    print(f"3P3D simulated limit {limit / 1e6:.3f} M TPM (paper measured 3.6 M; table closed form "
          f"{closed_form_decode_tpm(3) / 1e6:.3f} M): TTFT mean {at['ttft_mean_s']:.3f} s, TPOT mean "
          f"{at['tpot_mean_ms']:.2f} ms, per-request p90 {at['tpot_p90_ms']:.2f} ms, per-token p90 "
          f"{at['tpot_token_p90_ms']:.2f} ms, batch {at['decode_batch_mean']:.1f}")


if __name__ == "__main__":
    main()
