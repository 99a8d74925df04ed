"""The declared schema of every parquet file pdfleet writes: column order, types, units, nullability.

One place. A writer casts its DataFrame to these schemas and refuses a frame whose columns differ, so a
column added in plan.py fails loudly until it is declared here. Change a column (name, type, order,
nullability) and bump SCHEMA_VERSION: tests/test_outputs_schema.py pins each version's fingerprint.
docs/outputs.md is `python -m pdfleet.output.schema` (a test checks it is current).
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pyarrow as pa

SCHEMA_VERSION = "4"  # 2: prediction_error, headroom, deployed; mean token lengths as float; simulate. 3: plan dp, ep
# 4: plan calibration_fit, fit_borrowed

S, I, F, B = pa.string(), pa.int64(), pa.float64(), pa.bool_()


def _f(name: str, kind, nullable: bool, doc: str) -> pa.Field:
    return pa.field(name, kind, nullable=nullable, metadata={"doc": doc})


PLAN = pa.schema([
    _f("quarter", S, False, "planning quarter, as named in planning.quarters"),
    _f("workload", S, False, "workload name (the key under workloads:, or the workload column of workloads_file)"),
    _f("model", S, False, "model the workload runs"),
    _f("role", S, False, "`prefill` or `decode`"),
    _f("sku", S, True, "GPU sku of this role's instances; null when the row is not served"),
    _f("gpus_per_instance", I, False, "GPUs per instance (tensor-parallel degree x dp); 0 when not served"),
    _f("dp", I, False, "attention data-parallel groups of the instance, each of gpus_per_instance / dp tensor-parallel "
       "GPUs (1: plain tensor parallelism); 0 when not served"),
    _f("ep", I, False, "expert parallelism: 1 (experts tensor-parallel) or gpus_per_instance (the routed experts "
       "spread over every GPU; MoE models); 0 when not served"),
    _f("profile_index", I, False, "index of the chosen profile in the resolved spec's profiles (-1: none)"),
    _f("engine", S, True, "serving engine of the chosen profile, when it names one"),
    _f("source", S, True, "where the profile came from: `profile` (measured) or `roofline` (predicted)"),
    _f("prediction_error", F, True, "roofline rows: cross-validated relative error (p90) of the calibration fit that "
       "predicted this role (where the fit has none for the role, the wider of its own e2e error and its sku's or "
       "the pool's for the role; dp/ep rows at least the error measured on expert-parallel runs; a sku never "
       "measured at least the leave-one-sku-out error of moving a fit to such a sku, for a dense or MoE model: "
       "pdfleet.calibrate.role_error); null for measured profiles"),
    _f("calibration_fit", S, True, "roofline rows: the calibration entry that predicted this row, `sku/engine` (`*`: "
       "pooled over skus or engines; pdfleet.calibrate.lookup of the row's sku and planning.engine); another sku "
       "than the row's when the row's sku was never measured (its fit moved there); null for measured profiles"),
    _f("fit_borrowed", B, True, "roofline rows: true when calibration_fit was fitted on another sku or another "
       "engine than planning.engine asks for; null for measured profiles"),
    _f("instances", I, False, "planned whole instances of this role"),
    _f("instances_fractional", F, True, "demand / per-instance capacity, before rounding (the paper's eqs. 5-6)"),
    _f("gpus", I, False, "instances x gpus_per_instance"),
    _f("cost_usd_per_hour", F, False, "USD per hour: gpus x the average cost per used GPU of its sku and quarter; "
       "summed per quarter it equals fleet.parquet's cost except the capex of a sku with no GPU in use that "
       "quarter (bought GPUs left idle), which belongs to no row: use fleet.parquet for totals"),
    _f("demand_rps", F, False, "requests per second the workload asks for in this quarter (before headroom)"),
    _f("capacity_rps", F, True, "requests per second one instance serves within the SLO"),
    _f("capacity_tokens_per_s", F, True, "capacity_rps x input_tokens (prefill) or x output_tokens (decode)"),
    _f("utilization", F, True, "demand_rps / (instances x capacity_rps): a fraction of the SLO capacity"),
    _f("headroom", F, True, "instances x capacity_rps / demand_rps - 1: extra demand, as a fraction, the role carries "
       "within its SLO (queue mmc: a lower bound); null without demand"),
    _f("deployed", B, False, "the row is a running deployment pinned by workloads.*.deploy (reported, not chosen)"),
    _f("decode_batch", F, True, "mean decode batch, sequences (Little's law); decode rows with demand only"),
    _f("decode_batch_max", F, True, "largest decode batch, sequences, meeting the TPOT SLO and KV memory"),
    _f("decode_table", S, True, "label of the measured decode table used (decode rows)"),
    _f("prefill_extrapolated", B, False, "the input length lies outside the measured prefill table"),
    _f("predicted_ttft_s", F, True, "predicted TTFT, seconds, of the statistic ttft_statistic (prefill rows)"),
    _f("predicted_tpot_ms", F, True, "predicted mean TPOT, milliseconds (decode rows)"),
    _f("ttft_statistic", S, False, "which TTFT statistic the SLO and prediction are: `mean` or `p90` etc."),
    _f("slo_ttft_s", F, False, "TTFT SLO, seconds"),
    _f("slo_tpot_ms", F, False, "TPOT SLO, milliseconds"),
    _f("input_tokens", F, False, "input (prompt) tokens per request: the mean of a distribution or trace"),
    _f("output_tokens", F, False, "output tokens per request: the mean of a distribution or trace"),
    _f("pd_ratio", F, True, "fractional prefill / fractional decode instances"),
    _f("kv_transfer_s", F, True, "seconds to move one prompt's KV cache from prefill to decode"),
    _f("pair_sku", S, True, "the other role's sku/gpus_per_instance (followed by ` dpD epE` for an expert-parallel "
       "shape)"),
    _f("runner_up", S, True, "best other candidate for this role (sku/gpus_per_instance, as pair_sku), the other role "
       "kept"),
    _f("runner_up_extra_usd_per_hour", F, True, "USD per hour the runner-up would cost more at the plan's prices"),
    _f("status", S, False, "`ok`, `no_demand`, `over_slo`, `inventory`, `budget`, `no_partner`, `no_profile`, "
       "`ttft_unreachable`, `tpot_unreachable`, `kv_memory` or `cost_overflow`"),
])

FLEET = pa.schema([
    _f("quarter", S, False, "planning quarter"),
    _f("sku", S, False, "GPU sku"),
    _f("gpus", I, False, "GPUs of this sku in use, both roles"),
    _f("prefill_gpus", I, False, "GPUs in use by prefill instances"),
    _f("decode_gpus", I, False, "GPUs in use by decode instances"),
    _f("owned", I, False, "GPUs owned this quarter (owned before the horizon + bought so far)"),
    _f("purchased", I, False, "GPUs bought that arrive this quarter"),
    _f("rented", I, False, "GPUs rented this quarter"),
    _f("capex_usd_per_hour", F, False, "USD per hour of amortized purchases"),
    _f("opex_usd_per_hour", F, False, "USD per hour of owned GPUs in use plus rent"),
    _f("cost_usd_per_hour", F, False, "capex_usd_per_hour + opex_usd_per_hour"),
    _f("price_usd_per_gpu_hour", F, False, "rent price of one GPU-hour"),
    _f("inventory_gpus", F, True, "cap on GPUs in use (owned + bought + rented); null: no cap"),
    _f("over_inventory", B, False, "gpus exceed inventory_gpus (only with --solver exact, which ignores caps)"),
    _f("gpus_short", F, False, "GPUs beyond inventory_gpus (0 when within)"),
])

DIFF = pa.schema([
    _f("kind", S, False, "`sku`: a row per quarter x sku of either plan; `workload`: a (quarter, workload, role) "
       "whose allocation changed"),
    _f("quarter", S, False, "planning quarter"),
    _f("sku", S, True, "the sku (kind sku), or plan B's sku of the row (plan A's when B does not serve it)"),
    _f("workload", S, True, "workload (kind workload)"),
    _f("role", S, True, "`prefill` or `decode` (kind workload)"),
    _f("gpus_a", I, False, "GPUs in plan A (0 when absent)"),
    _f("gpus_b", I, False, "GPUs in plan B (0 when absent)"),
    _f("gpus_delta", I, False, "gpus_b - gpus_a"),
    _f("cost_usd_per_hour_a", F, False, "USD per hour in plan A"),
    _f("cost_usd_per_hour_b", F, False, "USD per hour in plan B"),
    _f("cost_delta_usd_per_hour", F, False, "cost_usd_per_hour_b - cost_usd_per_hour_a"),
    _f("allocation_a", S, True, "plan A's `instances x sku/gpus_per_instance` (followed by ` dpD epE` for an "
       "expert-parallel shape; `-`: not served) (kind workload)"),
    _f("allocation_b", S, True, "plan B's allocation (kind workload)"),
    _f("reasons", S, True, "input changes that explain it: demand, slo, price, inventory, budget, "
       "`price (another sku)`, `inventory (another sku)` or `other` (kind workload)"),
])

SIMULATE = pa.schema([
    _f("quarter", S, False, "planning quarter"),
    _f("workload", S, False, "workload"),
    _f("requests", I, False, "requests counted (the first and last 5% by arrival left out)"),
    _f("ttft_mean_s", F, True, "simulated mean TTFT, seconds (prefill wait + compute + overhead_s)"),
    _f("ttft_p50_s", F, True, "simulated median TTFT, seconds"),
    _f("ttft_p90_s", F, True, "simulated 90th percentile TTFT, seconds"),
    _f("ttft_p99_s", F, True, "simulated 99th percentile TTFT, seconds"),
    _f("tpot_mean_ms", F, True, "simulated mean over requests of (finish - first token) / (output tokens - 1), ms"),
    _f("tpot_p90_ms", F, True, "90th percentile of that per-request TPOT, ms"),
    _f("decode_batch_mean", F, True, "time-averaged decode batch while an instance steps"),
    _f("slo_met", B, False, "both SLO statistics (ttft_checked, tpot_checked) within the SLOs"),
    _f("arrivals", S, False, "`poisson N requests` or `trace FILE xS speed` (the trace's clock scaled by S)"),
    _f("demand_rps", F, False, "requests per second simulated (the plan's demand x --demand-scale)"),
    _f("prefill_instances", I, False, "prefill instances of the plan"),
    _f("decode_instances", I, False, "decode instances of the plan"),
    _f("prefill_policy", S, False, "`rr` (per-instance queues) or `least_work` (one pooled queue, queue mmc)"),
    _f("predicted_ttft_s", F, True, "the plan's predicted TTFT statistic at the planned demand, seconds"),
    _f("predicted_tpot_ms", F, True, "the plan's predicted TPOT at the planned demand, ms"),
    _f("slo_ttft_s", F, False, "TTFT SLO, seconds"),
    _f("slo_tpot_ms", F, False, "TPOT SLO, ms"),
    _f("ttft_checked", S, False, "the simulated column compared with the TTFT SLO"),
    _f("tpot_checked", S, False, "the simulated column compared with the TPOT SLO"),
    _f("ttft_met", B, False, "ttft_checked <= slo_ttft_s"),
    _f("tpot_met", B, False, "tpot_checked <= slo_tpot_ms"),
    _f("ttft_attainment", F, True, "share of counted requests with TTFT <= slo_ttft_s"),
    _f("tpot_attainment", F, True, "share with TPOT <= slo_tpot_ms (one-token requests count as met)"),
    _f("slo_attainment", F, True, "share meeting both SLOs"),
    _f("prefill_utilization", F, True, "prefill compute time / (instances x arrival span)"),
    _f("decode_wait_mean_s", F, True, "mean wait from KV ready to joining a decode batch, seconds"),
])

# The only nulls a served row (status `ok`) may carry: the column and when. Every other column of an `ok` row is a
# finite number or a string (a row that is not served may leave any nullable column null; its status says why).
# tests/test_properties.py and tests/test_numerics.py hold every plan they make to this.
OK_NULLS = {
    "plan": {
        "engine": "the chosen profile names no engine",
        "prediction_error": "a measured profile (source `profile`) serves the row",
        "calibration_fit": "a measured profile (source `profile`) serves the row",
        "fit_borrowed": "a measured profile (source `profile`) serves the row",
        "decode_batch": "prefill rows",
        "decode_batch_max": "prefill rows",
        "decode_table": "prefill rows",
        "predicted_tpot_ms": "prefill rows",
        "predicted_ttft_s": "decode rows",
        "runner_up": "no other candidate can serve the role",
        "runner_up_extra_usd_per_hour": "no other candidate can serve the role",
    },
    "fleet": {"inventory_gpus": "the sku has no inventory cap"},
}


def ok_null_allowed(frame: pd.DataFrame, name: str, inventory_capped=None) -> dict[str, "pd.Series"]:
    """Per OK_NULLS column, where a null is allowed in `frame` (plan or fleet): a boolean Series per column.
    inventory_capped(sku) -> bool says which skus have a cap (fleet only)."""
    if name == "fleet":
        return {"inventory_gpus": ~frame["sku"].map(inventory_capped).astype(bool)}
    role, none = frame["role"], frame["runner_up"].isna()
    measured = frame["source"] == "profile"
    return {"engine": pd.Series(True, index=frame.index), "prediction_error": measured,
            "calibration_fit": measured, "fit_borrowed": measured,
            **{c: role == "prefill" for c in ("decode_batch", "decode_batch_max", "decode_table", "predicted_tpot_ms")},
            "predicted_ttft_s": role == "decode", "runner_up": none, "runner_up_extra_usd_per_hour": none}


def unexplained_nulls(frame: pd.DataFrame, name: str, inventory_capped=None) -> dict[str, int]:
    """Columns with a null (NaN, None) or an infinity on an `ok` row (every fleet row) that OK_NULLS does not
    explain: {column: rows}. Empty when the frame keeps the contract."""
    ok = frame["status"] == "ok" if name == "plan" else pd.Series(True, index=frame.index)
    allowed = ok_null_allowed(frame, name, inventory_capped)
    out = {}
    for col in frame.columns:
        values = frame[col]
        bad = values.isna()
        if values.dtype.kind == "f":
            bad |= ~np.isfinite(values.fillna(0.0).to_numpy())
        bad &= ok
        if col in allowed:
            bad &= ~allowed[col]
        if bad.any():
            out[col] = int(bad.sum())
    return out


SIMULATE_REQUIRED = 11  # simulate.parquet's first columns, the ones every reader may rely on (issue #7)

SCHEMAS = {"plan": PLAN, "fleet": FLEET, "diff": DIFF, "simulate": SIMULATE}
# With --scenarios or --demand-scale, plan and fleet files start with this column (the rest unchanged).
SCENARIO = _f("scenario", S, False, "scenario name (optimize --scenarios FILE or --demand-scale X)")


class SchemaError(Exception):
    pass


def to_table(frame: pd.DataFrame, name: str) -> pa.Table:
    """The frame as an Arrow table of the declared schema `name` (column order, types; NaN -> null).
    Raises SchemaError when the columns differ from the declaration or a non-nullable column has a null."""
    schema = SCHEMAS[name]
    if "scenario" in frame.columns and name in ("plan", "fleet"):
        schema = pa.schema([SCENARIO, *schema])
    want, have = schema.names, list(frame.columns)
    if sorted(want) != sorted(have):
        extra, missing = sorted(set(have) - set(want)), sorted(set(want) - set(have))
        raise SchemaError(f"{name}.parquet columns differ from pdfleet/output/schema.py (extra {extra}, missing "
                          f"{missing}): declare them there and bump SCHEMA_VERSION")
    table = pa.Table.from_pandas(frame[want], schema=schema, preserve_index=False)
    for field in schema:
        if not field.nullable and table[field.name].null_count:
            raise SchemaError(f"{name}.parquet column {field.name} is declared non-null but has "
                              f"{table[field.name].null_count} nulls")
    return table.replace_schema_metadata({"pdfleet.table": name, "pdfleet.schema_version": SCHEMA_VERSION})


def fingerprint(schema: pa.Schema) -> str:
    """sha256 over each column's name, type, nullability, in order (docs excluded)."""
    text = "\n".join(f"{f.name}:{f.type}:{f.nullable}" for f in schema)
    return hashlib.sha256(text.encode()).hexdigest()


def markdown() -> str:
    """docs/outputs.md: a line per column of every file."""
    lines = ["# pdfleet outputs", "",
             f"Schema version {SCHEMA_VERSION} (`schema_version` in manifest.json). Generated from "
             "`pdfleet/output/schema.py` by `python -m pdfleet.output.schema > docs/outputs.md`.", "",
             "Every parquet file carries this schema exactly: column order, Arrow types, nullability. Data files "
             "hold no run id or timestamp (those are in manifest.json), so the same input gives byte-identical "
             "files. `--partition-by quarter` writes `plan/quarter=Q/part-0.parquet` and "
             "`fleet/quarter=Q/part-0.parquet` (Hive layout: the quarter lives in the folder name, not in the file). "
             "diff.parquet is written by `pdfleet diff PLAN_A PLAN_B -o diff.parquet`. With `optimize --scenarios "
             "FILE` or `--demand-scale X`, plan and fleet files start with a `scenario` column (string, not null; "
             "`--partition-by scenario` makes it the folder level) and manifest.json holds each scenario's cost, "
             "bound, gap, limits and timings under `scenarios`.",
             ""]
    for name, schema in SCHEMAS.items():
        lines += [f"## {name}.parquet", "", "| column | type | null | meaning |", "|---|---|---|---|"]
        lines += [f"| `{f.name}` | {f.type} | {'yes' if f.nullable else 'no'} | {f.metadata[b'doc'].decode()} |"
                  for f in schema]
        lines.append("")
        if name in OK_NULLS:
            lines += [_ok_nulls_intro(name), ""]
            lines += [f"- `{col}`: {when}" for col, when in OK_NULLS[name].items()]
            lines.append("")
    return "\n".join(lines)


def _ok_nulls_intro(name: str) -> str:
    if name == "plan":
        return ("No NaN or infinity is ever written (a float NaN becomes null). A served row (`status` `ok`) is null "
                "only in these columns, and only when stated; a row that is not served may be null in any nullable "
                "column, and its `status` says why:")
    return "Every fleet row is finite and not null except:"


if __name__ == "__main__":
    print(markdown(), end="")
