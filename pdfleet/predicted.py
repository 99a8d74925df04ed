"""Profiles predicted by the calibrated roofline for (model, sku, shape) combinations nobody measured.

Shapes (shapes_of): tensor-parallel TP g for g in planning.tp_degrees within a node; for MoE models also,
with planning.expert_parallel, the expert-parallel ep = g (g > 1) with dp attention groups for every dp dividing g
(groups of g/dp tensor-parallel GPUs), the routed experts spread over the g GPUs; a shape whose attention tensor
parallelism does not divide the heads is left out. Expert-parallel shapes are evaluated by
roofline.ep_prefill_time_s / ep_decode_step_s and hold memory.held_weight_bytes (the rules of `pdfleet
estimate`'s dp/ep queries: a shape whose weights do not fit, or that spans nodes, is not generated).

Each predicted profile is an ordinary profile (origin 'roofline') whose tables the roofline fills:
- prefill: max_tokens_per_s = L / prefill_time(L) at the model's workload input lengths (up to 32 of
  them); beyond that the lengths are cut into 16 groups, each written as its two ends carrying the lower
  of their two throughputs. L / t(L) with t = a + bL + cL^2 is unimodal in L, so that value bounds the
  throughput of every length in the group from below: the table never overstates prefill;
- decode: one TPOT-vs-batch table per workload context (up to 8 contexts; log-spaced beyond that),
  batch 1, 2, 4, ... up to the KV-memory limit. The roofline step time is a maximum of linear functions
  of the batch (convex), so reading it back by linear interpolation between grid batches can only
  overstate TPOT: SLO-safe.
A measured profile of the same (model, sku, gpus_per_instance) always wins, per role, over every predicted
shape of that many GPUs: a measurement records the instance as deployed (an older profile does not say its
layout), and the expert-parallel roofline is not fitted on EP measurements, so it does not second-guess one
(the paper's measured 8-GPU H200 DeepSeek instance, configs/paper.yaml, keeps its plan). Host-side; the
roofline kernels run in one batched call per role and kernel.
Efficiencies come from calibrate.lookup(sku, planning.engine); both tables are planned with the service
times x (1 + margin) (`margin_of`: planning.prediction_margin, 'auto' = the serving calibration entry's
cross-validated error per role), and the profile's `source` names the fit, whether it was borrowed from
another sku or engine, and the margins.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from pdfleet import spec as S
from pdfleet.perf.decode import mean_context
from pdfleet.perf.memory import held_weight_bytes, instance_memory_bytes

MAX_PREFILL_POINTS = 32
PREFILL_GROUPS = 16
MAX_DECODE_TABLES = 16
MAX_BATCH = 4096


@dataclass
class Prediction:
    profiles: list[S.Profile] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # why a combination was not predicted
    moved: dict[str, str] = field(default_factory=dict)  # sku without a fit of its own -> "fit, transfer group"


def _prefill_points(values: list[int]) -> tuple[list[int], list[tuple[int, int]]]:
    """(lengths to evaluate, groups as (first, last) indices into them); see the module docstring."""
    distinct = sorted(set(int(v) for v in values))
    if len(distinct) <= MAX_PREFILL_POINTS:
        return distinct, [(i, i) for i in range(len(distinct))]
    lengths, groups = [], []
    for part in np.array_split(np.array(distinct), PREFILL_GROUPS):
        ends = sorted({int(part[0]), int(part[-1])})
        groups.append((len(lengths), len(lengths) + len(ends) - 1))
        lengths += ends
    return lengths, groups


def _contexts(pairs: list[tuple[int, int]], limit: int) -> list[tuple[int, int]]:
    """Distinct (input, output) pairs; beyond `limit`, the pairs sorted by mean context are cut into
    `limit` groups and each group is represented by its longest. With the covering-table rule
    (evaluate.covering_table) every workload then reads a table of at least its own context: TPOT is
    never understated."""
    distinct = sorted(set(pairs), key=lambda io: (mean_context(*io), io))
    if len(distinct) <= limit:
        return distinct
    return [(int(group[-1][0]), int(group[-1][1]))
            for group in np.array_split(np.array(distinct, dtype=np.int64), limit)]


def _missing(model: S.Model, sku: S.Sku, precision: str) -> str | None:
    from pdfleet.perf import roofline

    if model.hidden_size is None or model.heads is None:
        return "model needs hidden_size and heads"
    if sku.hbm_tbps is None:
        return "sku needs hbm_tbps"
    try:
        roofline.peak_flops_of(sku.model_dump(), precision)
    except ValueError:
        return f"sku needs tflops_{precision}"
    return None


class Job(NamedTuple):
    """One (model, sku, shape) to predict: what _tables evaluates."""

    model: str
    sku: str
    gpus: int  # GPUs of the instance (gpus_per_instance)
    dp: int  # attention data-parallel groups (1: tensor parallel)
    ep: int  # expert parallelism (1, or gpus)
    shape: object  # roofline.ModelShape, built for the attention group's tp = gpus / dp
    hw: object  # roofline.Hardware of the whole instance
    eff: object  # roofline.Efficiency
    lengths: tuple  # (prefill lengths, groups) from _prefill_points; ([], []) when measured
    pairs: list  # decode (input, output) contexts; [] when measured
    memory: float  # instance memory, bytes (before planning.memory_utilization)
    held: float  # weight bytes the instance holds (memory.held_weight_bytes)
    margins: tuple  # (prefill, decode)
    label: str


def shapes_of(model: S.Model, sku: S.Sku, planning: S.Planning) -> list[tuple[int, int, int]]:
    """(gpus, dp, ep) shapes to predict on one sku, g GPUs for every g in planning.tp_degrees within a node:
    - tensor-parallel (g, 1, 1);
    - for MoE models, with planning.expert_parallel, every expert-parallel (g, dp, g) with g > 1 and dp dividing
      g: dp attention groups of g/dp tensor-parallel GPUs, the routed experts spread whole over all g GPUs.
      dp = g is DP attention over one-GPU groups (SGLang's --enable-dp-attention, TensorRT-LLM's attention DP,
      the DEPn rows of its perf tables); dp = 1 keeps attention tensor-parallel over g and spreads the experts
      (vLLM's --enable-expert-parallel); between them, e.g. 8 GPUs as 2 groups of TP4 (SGLang --tp 8 --dp 2
      --enable-dp-attention).
    A shape whose attention group's tensor-parallel degree does not divide the attention heads is left out:
    every rank must hold whole heads (the rule of estimate.cannot_run, which vLLM, SGLang and TensorRT-LLM
    enforce)."""
    degrees = [g for g in planning.tp_degrees if g <= sku.gpus_per_node]
    out = [(g, 1, 1) for g in degrees]
    if model.moe and planning.expert_parallel:
        out += [(g, dp, g) for g in degrees if g > 1 for dp in range(1, g + 1) if g % dp == 0]
    heads = model.heads or 0
    return [(g, dp, ep) for g, dp, ep in out if not heads or heads % (g // dp) == 0]


def _shape_name(gpus: int, dp: int, ep: int) -> str:
    return f"TP{gpus}" if dp == ep == 1 else f"TP{gpus // dp} DP{dp} EP{ep}"


def predict(fleet: S.Fleet) -> Prediction:
    """Roofline profiles for every (model in use, sku, shape of shapes_of) without a measured profile."""
    out = Prediction()
    if not fleet.planning.roofline:
        return out
    from pdfleet import calibrate
    from pdfleet.perf import roofline

    # a measured instance of g GPUs, whatever its shape, stands for every predicted shape of g GPUs (per role)
    measured_prefill = {(p.model, p.sku, p.gpus_per_instance) for p in fleet.profiles if p.prefill}
    measured_decode = {(p.model, p.sku, p.gpus_per_instance) for p in fleet.profiles if p.decode}
    sku_dicts = sku_records(fleet)
    util = fleet.planning.memory_utilization
    jobs = []
    by_model: dict[str, list[S.Workload]] = {}
    for w in fleet.workloads.values():
        by_model.setdefault(w.model, []).append(w)
    for m_name, workloads in by_model.items():
        model = fleet.models[m_name]
        precision = roofline.compute_precision(model.weight_dtype)
        for s_name, sku in fleet.skus.items():
            why = _missing(model, sku, precision)
            if why:
                out.skipped.append(f"{m_name} on {s_name}: {why}")
                continue
            served = _efficiency(calibrate, s_name, fleet.planning.calibration, sku_dicts, fleet.planning.engine)
            eff = served.efficiency
            if served.transfer:
                out.moved[s_name] = f"{served.fit}, {served.transfer}"
            by_layout = {ep_shape: _margins(calibrate, served, fleet.planning, ep_shape, model.moe)
                         for ep_shape in (False, True)}
            for gpus, dp, ep in shapes_of(model, sku, fleet.planning):
                margins, label = by_layout[dp > 1 or ep > 1]
                key = (m_name, s_name, gpus)
                if key in measured_prefill and key in measured_decode:
                    continue
                if gpus > 1 and sku.link_gbps is None:
                    out.skipped.append(f"{m_name} on {s_name} {_shape_name(gpus, dp, ep)}: sku needs link_gbps "
                                       f"for {'tensor' if dp == 1 else 'expert'} parallelism")
                    continue
                shape = roofline.model_shape_from_catalog(model.model_dump(), tp=gpus // dp)
                held = float(held_weight_bytes(shape.weight_bytes, shape.expert_bytes, dp))
                if held >= instance_memory_bytes(gpus, sku.memory_gib, util):
                    continue  # the weights alone do not fit: not a candidate
                hw = roofline.hardware_from_sku(sku.model_dump(), gpus, precision)
                lengths = ([], []) if key in measured_prefill else _prefill_points([w.input_tokens for w in workloads])
                pairs = ([] if key in measured_decode
                         else _contexts([(w.input_tokens, w.output_tokens) for w in workloads], MAX_DECODE_TABLES))
                jobs.append(Job(m_name, s_name, gpus, dp, ep, shape, hw, eff, lengths, pairs,
                                instance_memory_bytes(gpus, sku.memory_gib), held, margins, label))
    if jobs:
        out.profiles = _tables(jobs, util)
    return out


def sku_records(fleet: S.Fleet) -> dict:
    """Every sku record calibrate.lookup may need: the catalog's, overridden and extended by the fleet's."""
    from pdfleet import catalog

    return {**catalog.load_skus(), **{n: s.model_dump() for n, s in fleet.skus.items()}}


def _efficiency(calibrate, sku: str, path: str | None, sku_dicts: dict, engine: str = "any"):
    """The sku's calibrated efficiencies for planning.engine, with where they came from
    (calibrate.Served); a bad or incomplete calibration file is a SpecError."""
    try:
        return calibrate.lookup(sku, engine, path=path, skus=sku_dicts)
    except (OSError, ValueError) as exc:
        raise S.SpecError("planning.calibration", f"cannot read {path}: {' '.join(str(exc).split())}") from None
    except (KeyError, TypeError) as exc:
        raise S.SpecError("planning.calibration", f"{path or 'the shipped calibration'} has no usable entry for "
                          f"sku {sku} ({exc}); fit one with `pdfleet calibrate --by sku`") from None


def margin_of(calibrate, served, planning, role: str, expert_parallel: bool = False, moe: bool = False) -> float:
    """Relative margin a roofline candidate's `role` is planned with: planning.prediction_margin, or with
    'auto' the cross-validated error of the calibration entry that served it, for a dp/ep shape at least
    the error measured on expert-parallel runs, and for a sku never measured at least the error of moving a fit
    to such a sku, for a dense or mixture-of-experts (`moe`) model (calibrate.role_error)."""
    if planning.prediction_margin == "auto":
        err = calibrate.role_error(served, role, planning.calibration, expert_parallel, moe)[0]
        if not math.isfinite(err):
            raise S.SpecError("planning.prediction_margin", f"'auto' plans with the calibration's cross-validated "
                              f"errors, and {planning.calibration or 'the calibration file'} has none (no cv_error: "
                              "`pdfleet calibrate` does not cross-validate); give a fraction, e.g. 0.2, or use a "
                              "file written by `python -m pdfleet.calibrate FILE`, as the shipped one is")
        return err
    return float(planning.prediction_margin)


def _margins(calibrate, served, planning, expert_parallel: bool = False,
             moe: bool = False) -> tuple[tuple[float, float], str]:
    """((prefill margin, decode margin), text for the profile's source)."""
    m = tuple(margin_of(calibrate, served, planning, role, expert_parallel, moe) for role in ("prefill", "decode"))
    how = "auto" if planning.prediction_margin == "auto" else "fixed"
    label = (f"pdfleet roofline, calibrated (data/calibration): fit {served.fit}"
             f"{' (borrowed)' if served.borrowed else ''}; planned with margin prefill +{m[0]:.0%}, "
             f"decode +{m[1]:.0%} ({how})")
    return m, label


def _tables(jobs: list[Job], util: float) -> list[S.Profile]:
    """Evaluate every job's prefill points and decode grids in one batched roofline call per role and kernel
    (tensor-parallel jobs: prefill_time_s / decode_step_s; expert-parallel: ep_prefill_time_s / ep_decode_step_s)."""
    from pdfleet.perf import decode, roofline

    pre_args, dec_args, layouts = [], [], []
    for job in jobs:
        shape, hw, eff, ep_args = job.shape, job.hw, job.eff, (float(job.dp), float(job.ep))
        for L in job.lengths[0]:
            pre_args.append(((float(L), shape, hw, eff), ep_args))
        tables = []
        for inp, outp in job.pairs:
            bmem = float(decode.max_batch_memory(util * job.memory, job.held, shape.kv_bytes_per_token, inp + outp))
            top = int(min(MAX_BATCH, bmem))
            if top < 1:
                continue
            batches = sorted({2**k for k in range(int(math.log2(top)) + 1)} | {top})
            tables.append((inp, outp, batches))
            for b in batches:
                dec_args.append(((float(b), mean_context(inp, outp), shape, hw, eff), ep_args))
        layouts.append(tables)
    pre_s = _by_kernel(roofline.prefill_time_s_batched, roofline.ep_prefill_time_s_batched, pre_args, (1.0,))
    dec_s = _by_kernel(roofline.decode_step_s_batched, roofline.ep_decode_step_s_batched, dec_args, ())
    profiles, pi, di = [], 0, 0
    for job, tables in zip(jobs, layouts):
        lengths, groups = job.lengths
        pre_m, dec_m = job.margins
        # margin: the service times the planner sees are (1 + margin) x the roofline's (capacity / (1 + margin))
        tps = [L / (pre_s[pi + i] * (1.0 + pre_m)) for i, L in enumerate(lengths)]
        pi += len(lengths)
        for lo, hi in groups:  # each group's ends carry the lower throughput of the two
            tps[lo] = tps[hi] = min(tps[lo], tps[hi])
        decode_tables = []
        for inp, outp, batches in tables:
            tpot = [dec_s[di + i] * 1e3 * (1.0 + dec_m) for i in range(len(batches))]
            di += len(batches)
            decode_tables.append(S.DecodeTable(input_tokens=inp, output_tokens=outp, batch=batches,
                                               tpot_ms=_increasing(tpot)))
        if len(lengths) > 1:
            prefill = S.PrefillTable(input_tokens=lengths, max_tokens_per_s=tps)
        else:
            prefill = S.PrefillTable(max_tokens_per_s=tps[0]) if tps else None
        if prefill is None and not decode_tables:
            continue
        profiles.append(S.Profile(model=job.model, sku=job.sku, gpus_per_instance=job.gpus, dp=job.dp, ep=job.ep,
                                  engine="roofline", source=job.label, origin="roofline",
                                  prefill=prefill, decode=decode_tables or None))
    return profiles


def _by_kernel(tp_kernel, ep_kernel, args: list[tuple], ep_tail: tuple) -> np.ndarray:
    """Each (arguments, (dp, ep)) through tp_kernel(*arguments) when dp = ep = 1, else through
    ep_kernel(*arguments, dp, ep, *ep_tail); one batched call per kernel, results in the order of args."""
    tp_only = np.array([a[1] == (1.0, 1.0) for a in args], bool)
    out = np.zeros(len(args))
    out[tp_only] = _batched(tp_kernel, [a[0] for a, keep in zip(args, tp_only) if keep])
    out[~tp_only] = _batched(ep_kernel, [a[0] + a[1] + ep_tail for a, keep in zip(args, tp_only) if not keep])
    return out


def _increasing(values: list[float]) -> list[float]:
    """Round to 1e-6 ms; a step time never falls as the batch grows (guards float noise)."""
    return [float(x) for x in np.maximum.accumulate(np.round(values, 6))]


def _batched(kernel, args: list[tuple]) -> np.ndarray:
    """Run a vmapped roofline kernel over a list of per-candidate argument tuples, padded to a bucket."""
    if not args:
        return np.zeros(0)
    from pdfleet.arrays import bucket
    from pdfleet.perf import roofline

    n = len(args)
    padded = args + [args[-1]] * (bucket(n, 64) - n)
    columns = [roofline.stack([a[i] for a in padded]) if hasattr(padded[0][i], "_fields")
               else np.asarray([a[i] for a in padded], np.float32) for i in range(len(padded[0]))]
    return np.asarray(kernel(*columns))[:n].astype(np.float64)


# --- offline throughput of a whole system (MLPerf Offline acceptance; scripts/validate_roofline.py) -------------


def offline_layouts(model: dict, sku: dict, gpus: int, weight_dtype: str, kv_dtype: str, input_tokens: float,
                    output_tokens: float, eff, engine: str = "tensorrt-llm") -> list[dict]:
    """Every tensor-parallel layout of `gpus` GPUs of one node for an offline (max-throughput) run, with its
    predicted output tokens/s (pdfleet.perf.offline.system_tokens_per_s).

    Rule (documented for the MLPerf Offline check): TP degrees 1, 2, 4, ... that divide `gpus` and the
    attention heads and stay within one node (sku gpus_per_node); instances = gpus / tp; running batch per
    instance B = measured_sources.trtllm_running_batch (the KV capacity at input + output tokens per sequence
    under the engine's memory rule, capped as trtllm-bench caps it; an MLPerf harness tunes its own batch, which
    is not published, so the same rule stands for every engine); layouts whose weights do not fit are left out.
    Returns one dict per layout: tp, instances, batch, tokens_per_s.
    """
    from pdfleet import measured_sources
    from pdfleet.perf import offline, roofline

    out = []
    tp = 1
    heads = int(model.get("heads") or 1)
    per_node = int(sku.get("gpus_per_node") or gpus)
    while tp <= min(gpus, per_node):
        if gpus % tp == 0 and heads % tp == 0:
            cap = measured_sources.kv_capacity(model, sku, tp, weight_dtype, kv_dtype, input_tokens + output_tokens,
                                               engine)
            batch = measured_sources.trtllm_running_batch(cap, input_tokens, output_tokens)
            if batch >= 1:
                shape = roofline.model_shape_from_catalog(model, weight_dtype=weight_dtype, kv_dtype=kv_dtype or None,
                                                          tp=tp)
                hw = roofline.hardware_from_sku(sku, tp, roofline.compute_precision(weight_dtype))
                tps = float(offline.system_tokens_per_s(gpus // tp, batch, float(input_tokens), float(output_tokens),
                                                        shape, hw, eff))
                out.append({"tp": tp, "instances": gpus // tp, "batch": batch, "tokens_per_s": tps})
        tp *= 2
    return out


def best_offline_layout(*args, **kwargs) -> dict | None:
    """The layout of `offline_layouts` (same arguments) with the most tokens/s; None when nothing fits.
    An offline submitter tunes the layout to the system, so the best predicted one stands for it."""
    layouts = offline_layouts(*args, **kwargs)
    return max(layouts, key=lambda d: d["tokens_per_s"]) if layouts else None


def mlperf_offline_check(calibration=None, input_tokens: float | None = None, perf_dir=None):
    """MLPerf Offline llama2-70b per 8-GPU node, measured (measured_sources.read_mlperf_offline) against predicted
    (best_offline_layout with calibrate.lookup(sku, engine) on `calibration`, default the shipped file; never
    fitted on MLPerf rows). input_tokens overrides measured_sources.MLPERF_INPUT_TOKENS (sensitivity).
    Columns: sku, engine, fit, tp, instances, batch, measured, predicted, error (predicted / measured − 1),
    usd_per_hour (8 GPUs at the catalog price), measured_per_usd, predicted_per_usd (tokens/s per $/h) and the
    ranks by them (1 = most tokens/s per dollar)."""
    import pandas as pd

    from pdfleet import calibrate, catalog, measured_sources

    skus, models = catalog.load_skus(), catalog.load_models()
    model = models["llama-2-70b"]
    rows = []
    for r in measured_sources.read_mlperf_offline(perf_dir).itertuples():
        served = calibrate.lookup(r.sku, r.engine, path=calibration, skus=skus)
        isl = r.input_tokens if input_tokens is None else float(input_tokens)
        best = best_offline_layout(model, skus[r.sku], r.gpus, r.weight_dtype, r.kv_dtype, isl, r.output_tokens,
                                   served.efficiency, r.engine)
        usd = float(skus[r.sku]["price_usd_per_gpu_hour"]) * r.gpus
        rows.append({"sku": r.sku, "engine": r.engine, "fit": served.fit + (" (borrowed)" if served.borrowed else ""),
                     "tp": best["tp"], "instances": best["instances"], "batch": best["batch"],
                     "measured": r.tokens_per_s, "predicted": best["tokens_per_s"],
                     "error": best["tokens_per_s"] / r.tokens_per_s - 1.0, "usd_per_hour": usd,
                     "measured_per_usd": r.tokens_per_s / usd, "predicted_per_usd": best["tokens_per_s"] / usd})
    df = pd.DataFrame(rows)
    df["measured_rank"] = df["measured_per_usd"].rank(ascending=False).astype(int)
    df["predicted_rank"] = df["predicted_per_usd"].rank(ascending=False).astype(int)
    return df


# --- offline throughput of expert-parallel instances (TensorRT-LLM DEPn rows; scripts/validate_roofline.py) -----


def ep_offline_batch_s(batch, input_tokens, output_tokens, model, hw, eff, dp, ep):
    """Time (s) of one offline batch of `batch` requests on a (dp, ep) instance: the expert-parallel counterpart of
    roofline.e2e_latency_s (pdfleet.calibrate's 'e2e' kind), the prefill of the batch then L_out decode steps at the
    mean context:
        ep_prefill_time_s(L_in, batch=b, dp, ep) + L_out · ep_decode_step_s(b, L_in + L_out/2, dp, ep)
    `model` built for the attention group's tp = hw.tp / dp. Shapes: [] -> []. (Its home would be beside
    roofline.e2e_latency_s; kept here while roofline.py is edited elsewhere.)"""
    from pdfleet.perf import roofline

    ctx = mean_context(input_tokens, output_tokens)
    return (roofline.ep_prefill_time_s(input_tokens, model, hw, eff, dp, ep, batch)
            + output_tokens * roofline.ep_decode_step_s(batch, ctx, model, hw, eff, dp, ep))


_EP_KERNELS: dict = {}


def _ep_kernel(name: str):
    """Jitted, vmapped kernels of ep_throughput_check, built on first use."""
    if not _EP_KERNELS:
        import jax

        from pdfleet.perf import roofline

        _EP_KERNELS["batch"] = jax.jit(roofline.over_candidates(ep_offline_batch_s))
        _EP_KERNELS["alltoall"] = jax.jit(roofline.over_candidates(roofline.alltoall_time_s))
    return _EP_KERNELS[name]


IDEAL_EFFICIENCY_FIELDS = {"eta_compute": 1.0, "eta_memory": 1.0, "eta_link": 1.0}  # everything else 0


def ep_throughput_check(calibration=None, path=None, skus=None, models=None):
    """TensorRT-LLM's measured DEPn offline throughput (measured_sources.read_trtllm_ep) against the expert-parallel
    roofline: each row's batch time ep_offline_batch_s with calibrate.lookup(sku, 'tensorrt-llm') on `calibration`
    (default the shipped file, fitted on tensor-parallel rows only: these rows are never fitted). The shape is the
    row's dp = ep = gpus, attention groups of tp = 1 (roofline.model_shape_from_catalog at tp 1 and the row's weight
    and KV dtypes; roofline.hardware_from_sku of the gpus at the weights' compute precision).
    Columns: model, sku, gpus, dp, ep, weight_dtype, kv_dtype, input_tokens, output_tokens, batch, fit, measured and
    predicted (output tokens/s PER GPU), error (predicted / measured − 1), ideal (tokens/s per GPU of the same
    kernel at efficiencies 1 and no overheads: a measured value above it means the batch mapping is wrong),
    prefill_share (the prefill's share of the predicted batch time) and, for one decode step at the mean context
    (ms): step_ms, alltoall_ms (roofline.alltoall_time_s of the step's B/gpus tokens per GPU), compute_ms and
    memory_ms (the step's compute and memory roofline terms each alone, without all-to-all and fixed overheads),
    overhead_ms (c1 + c_seq·B/dp + c_layer·layers)."""
    from pdfleet import calibrate, catalog, measured_sources
    from pdfleet.perf import roofline

    if skus is None or models is None:
        skus, models = catalog.load_skus(), catalog.load_models()
    table, _ = measured_sources.read_trtllm_ep(path, skus, models)
    if table.empty:
        return table
    rows, args, steps, a2a = [], [], [], []
    for r in table.itertuples():
        served = calibrate.lookup(r.sku, "tensorrt-llm", path=calibration, skus=skus)
        eff = served.efficiency
        shape = roofline.model_shape_from_catalog(models[r.model], weight_dtype=r.weight_dtype or None,
                                                  kv_dtype=r.kv_dtype or None, tp=r.tp)
        precision = roofline.compute_precision(r.weight_dtype or models[r.model].get("weight_dtype", "bf16"))
        hw = roofline.hardware_from_sku(skus[r.sku], r.gpus, precision)
        ideal = roofline.Efficiency(**{f: IDEAL_EFFICIENCY_FIELDS.get(f, 0.0) for f in roofline.Efficiency._fields})
        no_fixed = eff._replace(c_decode_s=0.0, c_decode_seq_s=0.0, c_layer_s=0.0)
        lay = (float(r.dp), float(r.ep))
        io = (float(r.batch), r.input_tokens, r.output_tokens)
        args += [io + (shape, hw, eff) + lay, io + (shape, hw, ideal) + lay]
        ctx = float(mean_context(r.input_tokens, r.output_tokens))
        steps += [(float(r.batch), ctx, shape, hw, eff) + lay,
                  (float(r.batch), ctx, shape, hw, no_fixed) + lay,
                  (float(r.batch), ctx, shape, hw._replace(hbm_bw=1e30), no_fixed) + lay,
                  (float(r.batch), ctx, shape, hw._replace(peak_flops=1e30), no_fixed) + lay]
        a2a.append((float(r.batch) / r.gpus, shape, hw, eff, float(r.ep)))
        rows.append({"fit": served.fit + (" (borrowed)" if served.borrowed else "")})
    t = _batched(_ep_kernel("batch"), args).reshape(-1, 2)
    s = _batched(roofline.ep_decode_step_s_batched, steps).reshape(-1, 4)
    comm = _batched(_ep_kernel("alltoall"), a2a)
    pre = _batched(roofline.ep_prefill_time_s_batched,
                   [(r.input_tokens, a[3], a[4], a[5], a[6], a[7], float(r.batch))
                    for r, a in zip(table.itertuples(), args[::2])])
    per_gpu = table["batch"].to_numpy() * table["output_tokens"].to_numpy() / table["gpus"].to_numpy()
    out = table[["model", "sku", "gpus", "dp", "ep", "weight_dtype", "kv_dtype", "input_tokens", "output_tokens",
                 "batch"]].copy()
    out["fit"] = [r["fit"] for r in rows]
    out["measured"] = table["tokens_per_s_per_gpu"].to_numpy()
    out["predicted"] = per_gpu / t[:, 0]
    out["error"] = out["predicted"] / out["measured"] - 1.0
    out["ideal"] = per_gpu / t[:, 1]
    out["prefill_share"] = pre / t[:, 0]
    out["step_ms"] = s[:, 0] * 1e3
    out["alltoall_ms"] = comm * 1e3
    out["compute_ms"] = (s[:, 2] - comm) * 1e3
    out["memory_ms"] = (s[:, 3] - comm) * 1e3
    out["overhead_ms"] = (s[:, 0] - s[:, 1]) * 1e3
    return out.reset_index(drop=True)
