"""Decode as continuous batching, one simulated row at a time (engine.py maps it over rows).

Model (the same as pdfleet/simulate/reference.py, which steps literally one iteration at a time):
- Token 1 of a request comes from prefill (it is in TTFT); decode produces tokens 2..L_out, so a request
  needs L_out - 1 steps. With L_out = 1 it costs no step: decode_start = finish = ready_s.
- Requests are dispatched to an instance when their KV cache is ready (ready_s), in that order (ties by
  index): "rr" = the k-th to instance k mod n; "least_loaded" = the instance holding the fewest requests
  (in its batch or waiting for it; lowest index on ties).
- Each instance runs steps back to back while its batch B > 0; a step takes step_s(B) (the TPOT curve,
  `step_time`) and gives one token to each of the B requests. A request that got its last token leaves at
  the end of the step; then waiting requests that are ready join, FIFO, while B < max_batch (the KV-memory
  limit: admission waits when the batch is full). A request ready exactly at a boundary joins there. An
  idle instance jumps to the next ready request.
Between two events (a request leaving, a request joining) the batch and so the step time are constant, so
the loop jumps from event to event: k steps of step_s(B) at once, which is the same trajectory as
stepping k times. Event loop (`lax.while_loop`, branch-free body): each iteration either dispatches the
next ready request or advances the instance with the earliest event (ties: dispatch first), where at
most one request leaves and one joins (several at one boundary take several iterations at the same time,
zero steps apart: the same trajectory). About three iterations per request; each touches one instance's
slots (O(slots)), so the cost is linear in N.

Outputs per request: decode_start_s (joined a batch), finish_s (last token), instance; per row:
busy_s[I] and batch_s[I] (integral of B dt) per instance, tokens_by_batch[slots + 1] (decode tokens
produced at each batch size: the token-weighted distribution of the inter-token time step_s(B)).
Per-request TPOT = (finish_s - first_token_s) / (output_tokens - 1), first_token_s = prefill finish.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from pdfleet.perf.table import interp

DISPATCH = ("rr", "least_loaded")
_BIG = jnp.iinfo(jnp.int32).max


def step_time(batch, batch_grid, step_s):
    """Step time at batch `batch` from the TPOT curve (batch_grid[K] increasing, step_s[K], K >= 2):
    linear interpolation, held at step_s[0] below batch_grid[0], extrapolated along the last segment past
    batch_grid[-1] (a step cannot get cheaper as the batch grows)."""
    b = jnp.asarray(batch, step_s.dtype)
    slope = (step_s[-1] - step_s[-2]) / (batch_grid[-1] - batch_grid[-2])
    return interp(b, batch_grid, step_s) + slope * jnp.maximum(b - batch_grid[-1], 0.0)


def decode(ready_s, output_tokens, valid, n_instances, dispatch: str, batch_grid, step_s, max_batch, *,
           instances: int, slots: int):
    """Continuous batching of one row (see the module docstring).

    ready_s[N] (KV cache at decode), output_tokens[N] (int), valid[N]; n_instances (traced, 1 <= n <=
    instances, static max); batch_grid/step_s[K]: the TPOT curve [batch], [s]; max_batch (traced,
    1 <= max_batch <= slots, static). Returns (decode_start_s[N], finish_s[N], instance[N], stats) with
    stats = {busy_s[I], batch_s[I], tokens_by_batch[slots + 1]}; nan / -1 where not valid.
    """
    if dispatch not in DISPATCH:
        raise ValueError(f"unknown decode dispatch {dispatch!r}; use one of {', '.join(DISPATCH)}")
    f = ready_s.dtype
    n_req = ready_s.shape[0]
    inst_ids = jnp.arange(instances)
    slot_ids = jnp.arange(slots)
    need = output_tokens.astype(jnp.int32) - 1
    valid = valid.astype(bool)
    joins = valid & (need > 0)
    order = jnp.argsort(jnp.where(joins, ready_s, jnp.inf), stable=True)
    m = jnp.sum(joins)
    r_sorted = ready_s[order]
    need_sorted = need[order]

    def plan(st, x):
        """Next event of instance x from its state: (time, steps to it, whether the queue head may join)."""
        t = st["t"][x]
        b = st["batch"][x]
        head = st["head"][x]
        has_q = head >= 0
        rh = r_sorted[jnp.maximum(head, 0)]
        can_admit = has_q & (b < max_batch)
        dt = step_time(jnp.maximum(b, 1), batch_grid, step_s)
        k_done = jnp.min(jnp.where(st["req"][x] >= 0, st["left"][x], _BIG))
        k_adm = jnp.where(rh <= t, 0, jnp.maximum(1, jnp.minimum(jnp.ceil((rh - t) / dt), 2.0**30).astype(jnp.int32)))
        k_adm = jnp.where(can_admit, k_adm, _BIG)
        k = jnp.minimum(k_done, k_adm)
        busy_e = t + k.astype(f) * dt
        idle_e = jnp.where(has_q, jnp.maximum(t, rh), jnp.inf)
        idle = b == 0
        ev_t = jnp.where(idle, idle_e, busy_e)
        ev_k = jnp.where(idle, 0, k)
        ev_adm = jnp.where(idle, has_q, k_adm <= k_done)
        return {**st, "ev_t": st["ev_t"].at[x].set(ev_t), "ev_k": st["ev_k"].at[x].set(ev_k),
                "ev_adm": st["ev_adm"].at[x].set(ev_adm)}

    def dispatch_next(st, on):
        """Dispatch request p to an instance's queue; the identity where `on` is false."""
        p = st["p"]
        if dispatch == "rr":
            j = (p % n_instances).astype(jnp.int32)
        else:
            j = jnp.argmin(jnp.where(inst_ids < n_instances, st["count"], _BIG)).astype(jnp.int32)
        tail = st["tail"][j]
        st = {**st, "nxt": st["nxt"].at[jnp.where(on & (tail >= 0), tail, n_req)].set(p, mode="drop"),
              "head": st["head"].at[j].set(jnp.where(on & (tail < 0), p, st["head"][j])),
              "tail": st["tail"].at[j].set(jnp.where(on, p, tail)), "count": st["count"].at[j].add(on),
              "inst": st["inst"].at[jnp.where(on, p, n_req)].set(j, mode="drop"), "p": p + on}
        return st, j

    def advance(st, on):
        """Run the instance with the earliest event to it: k steps, one leaver out, one ready waiter in;
        the identity where `on` is false (k = 0 steps, nobody leaves or joins)."""
        x = jnp.argmin(st["ev_t"]).astype(jnp.int32)
        t_new = jnp.where(on, st["ev_t"][x], st["t"][x])
        k = jnp.where(on, st["ev_k"][x], 0)
        b = st["batch"][x]
        dt = step_time(jnp.maximum(b, 1), batch_grid, step_s)
        span = jnp.where(b > 0, k.astype(f) * dt, 0.0)
        req = st["req"][x]
        active = req >= 0
        left = jnp.where(active, st["left"][x] - k, _BIG)
        # one request that got its last token leaves (others done at the same boundary leave in the next
        # iterations, k = 0 steps, same time: one-element updates are far cheaper than a slots-wide scatter)
        done = active & (left == 0)
        leaves = on & jnp.any(done)
        gone = jnp.argmax(done)
        finish = st["finish"].at[jnp.where(leaves, req[gone], n_req)].set(t_new, mode="drop")
        req = jnp.where(leaves & (slot_ids == gone), -1, req)
        left = jnp.where(leaves & (slot_ids == gone), _BIG, left)
        n_done = leaves.astype(jnp.int32)
        b_after = b - n_done
        # one waiting request joins, if it is ready and the batch has room
        head = st["head"][x]
        rh = r_sorted[jnp.maximum(head, 0)]
        join = on & (head >= 0) & (b_after < max_batch) & (st["ev_adm"][x] | (rh <= t_new))
        slot = jnp.argmin(req >= 0)  # first free slot
        req = jnp.where(join & (slot_ids == slot), head, req)
        left = jnp.where(join & (slot_ids == slot), need_sorted[jnp.maximum(head, 0)], left)
        start = st["start"].at[jnp.where(join, head, n_req)].set(t_new, mode="drop")
        new_head = jnp.where(join, st["nxt"][jnp.maximum(head, 0)], head)
        st = {**st, "t": st["t"].at[x].set(t_new), "req": st["req"].at[x].set(req),
              "left": st["left"].at[x].set(left), "batch": st["batch"].at[x].set(b_after + join),
              "head": st["head"].at[x].set(new_head),
              "tail": st["tail"].at[x].set(jnp.where(new_head >= 0, st["tail"][x], -1)),
              "count": st["count"].at[x].add(-n_done), "finish": finish, "start": start,
              "busy_s": st["busy_s"].at[x].add(span), "batch_s": st["batch_s"].at[x].add(b.astype(f) * span),
              "tokens_by_batch": st["tokens_by_batch"].at[b].add(jnp.where(b > 0, b * k, 0).astype(f))}
        return st, x

    def body(st):
        # Branch-free on purpose: a lax.cond here made XLA copy the [N] arrays every iteration (cost
        # growing with N); both halves run, each the identity unless it is its turn.
        r = jnp.where(st["p"] < m, r_sorted[jnp.minimum(st["p"], n_req - 1)], jnp.inf)
        go = (st["p"] < m) & (r <= jnp.min(st["ev_t"]))
        st, j = dispatch_next(st, go)
        st, x = advance(st, ~go)
        return plan(st, jnp.where(go, j, x))

    def more(st):
        return (st["p"] < m) | jnp.isfinite(jnp.min(st["ev_t"]))

    st = {
        "t": jnp.zeros(instances, f), "batch": jnp.zeros(instances, jnp.int32),
        "req": jnp.full((instances, slots), -1, jnp.int32), "left": jnp.full((instances, slots), _BIG, jnp.int32),
        "head": jnp.full(instances, -1, jnp.int32), "tail": jnp.full(instances, -1, jnp.int32),
        "nxt": jnp.full(n_req, -1, jnp.int32), "count": jnp.zeros(instances, jnp.int32),
        "ev_t": jnp.full(instances, jnp.inf, f), "ev_k": jnp.zeros(instances, jnp.int32),
        "ev_adm": jnp.zeros(instances, bool), "p": jnp.int32(0),
        "inst": jnp.full(n_req, -1, jnp.int32), "start": jnp.full(n_req, jnp.nan, f),
        "finish": jnp.full(n_req, jnp.nan, f), "busy_s": jnp.zeros(instances, f),
        "batch_s": jnp.zeros(instances, f), "tokens_by_batch": jnp.zeros(slots + 1, f),
    }
    st = lax.while_loop(more, body, st)
    inv = jnp.zeros(n_req, jnp.int32).at[order].set(jnp.arange(n_req, dtype=jnp.int32), unique_indices=True)
    ones = valid & ~joins
    start = jnp.where(ones, ready_s, st["start"][inv])
    finish = jnp.where(ones, ready_s, st["finish"][inv])
    inst = jnp.where(joins, st["inst"][inv], -1)
    stats = {"busy_s": st["busy_s"], "batch_s": st["batch_s"], "tokens_by_batch": st["tokens_by_batch"]}
    return start, finish, inst, stats


decode_jit = jax.jit(decode, static_argnames=("dispatch", "instances", "slots"))
