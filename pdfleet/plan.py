"""From solver arrays to the plan tables users read: plan.parquet and fleet.parquet as DataFrames.

Host-side only. Integer counts come from the solver; GPUs and costs are recomputed here in float64
from those integers and the spec's prices, so published dollars carry no float32 noise.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from pdfleet import evaluate as E
from pdfleet import spec as S

ROLES = ("prefill", "decode")

STATUS_TEXT = {
    "ok": "meets its SLOs at the planned count",
    "no_demand": "no demand in this quarter: 0 instances",
    "over_slo": "the predicted latency at the planned count is above the SLO (nearest rounding rounds down; "
    "ceil does not)",
    "no_profile": "no profile of this model measures this role; add one under profiles:",
    "ttft_unreachable": "on every candidate the TTFT budget (SLO - overhead) is below the M/M/1 floor; "
    "loosen slo.ttft_s, cut overhead_s or add a faster profile",
    "tpot_unreachable": "no measured batch meets the TPOT SLO on any candidate; loosen slo.tpot_ms or add a "
    "profile measured at smaller batches or on faster hardware",
    "kv_memory": "weights plus one request's KV cache do not fit in the instance memory on any candidate",
    "cost_overflow": "every feasible candidate needs more instances than can be counted; check demand and units",
}
REASON_STATUS = {
    E.NO_PROFILE: "no_profile",
    E.TTFT_UNREACHABLE: "ttft_unreachable",
    E.TPOT_UNREACHABLE: "tpot_unreachable",
    E.KV_MEMORY: "kv_memory",
    E.NO_FINITE_COST: "cost_overflow",
}
STRING_COLUMNS = ("quarter", "workload", "model", "role", "sku", "engine", "source", "decode_table",
                  "ttft_statistic", "status")
# Predicted latency may exceed the SLO by this relative slack before a row is flagged (float32 noise).
_SLO_SLACK = 1e-4


def _status(reason: int, demand: float, predicted: float, slo: float) -> str:
    if reason != E.OK:
        return REASON_STATUS[reason]
    if demand <= 0:
        return "no_demand"
    if not predicted <= slo * (1 + _SLO_SLACK):
        return "over_slo"
    return "ok"


def plan_frame(fleet: S.Fleet, solver_rows: list[str | None], sol) -> pd.DataFrame:
    """One row per quarter x workload x role, in fleet.yaml order (columns carry units).

    solver_rows names the workload of each solver row (None for padding), as arrays.build returns it.
    """
    sol = _to_numpy(sol)
    quarters = fleet.planning.quarters
    where = {name: i for i, name in enumerate(solver_rows) if name is not None}
    rows = []
    for qi, quarter in enumerate(quarters):
        for name in fleet.workloads:
            wi = where[name]
            w = fleet.workloads[name]
            q = S.ttft_quantile(fleet, w)
            pd_ratio = float(sol["pd_ratio"][qi, wi])
            for role in ROLES:
                rows.append(_row(fleet, sol, role, qi, wi, quarter, name, w, q, pd_ratio))
    frame = pd.DataFrame(rows, columns=list(rows[0].keys()))
    return frame.astype({c: "string" for c in STRING_COLUMNS})  # typed even when every value is null


def _row(fleet, sol, role, qi, wi, quarter, name, w, q, pd_ratio) -> dict:
    choice = sol[role]
    prof_i = int(choice["profile"][qi, wi])
    reason = int(choice["reason"][qi, wi])
    chosen = reason == E.OK and prof_i >= 0
    demand = float(sol["demand_rps"][qi, wi])
    served = chosen and demand > 0  # predictions exist only where traffic flows
    prof = fleet.profiles[prof_i] if chosen else None
    instances = int(choice["instances"][qi, wi]) if chosen else 0
    gpi = prof.gpus_per_instance if chosen else 0
    price = fleet.skus[prof.sku].price_usd_per_gpu_hour if chosen else 0.0
    cap_rps = float(choice["capacity_rps"][qi, wi]) if chosen else math.nan
    if role == "prefill":
        predicted, slo = float(sol["predicted_ttft_s"][qi, wi]), w.slo.ttft_s
    else:
        predicted, slo = float(sol["predicted_tpot_ms"][qi, wi]), w.slo.tpot_ms
    table = int(sol["decode_table"][qi, wi])
    return {
        "quarter": quarter,
        "workload": name,
        "model": w.model,
        "role": role,
        "sku": prof.sku if chosen else None,
        "gpus_per_instance": gpi,
        "profile_index": prof_i if chosen else -1,
        "engine": (prof.engine if chosen else None),
        "source": (prof.origin if chosen else None),
        "instances": instances,
        "instances_fractional": float(choice["fractional"][qi, wi]) if chosen else math.nan,
        "gpus": instances * gpi,
        "cost_usd_per_hour": instances * gpi * price,
        "demand_rps": demand,
        "capacity_rps": cap_rps,
        "capacity_tokens_per_s": float(choice["capacity_tokens_per_s"][qi, wi]) if chosen else math.nan,
        "utilization": demand / (instances * cap_rps) if chosen and instances > 0 else math.nan,
        "decode_batch": float(sol["decode_batch"][qi, wi]) if role == "decode" and served else math.nan,
        "decode_batch_max": float(sol["decode_batch_max"][qi, wi]) if role == "decode" and chosen else math.nan,
        "decode_table": prof.decode[table].label if role == "decode" and chosen else None,
        "prefill_extrapolated": bool(sol["prefill_extrapolated"][qi, wi]) if role == "prefill" else False,
        "predicted_ttft_s": float(sol["predicted_ttft_s"][qi, wi]) if role == "prefill" and served else math.nan,
        "predicted_tpot_ms": float(sol["predicted_tpot_ms"][qi, wi]) if role == "decode" and served else math.nan,
        "ttft_statistic": "mean" if q is None else f"p{q * 100:g}",
        "slo_ttft_s": w.slo.ttft_s,
        "slo_tpot_ms": w.slo.tpot_ms,
        "input_tokens": w.input_tokens,
        "output_tokens": w.output_tokens,
        "pd_ratio": pd_ratio,
        "status": _status(reason, demand, predicted, slo),
    }


def _to_numpy(sol) -> dict:
    out = {role: {k: np.asarray(v) for k, v in getattr(sol, role)._asdict().items()} for role in ROLES}
    for k, v in sol._asdict().items():
        if k not in ROLES:
            out[k] = np.asarray(v)
    return out


def fleet_frame(fleet: S.Fleet, plan: pd.DataFrame) -> pd.DataFrame:
    """One row per quarter x sku: GPUs and cost by role, and the inventory check."""
    quarters = fleet.planning.quarters
    rows = []
    for qi, quarter in enumerate(quarters):
        in_q = plan[plan["quarter"] == quarter]
        for sku_name, sku in fleet.skus.items():
            mine = in_q[in_q["sku"] == sku_name]
            gpus = int(mine["gpus"].sum())
            inventory = (S.per_quarter(sku.inventory, quarters, f"skus.{sku_name}.inventory")[qi]
                         if sku.inventory is not None else math.nan)
            rows.append({
                "quarter": quarter,
                "sku": sku_name,
                "gpus": gpus,
                "prefill_gpus": int(mine.loc[mine["role"] == "prefill", "gpus"].sum()),
                "decode_gpus": int(mine.loc[mine["role"] == "decode", "gpus"].sum()),
                "cost_usd_per_hour": float(mine["cost_usd_per_hour"].sum()),
                "price_usd_per_gpu_hour": sku.price_usd_per_gpu_hour,
                "inventory_gpus": inventory,
                "over_inventory": bool(gpus > inventory) if not math.isnan(inventory) else False,
                "gpus_short": max(0.0, gpus - inventory) if not math.isnan(inventory) else 0.0,
            })
    return pd.DataFrame(rows)
