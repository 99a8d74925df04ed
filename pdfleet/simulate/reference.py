"""The simulator's prefill pool and decode batching in plain NumPy/Python: the slow, literal reference.

Straight loops over requests and over decode steps (one iteration at a time), float64, written
independently of the JAX kernels (pdfleet/simulate/prefill.py, decode.py) so that tests can check the
kernels against it and scripts/bench_simulate.py can time it as the baseline. Same semantics, same tie
rules (lowest index wins a tie; at a step boundary finished requests leave before waiting ones join; a
request that becomes ready exactly at a boundary joins at that boundary).
"""

from __future__ import annotations

from collections import deque

import numpy as np


def pool(arrival_s, service_s, valid, n_servers: int, policy: str):
    """FIFO prefill servers; returns start_s, finish_s, server (nan / -1 where not valid).

    rr: the k-th valid request (in index order) goes to server k mod n. least_work: to the server with the
    least unfinished work at its arrival (lowest index on ties). Arrivals in index order, non-decreasing.
    """
    arrival_s = np.asarray(arrival_s, np.float64)
    service_s = np.asarray(service_s, np.float64)
    n = len(arrival_s)
    start = np.full(n, np.nan)
    finish = np.full(n, np.nan)
    server = np.full(n, -1, np.int64)
    free_at = np.zeros(n_servers)  # when each server finishes the work it holds
    for rank, i in enumerate(np.flatnonzero(valid)):
        a = arrival_s[i]
        if policy == "rr":
            s = rank % n_servers
        elif policy == "least_work":
            s = int(np.argmin(np.maximum(free_at - a, 0.0)))
        else:
            raise ValueError(f"unknown prefill policy {policy!r}; use rr or least_work")
        start[i] = max(a, free_at[s])
        finish[i] = start[i] + service_s[i]
        free_at[s] = finish[i]
        server[i] = s
    return start, finish, server


def step_time(batch, batch_grid, step_s):
    """Step time at an integer batch: linear in the table, held below its first point, extrapolated past
    its last point along the last segment."""
    x = np.asarray(batch_grid, np.float64)
    y = np.asarray(step_s, np.float64)
    if batch >= x[-1]:
        return y[-1] + (y[-1] - y[-2]) / (x[-1] - x[-2]) * (batch - x[-1])
    return float(np.interp(batch, x, y))


class _Instance:
    def __init__(self):
        self.t = 0.0
        self.active = []  # [request, decode steps left]
        self.queue = deque()  # requests dispatched here, not yet in the batch (FIFO)
        self.busy_s = 0.0
        self.batch_s = 0.0  # integral of batch over time


def decode(ready_s, output_tokens, valid, n_instances: int, dispatch: str, batch_grid, step_s,
           max_batch: int):
    """Continuous batching, stepped one iteration at a time.

    Returns decode_start_s, finish_s, instance (per request; nan / -1 where not valid) and a dict with
    busy_s, batch_s (per instance) and tokens_by_batch (decode tokens produced at each batch size).
    Token 1 comes from prefill: a request needs output_tokens - 1 steps; with 1 it starts and finishes at
    ready_s and never joins a batch. Requests are dispatched in order of ready_s (ties by index):
    rr = the k-th to instance k mod n, least_loaded = fewest requests in the batch or waiting there.
    """
    ready_s = np.asarray(ready_s, np.float64)
    n = len(ready_s)
    need = np.asarray(output_tokens, np.int64) - 1
    start = np.full(n, np.nan)
    finish = np.full(n, np.nan)
    inst_of = np.full(n, -1, np.int64)
    insts = [_Instance() for _ in range(n_instances)]
    tokens_by_batch = np.zeros(max_batch + 1)

    def admit(x):
        while x.queue and len(x.active) < max_batch and ready_s[x.queue[0]] <= x.t:
            r = x.queue.popleft()
            start[r] = x.t
            x.active.append([r, need[r]])

    def advance(x, limit):
        """Run x through every step boundary (or idle jump) strictly before `limit`."""
        while True:
            if x.active:
                dt = step_time(len(x.active), batch_grid, step_s)
                if x.t + dt >= limit:
                    return
                b = len(x.active)
                x.t += dt
                x.busy_s += dt
                x.batch_s += b * dt
                tokens_by_batch[b] += b
                for a in x.active:
                    a[1] -= 1
                for r, left in x.active:
                    if left == 0:
                        finish[r] = x.t
                x.active = [a for a in x.active if a[1] > 0]
                admit(x)
            elif x.queue and ready_s[x.queue[0]] < limit:
                x.t = max(x.t, ready_s[x.queue[0]])
                admit(x)
            else:
                return

    joins = np.asarray(valid, bool) & (need > 0)
    ones = np.asarray(valid, bool) & (need <= 0)
    start[ones] = ready_s[ones]
    finish[ones] = ready_s[ones]
    order = np.flatnonzero(joins)
    order = order[np.argsort(ready_s[order], kind="stable")]
    for k, r in enumerate(order):
        for x in insts:
            advance(x, ready_s[r])
        if dispatch == "rr":
            j = k % n_instances
        elif dispatch == "least_loaded":
            j = int(np.argmin([len(x.active) + len(x.queue) for x in insts]))
        else:
            raise ValueError(f"unknown decode dispatch {dispatch!r}; use rr or least_loaded")
        insts[j].queue.append(r)
        inst_of[r] = j
    for x in insts:
        advance(x, np.inf)
    stats = {"busy_s": np.array([x.busy_s for x in insts]), "batch_s": np.array([x.batch_s for x in insts]),
             "tokens_by_batch": tokens_by_batch}
    return start, finish, inst_of, stats
