"""`pdfleet estimate`: prefill time, TPOT, KV-memory batch limit and sizes of one or many
(model, sku, tp, precision, input, output, batch) queries, from a measured profile where one
matches and from the calibrated roofline otherwise.

Per query (DESIGN.md "Performance model"; no formula is restated here, each lives in one module):
    prefill_s           one request of input_tokens, unloaded: profile L / TPmax(L)
                        (pdfleet.perf.prefill), else roofline.prefill_time_s(L, batch=1)
    tpot_ms             one decode step at `batch` and mean context input + output/2: profile TPOT
                        interpolated at the batch (pdfleet.perf.decode.tpot_ms) in the table chosen by
                        the covering-context rule (pdfleet.evaluate.covering_table), else roofline.decode_step_s.
                        A batch above the table's largest measured batch falls back to the roofline
                        (nothing is extrapolated) and says so in `note`.
    max_batch_memory    roofline.max_batch_memory at context input + output and the fleet's
                        planning.memory_utilization (0.9 without a fleet)
    weights_gib         memory.weight_bytes / GiB at the query's precision
    kv_gib_per_request  memory.kv_bytes_per_token x (input + output) / GiB
    decode_tokens_per_s batch / TPOT: output tokens/s of one instance at that batch
    fit                 the calibration entry that served the roofline numbers ('sku/engine', '*' = pooled;
                        '(borrowed)' when fitted on another sku or engine); '' when profiles served all
    prediction_error    the error band of those numbers, as the plan's column and planning.prediction_margin
                        take it (calibrate.role_error): the worse of the roles it served, each the entry's
                        cross-validated error (cv_error) or, where the entry has none for the role, the pooled
                        one; for a dp/ep > 1 shape at least the error measured on expert-parallel runs; for
                        a sku never measured (its fit moved from another) at least the file's transfer_error
                        for that move and the model (dense or MoE). NaN for profile numbers or files without
                        cv_error
A query that cannot run (`cannot_run`: tp not dividing the heads, tp beyond a node, model not fitting)
gets NaN prefill_s, tpot_ms, decode_tokens_per_s, max_batch_memory and prediction_error and a note; a batch above
max_batch_memory gets NaN TPOT: no number is printed beside "does not fit".
Roofline efficiencies: pdfleet.calibrate.lookup(sku, engine, path, skus) (default: the shipped fit).

Optional `dp` and `ep` (default 1): data-parallel attention and expert-parallel MoE layers, the layout
DeepSeek-V3 and Qwen3-235B are served with disaggregated. The instance has tp x dp GPUs, attention runs in
dp groups of tp GPUs, and ep is 1 (experts tensor-parallel) or tp x dp (whole experts over every GPU);
the roofline numbers then come from roofline.ep_prefill_time_s / ep_decode_step_s (all-to-all dispatch
and combine included), weights_gib counts the attention/dense weights once per group, and
max_batch_memory uses the whole instance's memory. Efficiencies are those fitted on tensor-parallel runs:
no EP measurement is fitted (pdfleet.measured_sources refuses the TensorRT-LLM DEP rows for fitting); they check
the EP roofline instead (pdfleet.predicted.ep_throughput_check), and their error is the band of dp/ep rows.

A profile matches a query when its model, sku and shape equal the query's (gpus_per_instance = tp x dp,
the same dp and ep) and the query runs at the model's own weight dtype (profiles do not record a precision); the first
matching profile with a prefill (decode) table is used for prefill (decode).

Every query is evaluated in one batched call per kernel; Python only builds the input arrays.
Bad input raises EstimateError with a one-line message.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from pdfleet import catalog
from pdfleet.perf import memory

PRECISIONS = ("bf16", "fp8", "fp4")


def _engines() -> tuple[str, ...]:
    """The engines planning.engine accepts (pdfleet.spec.Planning); `estimate --engine` takes these and any other
    engine the calibration file has entries for (cli._check_engine)."""
    import typing

    from pdfleet import spec

    return typing.get_args(spec.Planning.model_fields["engine"].annotation)


ENGINES = _engines()
QUERY_COLUMNS = ("model", "sku", "tp", "precision", "input_tokens", "output_tokens", "batch")
OPTIONAL_COLUMNS = ("precision", "dp", "ep")  # may be absent or blank: the model's weight_dtype; dp = ep = 1
OUTPUT_COLUMNS = [
    "model", "sku", "tp", "precision", "input_tokens", "output_tokens", "batch", "dp", "ep",
    "prefill_s", "prefill_source", "tpot_ms", "tpot_source", "decode_tokens_per_s",
    "max_batch_memory", "weights_gib", "kv_gib_per_request", "fit", "prediction_error", "note",
]
DEFAULT_MEMORY_UTILIZATION = 0.9


class EstimateError(ValueError):
    """Bad estimate input; the message is one line saying what to change."""


@dataclass(frozen=True)
class Query:
    model: str
    sku: str
    tp: int
    precision: str | None  # None: the model's weight_dtype
    input_tokens: int
    output_tokens: int
    batch: float
    dp: int = 1  # attention data-parallel groups of tp GPUs each: the instance has tp x dp GPUs
    ep: int = 1  # expert parallelism: 1 (experts tensor-parallel) or tp x dp (whole experts over every GPU)


@dataclass
class Context:
    """Where names resolve: catalog entries overridden by a fleet's, the fleet's profiles, calibration."""

    skus: dict  # name -> sku record (catalog fields)
    models: dict  # name -> model record
    profiles: list = field(default_factory=list)  # spec.Profile
    memory_utilization: float = DEFAULT_MEMORY_UTILIZATION
    calibration: str | None = None  # path of a calibration file; None: the shipped one
    engine: str | None = None  # calibration entry of this engine where the file has one
    calibration_skus: dict = field(default_factory=dict)  # the file's skus table (for error hints)


def context(fleet_path: str | None = None, calibration: str | None = None, engine: str | None = None) -> Context:
    """Catalog skus/models, overridden and extended by a fleet file's (spec.SpecError if it is bad). With a
    fleet, its planning.calibration and planning.engine stand where `calibration` and `engine` are None, so a
    query is answered by the calibration entry the fleet's plan uses."""
    table = _check_calibration(calibration) if calibration is not None else {}
    skus, models = catalog.load_skus(), catalog.load_models()
    profiles, util = [], DEFAULT_MEMORY_UTILIZATION
    if fleet_path is not None:
        from pdfleet import spec

        f = spec.load(fleet_path)
        skus.update({k: v.model_dump(exclude_none=True) for k, v in f.skus.items()})
        models.update({k: v.model_dump(exclude_none=True) for k, v in f.models.items()})
        profiles, util = list(f.profiles), f.planning.memory_utilization
        if calibration is None and f.planning.calibration is not None:  # the fleet's, as its plan uses
            calibration = f.planning.calibration
            table = _check_calibration(calibration)
        engine = f.planning.engine if engine is None else engine
    return Context(skus, models, profiles, util, calibration, engine, table)


def _check_calibration(path) -> dict:
    """Fail early, in one line, on a calibration file that calibrate.load_calibration cannot use."""
    import json

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise EstimateError(f"calibration {path}: cannot read ({exc.strerror or exc})") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise EstimateError(f"calibration {path}: not JSON ({' '.join(str(exc).split())})") from None
    table = data.get("skus") if isinstance(data, dict) else None
    ok = isinstance(table, dict) and all(
        isinstance(engines, dict) and all(isinstance(e, dict) and isinstance(e.get("params"), dict)
                                          for e in engines.values())
        for engines in table.values())
    if not ok:
        raise EstimateError(f"calibration {path}: not a pdfleet calibration file (no skus.SKU.ENGINE.params); "
                            "write one with `pdfleet calibrate`")
    return table


# ------------------------------------------------------------------ queries from flags or a CSV


def _known(kind: str, names) -> str:
    return f"known {kind}: {', '.join(sorted(names))}"


def check(q: Query, ctx: Context, where: str = "") -> Query:
    """Validate one query against the context; returns it with numbers as int/float."""
    pre = f"{where}: " if where else ""
    if q.model not in ctx.models:
        raise EstimateError(f"{pre}unknown model '{q.model}'; {_known('models', ctx.models)}")
    if q.sku not in ctx.skus:
        raise EstimateError(f"{pre}unknown sku '{q.sku}'; {_known('skus', ctx.skus)}")
    for name, lo in (("tp", 1), ("input_tokens", 1), ("output_tokens", 1), ("batch", 1)):
        v = getattr(q, name)
        if v is None or not isinstance(v, (int, float)) or not math.isfinite(v) or v < lo:
            raise EstimateError(f"{pre}{name} must be a number >= {lo} (got {v!r})")
        if name != "batch" and v != int(v):
            raise EstimateError(f"{pre}{name} must be a whole number (got {v!r})")
    if q.precision is not None and q.precision not in PRECISIONS:
        raise EstimateError(f"{pre}precision must be one of {', '.join(PRECISIONS)} or blank (got {q.precision!r})")
    for name in ("dp", "ep"):
        v = getattr(q, name)
        if v is None or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 1 or v != int(v):
            raise EstimateError(f"{pre}{name} must be a whole number >= 1 (got {v!r})")
    gpus = int(q.tp) * int(q.dp)
    if int(q.ep) not in (1, gpus):
        raise EstimateError(f"{pre}ep must be 1 (experts tensor-parallel) or tp x dp = {gpus} (whole experts spread "
                            f"over every GPU of the instance); got {q.ep!r}")
    if int(q.dp) > 1 and int(q.ep) == 1:
        raise EstimateError(f"{pre}dp {q.dp} with ep 1 is {q.dp} separate instances of tp {q.tp}: use dp 1, or "
                            f"ep {gpus} for data-parallel attention with expert-parallel MoE layers")
    return Query(q.model, q.sku, int(q.tp), q.precision, int(q.input_tokens), int(q.output_tokens), float(q.batch),
                 int(q.dp), int(q.ep))


def read_queries(path, ctx: Context) -> list[Query]:
    """Queries from a CSV with columns QUERY_COLUMNS (precision optional/blank), one per row."""
    import pandas as pd

    p = Path(path)
    try:
        df = pd.read_csv(p, dtype=str, keep_default_na=False, skipinitialspace=True)
    except FileNotFoundError:
        raise EstimateError(f"{p}: file not found; check the path") from None
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise EstimateError(f"{p}: cannot read as CSV ({' '.join(str(exc).split())})") from None
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in QUERY_COLUMNS if c not in df.columns and c not in OPTIONAL_COLUMNS]
    if missing:
        raise EstimateError(f"{p.name}: missing column(s) {', '.join(missing)}; the header must be "
                            f"{','.join(QUERY_COLUMNS)}")
    if df.empty:
        raise EstimateError(f"{p.name}: no data rows; add one row per query")
    out = []
    for i, row in enumerate(df.to_dict("records"), start=2):  # line 1 is the header
        where = f"{p.name}:{i}"
        nums = {}
        for c in ("tp", "input_tokens", "output_tokens", "batch"):
            raw = str(row[c]).strip()
            try:
                nums[c] = float(raw)
            except ValueError:
                raise EstimateError(f"{where}: '{c}' is {raw!r}, expected a number") from None
        for c in ("dp", "ep"):
            raw = str(row.get(c, "") or "").strip() or "1"
            try:
                nums[c] = float(raw)
            except ValueError:
                raise EstimateError(f"{where}: '{c}' is {raw!r}, expected a whole number (blank: 1)") from None
        prec = str(row.get("precision", "") or "").strip() or None
        q = Query(str(row["model"]).strip(), str(row["sku"]).strip(), nums["tp"], prec,
                  nums["input_tokens"], nums["output_tokens"], nums["batch"], nums["dp"], nums["ep"])
        out.append(check(q, ctx, where))
    return out


# ------------------------------------------------------------------ the estimate


def _pad(xs: Sequence[float], ys: Sequence[float], k: int) -> tuple[list, list]:
    """Pad a table to k points: x continues past the end (+1, +2, ...), y repeats its last value."""
    xs, ys = [float(x) for x in xs], [float(y) for y in ys]
    n = len(xs)
    return xs + [xs[-1] + j for j in range(1, k - n + 1)], ys + [ys[-1]] * (k - n)


def _peak_precision(sku: dict, precision: str) -> str | None:
    """The precision whose tflops the roofline uses (pdfleet.perf.roofline.peak_precision)."""
    from pdfleet.perf import roofline

    return roofline.peak_precision(sku, precision)


def _worst_error(served, roles: list[str], calibration, expert_parallel: bool, moe: bool) -> float:
    """The largest calibrate.role_error over `roles` (NaN when none is known)."""
    from pdfleet import calibrate

    errs = [calibrate.role_error(served, r, calibration, expert_parallel, moe)[0] for r in roles]
    errs = [e for e in errs if np.isfinite(e)]
    return max(errs) if errs else np.nan


def _roofline_inputs(model: dict, sku: dict, q: Query, precision: str, ctx: Context, calib: dict):
    """(ModelShape, Hardware, Efficiency, reason): reason is None when the roofline can be evaluated."""
    from pdfleet.perf import roofline

    reason = None
    try:
        shape = roofline.model_shape_from_catalog(model, weight_dtype=precision, tp=q.tp)
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        shape = None
        reason = (f"model '{q.model}' lacks hidden_size/heads/head_dim, which the roofline needs; "
                  "add them, or a profile for this model, sku and tp")
    compute = roofline.compute_precision(precision)
    if reason is None and _peak_precision(sku, compute) is None:
        reason = (f"sku '{q.sku}' has no tflops for {compute} ({', '.join(roofline.PEAK_FIELD[p] for p in roofline.PEAK_ORDER[compute])}); "
                  "add one, or a profile for this model, sku and tp")
    if reason is None and not sku.get("hbm_tbps"):
        reason = f"sku '{q.sku}' has no hbm_tbps, which the roofline needs; add it, or a profile"
    gpus = q.tp * q.dp  # the roofline's hw.tp is the instance's GPUs; the attention group's tp is q.tp (shape)
    hw = (roofline.hardware_from_sku(sku, gpus, compute) if reason is None
          else roofline.Hardware(1.0, 1.0, 1.0, float(gpus)))
    if q.sku not in calib:
        from pdfleet import calibrate

        try:
            calib[q.sku] = calibrate.lookup(q.sku, ctx.engine, path=ctx.calibration, skus=ctx.skus)
        except KeyError:
            engines = sorted(set(ctx.calibration_skus.get(q.sku, {})) & calibrate.engines_in(ctx.calibration))
            if engines:
                calib[q.sku] = (f"calibration {ctx.calibration} has entries for sku '{q.sku}' only by engine "
                                f"({', '.join(engines)}); pick one with --engine")
            elif ctx.calibration_skus.get(q.sku):  # only an engine no one can name (Splitwise's 'unspecified')
                calib[q.sku] = (f"calibration {ctx.calibration} has entries for sku '{q.sku}' only for an unnamed "
                                f"engine; refit it with `pdfleet calibrate --by sku`")
            else:
                calib[q.sku] = f"calibration has no entry for sku '{q.sku}' and no pooled or {calibrate.REFERENCE_SKU} one"
        except (OSError, ValueError) as exc:
            raise EstimateError(f"calibration {ctx.calibration}: cannot read ({' '.join(str(exc).split())})") from None
    eff = calib[q.sku]
    if isinstance(eff, str):
        reason = reason or eff
        eff = roofline.NOMINAL_EFFICIENCY
    else:
        eff = eff.efficiency
    if shape is None:  # placeholder with the right byte sizes; its roofline numbers are never shown
        shape = roofline.ModelShape(1.0, _weight_bytes(model, precision), _kv_bytes(model, q.tp), 1.0, 1.0, 1.0)
    return shape, hw, eff, reason


def _weight_bytes(model: dict, precision: str) -> float:
    return memory.weight_bytes(float(model["params_b"]), memory.DTYPE_BYTES[precision])


def _kv_bytes(model: dict, tp: int) -> float:
    kv_heads = model.get("kv_heads") or model.get("heads") or 0
    return float(memory.kv_bytes_per_token(
        model["layers"], kv_heads, model.get("head_dim") or 0,
        memory.DTYPE_BYTES[model.get("kv_dtype") or "bf16"],
        kv_lora_rank=model.get("kv_lora_rank") or 0, qk_rope_head_dim=model.get("qk_rope_head_dim") or 0,
    )) * memory.kv_replication(tp, kv_heads, bool(model.get("kv_lora_rank")))


def cannot_run(model: dict, q: Query, gpus_per_node: int, batch_memory: float) -> str:
    """Why a query's instance cannot run at all ('' if it can): a tensor-parallel degree that does not
    divide the attention heads (each rank must hold whole heads: Megatron-LM tensor parallelism, and
    vLLM / SGLang / TensorRT-LLM refuse such a tp), a tp beyond one node (tensor parallelism over the
    scale-up link only; the roofline has no inter-node all-reduce; with dp > 1 the instance's tp x dp GPUs,
    whose all-to-all is modelled over the scale-up link too), expert parallelism on a dense model, or
    weights plus one request's KV cache above usable memory (max_batch_memory < 1)."""
    heads = model.get("heads")
    if heads and heads % q.tp:
        return f"tp {q.tp} does not divide the {heads} attention heads"
    gpus = q.tp * q.dp
    if gpus > gpus_per_node:
        what = f"tp {q.tp}" if q.dp == 1 else f"tp {q.tp} x dp {q.dp}"
        return f"{what} spans {-(-gpus // gpus_per_node)} nodes of {gpus_per_node} GPUs"
    if q.ep > 1 and not (model.get("experts") or 0) > 1:
        return f"ep {q.ep} needs a mixture-of-experts model; {q.model} has no routed experts"
    if batch_memory < 1:
        return "the model does not fit: weights plus one request's KV cache exceed usable memory"
    return ""


def _matching(ctx: Context, q: Query, role: str):
    for p in ctx.profiles:
        same_shape = p.gpus_per_instance == q.tp * q.dp and (p.dp, p.ep) == (q.dp, q.ep)
        if p.model == q.model and p.sku == q.sku and same_shape and getattr(p, role) is not None:
            return p
    return None


def estimate(queries: Sequence[Query], ctx: Context):
    """Estimate every query (validated with `check`); a pandas DataFrame with OUTPUT_COLUMNS."""
    import jax
    import jax.numpy as jnp
    import pandas as pd

    from pdfleet.evaluate import covering_table
    from pdfleet.perf import decode, prefill, roofline

    queries = [check(q, ctx) for q in queries]
    if not queries:
        raise EstimateError("no queries")
    n = len(queries)
    calib: dict = {}
    shapes, hws, effs, reasons, precisions = [], [], [], [], []
    pre_prof, dec_prof, skipped = [], [], []
    for q in queries:
        model, sku = ctx.models[q.model], ctx.skus[q.sku]
        native = model.get("weight_dtype") or "bf16"
        prec = q.precision or native
        s, h, e, r = _roofline_inputs(model, sku, q, prec, ctx, calib)
        shapes.append(s), hws.append(h), effs.append(e), reasons.append(r), precisions.append(prec)
        pp, dp = _matching(ctx, q, "prefill"), _matching(ctx, q, "decode")
        skipped.append(prec != native and (pp is not None or dp is not None))
        pre_prof.append(pp if prec == native else None)
        dec_prof.append(dp if prec == native else None)

    f64 = lambda xs: np.asarray(xs, np.float64)
    L = f64([q.input_tokens for q in queries])
    out_tok = f64([q.output_tokens for q in queries])
    batch = f64([q.batch for q in queries])
    ctx_mean = decode.mean_context(L, out_tok)

    # Profile tables, padded to common shapes: prefill [Q, Kp], decode [Q, T, K].
    kp = max([len(p.prefill.points()[0]) for p in pre_prof if p is not None] + [2])
    t_n = max([len(p.decode) for p in dec_prof if p is not None] + [1])
    k = max([len(d.batch) for p in dec_prof if p is not None for d in p.decode] + [2])
    pre_len, pre_tps, pre_lo, pre_hi = [], [], [], []
    dec_b, dec_t, dec_hi, dec_lo, dec_ctx, dec_valid = [], [], [], [], [], []
    for pp, dp in zip(pre_prof, dec_prof):
        xs, ys = pp.prefill.points() if pp is not None else ([1.0], [1.0])
        x, y = _pad(xs, ys, kp)
        pre_len.append(x), pre_tps.append(y)
        pre_lo.append(xs[0] if len(xs) > 1 else 0.0), pre_hi.append(xs[-1] if len(xs) > 1 else math.inf)
        tables = list(dp.decode) if dp is not None else []
        rows_b, rows_t = [], []
        for j in range(t_n):
            d = tables[j] if j < len(tables) else None
            x, y = _pad(d.batch, d.tpot_ms, k) if d is not None else _pad([1.0], [1.0], k)
            rows_b.append(x), rows_t.append(y)
        dec_b.append(rows_b), dec_t.append(rows_t)
        dec_hi.append([tables[j].batch[-1] if j < len(tables) else 0.0 for j in range(t_n)])
        dec_lo.append([tables[j].batch[0] if j < len(tables) else 0.0 for j in range(t_n)])
        dec_ctx.append([decode.mean_context(tables[j].input_tokens, tables[j].output_tokens) if j < len(tables) else 1.0
                        for j in range(t_n)])
        dec_valid.append([j < len(tables) for j in range(t_n)])
    dec_b, dec_t = f64(dec_b), f64(dec_t)

    # --- batched kernels: one call each over all Q queries --------------------------------------
    to32 = lambda a: jnp.asarray(a, jnp.float32)
    table = np.asarray(jax.vmap(covering_table)(to32(ctx_mean), to32(dec_ctx), jnp.asarray(dec_valid)))
    rows = np.arange(n)
    tb, tt = dec_b[rows, table], dec_t[rows, table]  # [Q, K]
    t_hi, t_lo = f64(dec_hi)[rows, table], f64(dec_lo)[rows, table]
    has_pre = np.array([p is not None for p in pre_prof])
    has_dec = np.array([p is not None for p in dec_prof])
    above = has_dec & (batch > t_hi)
    prof_tpot = has_dec & ~above

    model_b, hw_b, eff_b = roofline.stack(shapes), roofline.stack(hws), roofline.stack(effs)
    dp, ep = f64([q.dp for q in queries]), f64([q.ep for q in queries])
    tp_only = (dp == 1) & (ep == 1)
    roof_prefill = np.asarray(roofline.prefill_time_s_batched(to32(L), model_b, hw_b, eff_b, to32(np.ones(n))), np.float64)
    roof_step = np.asarray(roofline.decode_step_s_batched(to32(batch), to32(ctx_mean), model_b, hw_b, eff_b), np.float64)
    if not tp_only.all():  # data-parallel attention / expert-parallel MoE (roofline.ep_forward_s)
        roof_prefill = np.where(tp_only, roof_prefill, np.asarray(roofline.ep_prefill_time_s_batched(
            to32(L), model_b, hw_b, eff_b, to32(dp), to32(ep), to32(np.ones(n))), np.float64))
        roof_step = np.where(tp_only, roof_step, np.asarray(roofline.ep_decode_step_s_batched(
            to32(batch), to32(ctx_mean), model_b, hw_b, eff_b, to32(dp), to32(ep)), np.float64))
    # weights the instance holds: the attention/dense part once per data-parallel group, the experts once
    held = f64([memory.held_weight_bytes(float(s.weight_bytes), float(s.expert_bytes), q.dp)
                for s, q in zip(shapes, queries)])
    mem_total = f64([q.tp * q.dp * float(ctx.skus[q.sku]["memory_gib"]) * memory.GIB for q in queries])
    b_mem = np.asarray(roofline.max_batch_memory_batched(
        to32(L + out_tok), model_b._replace(weight_bytes=to32(held)), to32(mem_total),
        to32(np.full(n, ctx.memory_utilization))), np.float64)
    tps_prof = np.asarray(prefill.max_tokens_per_s(to32(L), to32(pre_len), to32(pre_tps)), np.float64)
    tpot_prof = np.asarray(decode.tpot_ms(to32(batch), to32(tb), to32(tt)), np.float64)

    # --- which source where; roofline must be evaluable where it is used -------------------------
    for i, q in enumerate(queries):
        if reasons[i] is not None and (not has_pre[i] or not prof_tpot[i]):
            needed = [] if has_pre[i] else ["prefill (no profile)"]
            if not prof_tpot[i]:
                needed.append(f"TPOT (batch {q.batch:g} above the profile's largest measured batch {t_hi[i]:g})"
                              if above[i] else "TPOT (no profile)")
            raise EstimateError(f"{q.model} on {q.sku} tp {q.tp} needs the roofline for {' and '.join(needed)}, "
                                f"but {reasons[i]}")
    prefill_s = np.where(has_pre, L / tps_prof, roof_prefill)
    tpot_ms = np.where(prof_tpot, tpot_prof, roof_step * 1e3)
    notes, fits, errors, runs = [], [], [], []
    for i, q in enumerate(queries):
        note = []
        if skipped[i]:
            note.append(f"profile skipped: it is measured at the model's {ctx.models[q.model].get('weight_dtype', 'bf16')} "
                        f"weights, not {precisions[i]}")
        if has_pre[i] and (L[i] < pre_lo[i] or L[i] > pre_hi[i]):
            note.append(f"input {q.input_tokens} outside the profile's measured input lengths "
                        f"[{pre_lo[i]:g}, {pre_hi[i]:g}]: TPmax held at the nearest end")
        if above[i]:
            note.append(f"batch {q.batch:g} above the profile's largest measured batch {t_hi[i]:g}: roofline TPOT")
        elif prof_tpot[i] and batch[i] < t_lo[i]:
            note.append(f"batch {q.batch:g} below the profile's smallest measured batch {t_lo[i]:g}: its TPOT held")
        uses_roofline = not has_pre[i] or not prof_tpot[i]
        comp = roofline.compute_precision(precisions[i])
        used = _peak_precision(ctx.skus[q.sku], comp)
        if uses_roofline and used is not None and used != comp:
            note.append(f"sku {q.sku} lists no {comp} tflops: roofline uses its {used} peak")
        node = ctx.skus[q.sku].get("gpus_per_node") or 8
        why_not = cannot_run(ctx.models[q.model], q, node, b_mem[i])
        runs.append(not why_not)
        if why_not:
            note.append(f"cannot run: {why_not}; no numbers")
            prefill_s[i] = tpot_ms[i] = np.nan
        elif batch[i] > b_mem[i]:
            note.append(f"batch {q.batch:g} exceeds max_batch_memory {b_mem[i]:g} (KV cache does not fit): no TPOT")
            tpot_ms[i] = np.nan
        notes.append("; ".join(note))
        served = calib.get(q.sku)
        if uses_roofline and served is not None and not isinstance(served, str):
            fits.append(served.fit + (" (borrowed)" if served.borrowed else ""))
            roles = (["prefill"] if not has_pre[i] else []) + (["decode"] if not prof_tpot[i] else [])
            errors.append(_worst_error(served, roles, ctx.calibration, q.dp > 1 or q.ep > 1,
                                       catalog.is_moe(ctx.models[q.model]))
                          if runs[-1] else np.nan)
        else:
            fits.append("")
            errors.append(np.nan)

    kv = f64([float(s.kv_bytes_per_token) for s in shapes])
    wb = held
    return pd.DataFrame({
        "model": [q.model for q in queries],
        "sku": [q.sku for q in queries],
        "tp": [q.tp for q in queries],
        "precision": precisions,
        "input_tokens": [q.input_tokens for q in queries],
        "output_tokens": [q.output_tokens for q in queries],
        "batch": [int(b) if b == int(b) else b for b in batch],
        "dp": [q.dp for q in queries],
        "ep": [q.ep for q in queries],
        "prefill_s": prefill_s,
        "prefill_source": np.where(has_pre, "profile", "roofline"),
        "tpot_ms": tpot_ms,
        "tpot_source": np.where(prof_tpot, "profile", "roofline"),
        "decode_tokens_per_s": batch / (tpot_ms * 1e-3),
        "max_batch_memory": pd.array(np.where(runs, np.maximum(b_mem, 0.0), np.nan), dtype="Int64"),
        "weights_gib": wb / memory.GIB,
        "kv_gib_per_request": kv * (L + out_tok) / memory.GIB,
        "fit": fits,
        "prediction_error": errors,
        "note": notes,
    }, columns=OUTPUT_COLUMNS)
