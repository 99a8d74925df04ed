"""The prefill pool: FIFO servers fed by a dispatch policy, simulated exactly in JAX.

One row (one workload) at a time; pdfleet/simulate/engine.py vmaps it over rows. Requests are given in
index order with non-decreasing arrival_s among the valid ones; `valid` masks padding anywhere.

Policies (name what they do):
- "rr", round robin: the k-th valid request goes to server k mod n. Each server is then its own FIFO
  queue and obeys Lindley's recursion on the waiting time,
      W_k = max(0, W_prev + S_prev - (A_k - A_prev))        (prev = the server's previous request),
  i.e. W -> max(W + x, 0): an affine map in the max-plus semiring. Maps (a, b): W -> max(W + a, b)
  compose associatively, (a1, b1) then (a2, b2) = (a1 + a2, max(b1 + a2, b2)), so all servers are done by
  one `lax.associative_scan` over the requests laid out server by server (a server's first request is
  the constant map (-inf, 0)). The layout is a closed-form permutation: with m valid requests and n
  servers, server s holds q = m // n requests plus one if s < m mod n, starting at s q + min(s, m mod n).
- "least_work": join the server with the least unfinished work (lowest index on ties). The
  Kiefer-Wolfowitz workload vector V (work left on each server, seen by an arrival) follows
      V <- max(V - (A_k - A_prev), 0);  s = argmin V;  W_k = V_s;  V_s <- V_s + S_k
  (J. Kiefer, J. Wolfowitz, "On the theory of queues with many servers", Trans. AMS 78, 1955), run by
  `lax.scan`. This is one central FIFO queue with c servers (M/M/c under Poisson arrivals and exponential
  service: Erlang C), not join-shortest-queue by count.

Both recursions work on waiting times and inter-arrival gaps, never on absolute clock values, so float32
keeps its precision however long the simulated horizon (absolute start/finish are A + W, A + W + S).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

POLICIES = ("rr", "least_work")


def _compose(first, second):
    """Max-plus composition of W -> max(W + a, b) maps: `first` applied before `second`."""
    a1, b1 = first
    a2, b2 = second
    return a1 + a2, jnp.maximum(b1 + a2, b2)


def _rr_waits(arrival_s, service_s, valid, n_servers):
    n_req = arrival_s.shape[0]
    valid = valid.astype(bool)
    rank = jnp.cumsum(valid) - 1  # rank among valid requests
    m = rank[-1] + 1 if n_req else 0
    n = jnp.maximum(n_servers, 1)
    server = rank % n
    pos = rank // n
    q, extra = m // n, m % n
    idx = jnp.arange(n_req)
    dest = jnp.where(valid, server * q + jnp.minimum(server, extra) + pos, m + idx - rank - 1)
    a_s = jnp.zeros_like(arrival_s).at[dest].set(arrival_s, unique_indices=True)
    s_s = jnp.zeros_like(service_s).at[dest].set(service_s, unique_indices=True)
    first = jnp.zeros(n_req, bool).at[dest].set(~valid | (pos == 0), unique_indices=True)
    gap = a_s - jnp.concatenate([a_s[:1], a_s[:-1]])
    prev_s = jnp.concatenate([s_s[:1], s_s[:-1]])
    a = jnp.where(first, -jnp.inf, prev_s - gap)
    _, w_sorted = lax.associative_scan(_compose, (a, jnp.zeros_like(a)))
    wait = jnp.where(valid, w_sorted[dest], 0.0)
    return wait, jnp.where(valid, server, -1)


def _least_work_waits(arrival_s, service_s, valid, n_servers, servers):
    valid = valid.astype(bool)
    last = lax.cummax(jnp.where(valid, arrival_s, -jnp.inf))
    prev = jnp.concatenate([jnp.full((1,), -jnp.inf, arrival_s.dtype), last[:-1]])
    gap = jnp.where(jnp.isfinite(prev), arrival_s - prev, 0.0)
    v0 = jnp.where(jnp.arange(servers) < n_servers, 0.0, jnp.inf).astype(arrival_s.dtype)

    def step(v, x):
        g, s_k, ok = x
        v_now = jnp.maximum(v - g, 0.0)
        s = jnp.argmin(v_now)
        w = v_now[s]
        v_next = v_now.at[s].add(s_k)
        return jnp.where(ok, v_next, v), (jnp.where(ok, w, 0.0), jnp.where(ok, s, -1))

    _, (wait, server) = lax.scan(step, v0, (gap, service_s, valid))
    return wait, server


def pool_waits(arrival_s, service_s, valid, servers: int, n_servers, policy: str):
    """Waiting time in queue [s] and server index per request (0 and -1 where not valid).

    servers: static maximum number of servers; n_servers: the number used (traced, 1 <= n <= servers).
    """
    if policy == "rr":
        return _rr_waits(arrival_s, service_s, valid, n_servers)
    if policy == "least_work":
        return _least_work_waits(arrival_s, service_s, valid, n_servers, servers)
    raise ValueError(f"unknown prefill policy {policy!r}; use one of {', '.join(POLICIES)}")


def pool(arrival_s, service_s, valid, servers: int, n_servers, policy: str):
    """start_s, finish_s, server per request of a FIFO prefill pool (see the module docstring)."""
    wait, server = pool_waits(arrival_s, service_s, valid, servers, n_servers, policy)
    start = arrival_s + wait
    return start, start + service_s, server


pool_jit = jax.jit(pool, static_argnames=("servers", "policy"))
pool_waits_jit = jax.jit(pool_waits, static_argnames=("servers", "policy"))
