"""From a solved fleet to the tables users read: plan.parquet and fleet.parquet as DataFrames.

Host-side only. Integer counts come from the fleet problem; GPUs and dollars from the procurement
(search/procure.py) in float64. A plan row carries its GPUs x the average cost per used GPU of its sku
and quarter, so rows add up to fleet.parquet's cost wherever GPUs are used.
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
    "over_slo": "the predicted latency at the planned count is above the SLO (nearest rounding can round down, "
    "ceil does not; a deployment pinned by deploy: may be too small: its headroom column says by how much)",
    "no_profile": "no profile of this model measures this role; add one under profiles:",
    "ttft_unreachable": "on every candidate the TTFT budget (SLO - overhead) is below the M/M/1 floor; "
    "loosen slo.ttft_s, cut overhead_s or add a faster profile",
    "tpot_unreachable": "no measured batch meets the TPOT SLO on any candidate; loosen slo.tpot_ms or add a "
    "profile measured at smaller batches or on faster hardware",
    "kv_memory": "weights plus one request's KV cache do not fit in the instance memory on any candidate",
    "cost_overflow": "every feasible candidate needs more instances than can be counted; check demand and units",
    "inventory": "no pair fits within the skus' inventory, owned, buy_max and rent_max limits in this quarter; "
    "raise a limit or add a sku (manifest.json binding_limits says which limit and what it is worth)",
    "budget": "the quarter's planning.budget_usd_per_hour cannot pay for this row; raise the budget",
    "no_partner": "the other role of this workload cannot be served, so this one is not planned either",
}
REASON_STATUS = {
    E.NO_PROFILE: "no_profile",
    E.TTFT_UNREACHABLE: "ttft_unreachable",
    E.TPOT_UNREACHABLE: "tpot_unreachable",
    E.KV_MEMORY: "kv_memory",
    E.NO_FINITE_COST: "cost_overflow",
}
STRING_COLUMNS = ("quarter", "workload", "model", "role", "sku", "engine", "source", "calibration_fit", "decode_table",
                  "ttft_statistic", "pair_sku", "runner_up", "status")
# Predicted latency may exceed the SLO by this relative slack before a row is flagged (float32 noise).
_SLO_SLACK = 1e-4


def _status(reason: int, limited: str, served: bool, demand: float, predicted: float, slo: float) -> str:
    if reason != E.OK:
        return REASON_STATUS[reason]
    if limited:
        return limited
    if demand <= 0:
        return "no_demand"
    if not served:
        return "no_partner"
    if not predicted <= slo * (1 + _SLO_SLACK):
        return "over_slo"
    return "ok"


def shape_label(sku, gpus_per_instance, dp=1, ep=1) -> str:
    """How plans name an instance shape: 'H100-SXM/8' (tensor-parallel), 'H200-SXM/8 dp8 ep8' (data-parallel
    attention with expert-parallel MoE layers). One place for the plan's pair_sku / runner_up, the terminal
    report, `optimize --json` and the HTML report."""
    dp, ep = int(dp), int(ep)
    shape = f" dp{dp} ep{ep}" if dp > 1 or ep > 1 else ""
    return f"{sku}/{gpus_per_instance}{shape}"


def _label(fleet: S.Fleet, profile: int) -> str | None:
    if profile < 0:
        return None
    p = fleet.profiles[profile]
    return shape_label(p.sku, p.gpus_per_instance, p.dp, p.ep)


def gpu_cost(fp, plan) -> np.ndarray:
    """[S, Q] USD per hour of one used GPU: the sku-quarter's capex + opex over the GPUs in use."""
    from pdfleet.search import fleet as F

    use = F._usage(fp, plan.pair_c, plan.pair_d)
    proc = plan.procurement
    if proc is None:
        return np.broadcast_to(fp.economics.rent_price[:, None], use.shape)
    total = proc.capex_per_hour + proc.opex_per_hour
    return np.where(use > 0, total / np.where(use > 0, use, 1.0), 0.0)


def plan_frame(fleet: S.Fleet, fp, plan, pred: dict, runner: dict) -> pd.DataFrame:
    """One row per quarter x workload x role, in fleet.yaml order (columns carry units).

    fp: search.problem.FleetProblem; plan: search.fleet.FleetPlan; pred: chosen.predict_plan;
    runner: search.fleet.runner_up."""
    per_gpu = gpu_cost(fp, plan)
    sku_index = {n: i for i, n in enumerate(fp.skus)}
    o = fp.options
    rows = []
    for qi, quarter in enumerate(fp.quarters):
        for wi, name in enumerate(fp.workloads):
            w = fleet.workloads[name]
            q = S.ttft_quantile(fleet, w)
            for ri, role in enumerate(ROLES):
                rows.append(_row(fleet, fp, plan, pred, runner, per_gpu, sku_index, o, role, ri, qi, wi, quarter,
                                 name, w, q))
    frame = pd.DataFrame(rows, columns=list(rows[0].keys()))
    errors, fits, borrowed = roofline_provenance(fleet, frame)
    at = frame.columns.get_loc("source") + 1
    frame.insert(at, "prediction_error", errors)
    frame.insert(at + 1, "calibration_fit", fits)
    frame.insert(at + 2, "fit_borrowed", pd.array(borrowed, dtype="boolean"))
    return frame.astype({c: "string" for c in STRING_COLUMNS})  # typed even when every value is null


def roofline_provenance(fleet: S.Fleet, frame: pd.DataFrame) -> tuple[np.ndarray, list, list]:
    """(prediction_error, calibration_fit, fit_borrowed) of every plan row. For rows a roofline profile serves:
    `prediction_errors`; the calibration entry that predicted the row ('sku/engine', '*' = pooled:
    pdfleet.calibrate.lookup(sku, planning.engine)); whether that entry was fitted on another sku (the row's sku
    never measured) or another engine than planning.engine. NaN / None / None for measured profiles and unserved
    rows."""
    roof = (frame["source"] == "roofline").to_numpy()
    served = _served_by_sku(fleet, frame["sku"][roof].astype(str).unique()) if roof.any() else {}
    fits: list = [None] * len(frame)
    borrowed: list = [None] * len(frame)
    for i in np.flatnonzero(roof):
        s = served[str(frame["sku"].iat[i])]
        fits[i], borrowed[i] = s.fit, bool(s.borrowed)
    return prediction_errors(fleet, frame, served), fits, borrowed


def _served_by_sku(fleet: S.Fleet, skus) -> dict:
    """{sku: calibrate.lookup(sku, planning.engine) on planning.calibration}, the fleet's skus beside the catalog's."""
    from pdfleet import calibrate, predicted

    records = predicted.sku_records(fleet)
    return {s: calibrate.lookup(s, fleet.planning.engine, path=fleet.planning.calibration, skus=records) for s in skus}


def prediction_errors(fleet: S.Fleet, frame: pd.DataFrame, served: dict) -> np.ndarray:
    """`prediction_error` of every plan row: for rows a roofline profile serves, the cross-validated
    relative error of the calibration entry that predicted it, for the row's role
    (pdfleet.calibrate.lookup(sku, planning.engine) then role_error; the margin 'auto' plans with), for a dp/ep
    shape at least the error measured on expert-parallel runs, for a sku never measured at least the error of
    moving a fit to such a sku (for the row's model, dense or mixture-of-experts); NaN for measured profiles and
    unserved rows. `served`: what lookup served each roofline row's sku (_served_by_sku)."""
    out = np.full(len(frame), np.nan)
    roof = (frame["source"] == "roofline").to_numpy()
    if not roof.any():
        return out
    from pdfleet import calibrate

    cache: dict = {}
    ep_shape = (frame["dp"].to_numpy() > 1) | (frame["ep"].to_numpy() > 1)
    for i in np.flatnonzero(roof):
        key = (str(frame["sku"].iat[i]), str(frame["role"].iat[i]), bool(ep_shape[i]),
               fleet.models[str(frame["model"].iat[i])].moe)
        if key not in cache:
            cache[key] = calibrate.role_error(served[key[0]], key[1], fleet.planning.calibration, key[2], key[3])[0]
        out[i] = cache[key]
    return out


def _row(fleet, fp, plan, pred, runner, per_gpu, sku_index, o, role, ri, qi, wi, quarter, name, w, q) -> dict:
    key = "pre" if role == "prefill" else "dec"
    other = "dec" if key == "pre" else "pre"
    prof_i = int(pred[f"{key}_profile"][qi, wi])
    served = prof_i >= 0
    demand = float(fp.demand_rps[qi, wi]) / (1.0 + fleet.planning.headroom)
    flowing = served and demand > 0
    prof = fleet.profiles[prof_i] if served else None
    instances = int(round(float(pred[f"{key}_instances"][qi, wi]))) if served else 0
    gpi = prof.gpus_per_instance if served else 0
    cost = instances * gpi * float(per_gpu[sku_index[prof.sku], qi]) if served else 0.0
    rate = float(pred[f"{key}_rate"][qi, wi]) if served else math.nan
    tokens = w.input_mean if role == "prefill" else w.output_mean
    if role == "prefill":
        predicted, slo = float(pred["predicted_ttft_s"][qi, wi]), w.slo.ttft_s
    else:
        predicted, slo = float(pred["predicted_tpot_ms"][qi, wi]), w.slo.tpot_ms
    alt = int(runner[f"{key}_alt"][qi, wi])
    alt_profile = int((o.pre_profile if key == "pre" else o.dec_profile)[wi, alt]) if alt >= 0 else -1
    table = int(pred["decode_table"][qi, wi])
    pre_f, dec_f = float(pred["pre_frac"][qi, wi]), float(pred["dec_frac"][qi, wi])
    pd_ratio = pre_f / dec_f if served and dec_f > 0 and math.isfinite(pre_f) else math.nan
    return {
        "quarter": quarter,
        "workload": name,
        "model": w.model,
        "role": role,
        "sku": prof.sku if served else None,
        "gpus_per_instance": gpi,
        "dp": prof.dp if served else 0,
        "ep": prof.ep if served else 0,
        "profile_index": prof_i,
        "engine": (prof.engine if served else None),
        "source": (prof.origin if served else None),
        "instances": instances,
        "instances_fractional": float(pred[f"{key}_frac"][qi, wi]) if served else math.nan,
        "gpus": instances * gpi,
        "cost_usd_per_hour": cost,
        "demand_rps": demand,
        "capacity_rps": rate,
        "capacity_tokens_per_s": rate * tokens if served else math.nan,
        "utilization": demand / (instances * rate) if served and instances > 0 and rate > 0 else math.nan,
        # extra demand the role carries within its SLO: instances x capacity / demand - 1 (an M/M/c pool
        # carries more than its per-instance capacity says: its headroom is a lower bound)
        "headroom": instances * rate / demand - 1 if flowing and instances > 0 else math.nan,
        "deployed": w.deploy is not None,  # pinned by workloads.*.deploy (reported, not chosen)
        "decode_batch": float(pred["decode_batch"][qi, wi]) if role == "decode" and flowing else math.nan,
        "decode_batch_max": float(pred["decode_batch_max"][qi, wi]) if role == "decode" and served else math.nan,
        "decode_table": prof.decode[table].label if role == "decode" and served else None,
        "prefill_extrapolated": bool(pred["prefill_extrapolated"][qi, wi]) if role == "prefill" else False,
        "predicted_ttft_s": float(pred["predicted_ttft_s"][qi, wi]) if role == "prefill" and flowing else math.nan,
        "predicted_tpot_ms": float(pred["predicted_tpot_ms"][qi, wi]) if role == "decode" and flowing else math.nan,
        "ttft_statistic": "mean" if q is None else f"p{q * 100:g}",
        "slo_ttft_s": w.slo.ttft_s,
        "slo_tpot_ms": w.slo.tpot_ms,
        "input_tokens": w.input_mean,  # the mean of a distribution or trace
        "output_tokens": w.output_mean,
        "pd_ratio": pd_ratio,
        "kv_transfer_s": float(pred["transfer_s"][qi, wi]) if served else math.nan,
        "pair_sku": _label(fleet, int(pred[f"{other}_profile"][qi, wi])),
        "runner_up": _label(fleet, alt_profile),
        "runner_up_extra_usd_per_hour": float(runner[f"{key}_extra"][qi, wi]) if alt >= 0 else math.nan,
        "status": _status(int(fp.row_reason[qi, wi, ri]), str(plan.limited[qi, wi] or ""), served, demand,
                          predicted, slo),
    }


def fleet_frame(fleet: S.Fleet, fp, plan) -> pd.DataFrame:
    """One row per quarter x sku: GPUs used by role, procurement (owned, purchased, rented), cost split
    into capex (amortized purchases) and opex (owned GPUs in use + rent), and the inventory check."""
    from pdfleet.search import fleet as F

    use = F._usage(fp, plan.pair_c, plan.pair_d)
    econ = fp.economics
    proc = plan.procurement
    pre = F._usage_per_workload(fp, plan.pair_c, plan.pair_d, roles=("prefill",)).sum(axis=0)
    rows = []
    for qi, quarter in enumerate(fp.quarters):
        for si, sku_name in enumerate(fp.skus):
            sku = fleet.skus[sku_name]
            inventory = float(econ.inventory[si, qi]) if math.isfinite(econ.inventory[si, qi]) else math.nan
            gpus = int(round(use[si, qi]))
            if proc is not None:
                owned, bought = float(proc.owned_total[si, qi]), float(proc.bought[si, qi])
                rented, capex, opex = float(proc.rented[si, qi]), float(proc.capex_per_hour[si, qi]), \
                    float(proc.opex_per_hour[si, qi])
            else:  # limits broken: every GPU beyond the owned ones rented, nothing bought
                owned, bought = float(econ.owned[si, qi]), 0.0
                rented = max(0.0, gpus - owned)
                capex = 0.0
                opex = min(gpus, owned) * econ.own_price[si] + rented * econ.rent_price[si]
            rows.append({
                "quarter": quarter,
                "sku": sku_name,
                "gpus": gpus,
                "prefill_gpus": int(round(pre[si, qi])),
                "decode_gpus": int(round(use[si, qi] - pre[si, qi])),
                "owned": int(round(owned)),
                "purchased": int(round(bought)),
                "rented": int(round(rented)),
                "capex_usd_per_hour": capex,
                "opex_usd_per_hour": opex,
                "cost_usd_per_hour": capex + opex,
                "price_usd_per_gpu_hour": sku.price_usd_per_gpu_hour,
                "inventory_gpus": inventory,
                "over_inventory": bool(gpus > inventory) if not math.isnan(inventory) else False,
                "gpus_short": max(0.0, gpus - inventory) if not math.isnan(inventory) else 0.0,
            })
    return pd.DataFrame(rows)
