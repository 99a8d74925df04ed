"""The spec as one struct-of-arrays pytree, padded to bucketed shapes so kernels jit once per bucket.

Host-side NumPy only (no JAX): this is the edge between validated config and pure array code.
Shapes: W workloads, P profiles, C candidate profiles per workload, Q quarters, K table points,
T decode tables per profile. Padding never changes a result: padded workloads have zero demand and
no valid candidate; padded table points repeat the last value past the last measured x.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from pdfleet import spec as S
from pdfleet.perf import decode, queueing
from pdfleet.perf.memory import (held_weight_bytes, instance_memory_bytes, kv_bytes_per_token, kv_replication,
                                 weight_bytes)

F = np.float32
UNMEASURED_TPOT_MS = 1e9  # fills decode tables a profile lacks (finite, so padded arithmetic stays NaN-free)


class Workloads(NamedTuple):
    input_tokens: np.ndarray  # [W]
    output_tokens: np.ndarray  # [W]
    overhead_s: np.ndarray  # [W] TTFT spent outside prefill queue + compute
    budget_s: np.ndarray  # [W] TTFT SLO - overhead
    ttft_quantile: np.ndarray  # [W] 0 encodes the mean
    tpot_slo_ms: np.ndarray  # [W]
    demand_rps: np.ndarray  # [Q, W]
    input_scv: np.ndarray  # [W] squared coefficient of variation of the input length (0: fixed)
    queue: np.ndarray  # [W] prefill queue model (perf.queueing.MM1 / MG1 / MMC)
    tpot_quantile: np.ndarray  # [W] -1: TPOT at the mean batch (the paper); 0: live-batch mean; q: quantile


class Profiles(NamedTuple):
    has_prefill: np.ndarray  # [P] bool
    prefill_len: np.ndarray  # [P, Kp] input tokens, strictly increasing (padded)
    prefill_tps: np.ndarray  # [P, Kp] max prefill tokens/s
    prefill_lo: np.ndarray  # [P] smallest measured input length (0 for a single number)
    prefill_hi: np.ndarray  # [P] largest measured input length (inf for a single number)
    has_decode: np.ndarray  # [P] bool
    decode_batch: np.ndarray  # [P, T, K] strictly increasing (padded)
    decode_tpot: np.ndarray  # [P, T, K] ms
    decode_hi: np.ndarray  # [P, T] largest measured batch
    decode_ctx: np.ndarray  # [P, T] mean context of the table: input + output / 2
    decode_valid: np.ndarray  # [P, T] bool
    memory_bytes: np.ndarray  # [P] usable memory of one instance (gpus x memory x utilization)
    weight_bytes: np.ndarray  # [P] model weights
    kv_bytes_per_token: np.ndarray  # [P]
    price_per_hour: np.ndarray  # [P] USD per instance-hour (gpus x price per GPU-hour)


class Problem(NamedTuple):
    """Workload rows come in blocks of B rows of one model, so a block shares its candidate profiles:
    profile tables are gathered once per block ([NB, C, ...]), not once per workload."""

    workloads: Workloads  # leaves [W] (demand [Q, W]) with W = NB x B, rows grouped by model
    profiles: Profiles
    block_candidates: np.ndarray  # [NB, C] int32 profile index
    block_valid: np.ndarray  # [NB, C] bool

    @property
    def block_size(self) -> int:
        return self.workloads.input_tokens.shape[0] // self.block_candidates.shape[0]

    @property
    def candidates(self) -> np.ndarray:
        """[W, C] profile index of each row's candidates (host-side view for tests and references)."""
        return np.repeat(np.asarray(self.block_candidates), self.block_size, axis=0)

    @property
    def candidate_valid(self) -> np.ndarray:
        return np.repeat(np.asarray(self.block_valid), self.block_size, axis=0)


def bucket(n: int, minimum: int = 1) -> int:
    """Smallest power of two >= max(n, minimum): padded shapes repeat, so jit compiles rarely."""
    n = max(int(n), minimum)
    return 1 << (n - 1).bit_length()


def pad_table(xs, ys, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Pad a table to k points: x continues past the end (+1, +2, ...), y repeats its last value."""
    xs, ys = np.asarray(xs, np.float64), np.asarray(ys, np.float64)
    extra = k - len(xs)
    x = np.concatenate([xs, xs[-1] + np.arange(1, extra + 1)])
    y = np.concatenate([ys, np.full(extra, ys[-1])])
    return x.astype(F), y.astype(F)


def workload_arrays(fleet: S.Fleet, rows: list[str | None]) -> Workloads:
    """Workload fields in row order; None rows are padding (zero demand, harmless values)."""
    quarters = fleet.planning.quarters
    ws = [fleet.workloads[n] if n is not None else None for n in rows]

    def col(get, fill):
        return np.asarray([get(w) if w is not None else fill for w in ws], F)

    demand = np.zeros((len(quarters), len(rows)), F)
    for i, (n, w) in enumerate(zip(rows, ws)):
        if w is not None:
            demand[:, i] = S.demand_rps(w, quarters, n)
    return Workloads(
        input_tokens=col(lambda w: w.input_mean, 1),
        output_tokens=col(lambda w: w.output_mean, 1),
        overhead_s=col(lambda w: w.overhead_s, 0),
        budget_s=col(lambda w: w.slo.ttft_s - w.overhead_s, 1),
        ttft_quantile=col(lambda w: S.ttft_quantile(fleet, w) or 0.0, 0),
        tpot_slo_ms=col(lambda w: w.slo.tpot_ms, 1),
        demand_rps=demand,
        input_scv=col(lambda w: w.input_scv, 0),
        queue=col(lambda w: queueing.QUEUE_CODES[S.queue_model(fleet, w)], 0),
        tpot_quantile=col(lambda w: _tpot_code(S.tpot_quantile(fleet, w)), -1),
    )


def _tpot_code(q: float | None) -> float:
    return -1.0 if q is None else q


def profile_arrays(fleet: S.Fleet) -> Profiles:
    ps = fleet.profiles
    n = bucket(len(ps))
    kp = bucket(max((len(p.prefill.points()[0]) for p in ps if p.prefill), default=1))
    t = bucket(max((len(p.decode) for p in ps if p.decode), default=1))
    k = bucket(max((len(d.batch) for p in ps if p.decode for d in p.decode), default=1), 2)
    out = {
        "has_prefill": np.zeros(n, bool),
        "prefill_len": np.tile(np.arange(1, kp + 1, dtype=F), (n, 1)),
        "prefill_tps": np.ones((n, kp), F),
        "prefill_lo": np.zeros(n, F),
        "prefill_hi": np.full(n, np.inf, F),
        "has_decode": np.zeros(n, bool),
        "decode_batch": np.tile(np.arange(1, k + 1, dtype=F), (n, t, 1)),
        "decode_tpot": np.full((n, t, k), UNMEASURED_TPOT_MS, F),
        "decode_hi": np.zeros((n, t), F),
        "decode_ctx": np.ones((n, t), F),
        "decode_valid": np.zeros((n, t), bool),
        "memory_bytes": np.zeros(n, F),
        "weight_bytes": np.zeros(n, F),
        "kv_bytes_per_token": np.ones(n, F),
        "price_per_hour": np.full(n, np.inf, F),
    }
    util = fleet.planning.memory_utilization
    for i, p in enumerate(ps):
        sku, model = fleet.skus[p.sku], fleet.models[p.model]
        out["memory_bytes"][i] = instance_memory_bytes(p.gpus_per_instance, sku.memory_gib, util)
        out["weight_bytes"][i] = _held_weights(model, p)
        out["kv_bytes_per_token"][i] = kv_bytes_per_token(
            model.layers, model.kv_heads or 0, model.head_dim or 0, model.kv_dtype_bytes,
            model.kv_lora_rank or 0, model.qk_rope_head_dim,
        ) * kv_replication(p.gpus_per_instance // p.dp, model.kv_heads, bool(model.kv_lora_rank))
        out["price_per_hour"][i] = p.gpus_per_instance * sku.price_usd_per_gpu_hour
        if p.prefill is not None:
            xs, ys = p.prefill.points()
            out["has_prefill"][i] = True
            out["prefill_len"][i], out["prefill_tps"][i] = pad_table(xs, ys, kp)
            if len(xs) > 1:
                out["prefill_lo"][i], out["prefill_hi"][i] = xs[0], xs[-1]
        for j, d in enumerate(p.decode or []):
            out["has_decode"][i] = True
            out["decode_batch"][i, j], out["decode_tpot"][i, j] = pad_table(d.batch, d.tpot_envelope(), k)
            out["decode_hi"][i, j] = d.batch[-1]
            out["decode_ctx"][i, j] = decode.mean_context(d.input_tokens, d.output_tokens)
            out["decode_valid"][i, j] = True
    return Profiles(**out)


def _held_weights(model: S.Model, p: S.Profile) -> float:
    """Weight bytes one instance of profile p holds: all weights, or with dp > 1 attention groups
    memory.held_weight_bytes (the routed-expert bytes from the roofline's MoE split)."""
    total = weight_bytes(model.params_b, model.weight_dtype_bytes)
    if p.dp == 1:
        return total
    from pdfleet.perf import roofline

    experts = roofline.model_shape_from_catalog(model.model_dump()).expert_bytes
    return held_weight_bytes(total, experts, p.dp)


CHUNK = 4096  # workload rows per compiled block of work; larger fleets are solved in chunks of it
MAX_BLOCK = 256


def block_rows(fleet: S.Fleet) -> tuple[list[str | None], list[str | None], int]:
    """Group workloads by model into blocks of B rows, padded with None.

    Returns (rows, block_models, B): rows in solver order (workload name or None), the model of each
    block, and the block size. Block and row counts are bucketed so that shapes repeat.
    """
    groups: dict[str, list[str]] = {}
    for name, w in fleet.workloads.items():
        groups.setdefault(w.model, []).append(name)
    size = min(MAX_BLOCK, bucket(max(len(g) for g in groups.values())))
    rows: list[str | None] = []
    block_models: list[str | None] = []
    for model, names in groups.items():
        n_blocks = -(-len(names) // size)
        rows += names + [None] * (n_blocks * size - len(names))
        block_models += [model] * n_blocks
    n_blocks = len(block_models)
    total = bucket(n_blocks) if n_blocks * size <= CHUNK else -(-n_blocks * size // CHUNK) * CHUNK // size
    rows += [None] * ((total - n_blocks) * size)
    block_models += [None] * (total - n_blocks)
    return rows, block_models, size


def candidate_arrays(fleet: S.Fleet, block_models: list[str | None]) -> tuple[np.ndarray, np.ndarray]:
    """Every profile of a block's model is a candidate for both roles (a role it lacks is masked)."""
    by_model: dict[str, list[int]] = {}
    for i, p in enumerate(fleet.profiles):
        by_model.setdefault(p.model, []).append(i)
    c = bucket(max((len(v) for v in by_model.values()), default=1))
    cand = np.zeros((len(block_models), c), np.int32)
    valid = np.zeros((len(block_models), c), bool)
    for b, model in enumerate(block_models):
        idx = by_model.get(model, []) if model is not None else []
        cand[b, : len(idx)] = idx
        valid[b, : len(idx)] = True
    return cand, valid


def as_float64(problem: Problem) -> Problem:
    """The same problem with every float32 leaf in float64 (for the exact-precision solve)."""
    import jax

    return jax.tree_util.tree_map(lambda a: a.astype(np.float64) if a.dtype == F else a, problem)


def build(fleet: S.Fleet) -> tuple[Problem, list[str | None]]:
    """The padded arrays of a fleet and, for each solver row, its workload name (None for padding)."""
    rows, block_models, _ = block_rows(fleet)
    cand, valid = candidate_arrays(fleet, block_models)
    return Problem(workload_arrays(fleet, rows), profile_arrays(fleet), cand, valid), rows
