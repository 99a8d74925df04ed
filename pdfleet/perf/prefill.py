"""Prefill service time of one request from a measured profile.

The paper benchmarks the maximum prefill throughput TPmax [tokens/s] of one instance; the service
time of a request of L input tokens is S(L) = L / TPmax(L). A profile gives TPmax as one number or as
a table over input length. Between measured lengths TPmax is interpolated linearly in L; outside the
measured range it is held at the nearest end (and the plan marks the row `extrapolated`), because a
throughput measured at the nearest length is the only number we have — never an invented trend.
"""

from pdfleet.perf.table import interp


def max_tokens_per_s(length, table_len, table_tps):
    """TPmax at `length`. table_len [K] strictly increasing (padded past the end), table_tps [K]."""
    return interp(length, table_len, table_tps)


def service_rate_rps(length, table_len, table_tps):
    """mu = TPmax(L) / L [req/s]: the M/M/1 service rate of one instance (PAPER.md, eq. 13)."""
    return max_tokens_per_s(length, table_len, table_tps) / length


def outside_range(length, lo, hi):
    """True where `length` lies outside the measured input lengths [lo, hi]."""
    return (length < lo) | (length > hi)
