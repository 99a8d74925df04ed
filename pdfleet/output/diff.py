"""`pdfleet diff PLAN_A PLAN_B`: what changed between two plans, and why.

Two kinds of rows in one table (the `kind` column): `sku`, GPUs and cost per sku and quarter in both
plans; `workload`, each (quarter, workload, role) whose allocation (sku, gpus_per_instance, instances)
changed, with the input changes that explain it in `reasons`:
- demand: demand_rps, input_tokens or output_tokens of the row differ;
- slo: slo_ttft_s, slo_tpot_ms or ttft_statistic differ;
- price: a sku of either allocation has another rent, running or purchase price;
- inventory: a sku of either allocation has other limits (inventory, owned, rent_max, buy_max, lead time);
- budget: planning.budget_usd_per_hour differs;
- "price (another sku)" / "inventory (another sku)": only skus outside both allocations changed (shared
  limits and prices couple the workloads); "other" when no input change is seen (e.g. another solver).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pdfleet.output.reader import PlanDir

PRICE_FIELDS = ("price_usd_per_gpu_hour", "owned_usd_per_gpu_hour", "purchase_usd_per_gpu", "amortization_quarters")
LIMIT_FIELDS = ("inventory", "owned", "rent_max", "buy_max", "lead_time_quarters")
REASONS = ("demand", "slo", "price", "inventory", "budget")


def _spec_changes(a: dict, b: dict, fields) -> set[str]:
    """Skus whose resolved-spec fields differ between two manifests (a sku in one plan only counts)."""
    sa, sb = (m.get("resolved_spec", {}).get("skus", {}) for m in (a, b))
    return {s for s in set(sa) | set(sb)
            if any((sa.get(s) or {}).get(f) != (sb.get(s) or {}).get(f) for f in fields)}


def _sku_changes(a: PlanDir, b: PlanDir) -> pd.DataFrame:
    """(quarter, sku) -> price_changed, limits_changed."""
    f = a.fleet.merge(b.fleet, on=["quarter", "sku"], how="outer", suffixes=("_a", "_b"))
    price_skus = _spec_changes(a.manifest, b.manifest, PRICE_FIELDS)
    limit_skus = _spec_changes(a.manifest, b.manifest, LIMIT_FIELDS)
    price = ~_same(f["price_usd_per_gpu_hour_a"], f["price_usd_per_gpu_hour_b"]) | f["sku"].isin(price_skus)
    limits = ~_same(f["inventory_gpus_a"], f["inventory_gpus_b"]) | f["sku"].isin(limit_skus)
    return pd.DataFrame({"quarter": f["quarter"], "sku": f["sku"], "price": price, "limits": limits})


def _same(x: pd.Series, y: pd.Series) -> pd.Series:
    """Equal, or both null (floats within 1e-9 relative)."""
    both_null = x.isna() & y.isna()
    if pd.api.types.is_numeric_dtype(x) and pd.api.types.is_numeric_dtype(y):
        xv, yv = x.astype(float).to_numpy(), y.astype(float).to_numpy()
        close = np.isclose(xv, yv, rtol=1e-9, atol=0.0)
        return pd.Series(close, index=x.index) | both_null
    return (x.astype(object) == y.astype(object)).fillna(False).astype(bool) | both_null


def _alloc(frame: pd.DataFrame, side: str) -> pd.Series:
    sku = frame[f"sku_{side}"]
    text = (frame[f"instances_{side}"].fillna(0).astype(int).astype(str) + " x " + sku.astype(object).fillna("")
            + "/" + frame[f"gpus_per_instance_{side}"].fillna(0).astype(int).astype(str))
    dp, ep = (frame[f"{k}_{side}"].fillna(1).astype(int) for k in ("dp", "ep"))
    text = text + (" dp" + dp.astype(str) + " ep" + ep.astype(str)).where((dp > 1) | (ep > 1), "")
    return text.where(sku.notna() & (frame[f"instances_{side}"].fillna(0) > 0), "-")


def _shaped(plan: pd.DataFrame) -> pd.DataFrame:
    """A plan with dp and ep columns (a schema-2 plan, written before them, is tensor-parallel: 1, 1)."""
    return plan if "dp" in plan.columns else plan.assign(dp=1, ep=1)


def sku_rows(a: PlanDir, b: PlanDir) -> pd.DataFrame:
    f = a.fleet.merge(b.fleet, on=["quarter", "sku"], how="outer", suffixes=("_a", "_b"), sort=False)
    gpus_a, gpus_b = f["gpus_a"].fillna(0).astype(int), f["gpus_b"].fillna(0).astype(int)
    cost_a, cost_b = f["cost_usd_per_hour_a"].fillna(0.0), f["cost_usd_per_hour_b"].fillna(0.0)
    return pd.DataFrame({"kind": "sku", "quarter": f["quarter"], "sku": f["sku"], "workload": None, "role": None,
                         "gpus_a": gpus_a, "gpus_b": gpus_b, "gpus_delta": gpus_b - gpus_a,
                         "cost_usd_per_hour_a": cost_a, "cost_usd_per_hour_b": cost_b,
                         "cost_delta_usd_per_hour": cost_b - cost_a, "allocation_a": None, "allocation_b": None,
                         "reasons": None})


def workload_rows(a: PlanDir, b: PlanDir) -> pd.DataFrame:
    keys = ["quarter", "workload", "role"]
    p = _shaped(a.plan).merge(_shaped(b.plan), on=keys, how="outer", suffixes=("_a", "_b"), sort=False)
    p["allocation_a"], p["allocation_b"] = _alloc(p, "a"), _alloc(p, "b")
    p = p[p["allocation_a"] != p["allocation_b"]].copy()
    why = {
        "demand": ~(_same(p["demand_rps_a"], p["demand_rps_b"]) & _same(p["input_tokens_a"], p["input_tokens_b"])
                    & _same(p["output_tokens_a"], p["output_tokens_b"])),
        "slo": ~(_same(p["slo_ttft_s_a"], p["slo_ttft_s_b"]) & _same(p["slo_tpot_ms_a"], p["slo_tpot_ms_b"])
                 & _same(p["ttft_statistic_a"], p["ttft_statistic_b"])),
    }
    changes = _sku_changes(a, b)
    for reason, col in (("price", "price"), ("inventory", "limits")):
        hit = pd.Series(False, index=p.index)
        for side in ("a", "b"):
            m = p[["quarter", f"sku_{side}"]].merge(changes, left_on=["quarter", f"sku_{side}"],
                                                    right_on=["quarter", "sku"], how="left")
            hit |= m[col].fillna(False).astype(bool).to_numpy()
        why[reason] = hit
    budgets = [m.get("resolved_spec", {}).get("planning", {}).get("budget_usd_per_hour") for m in (a.manifest, b.manifest)]
    why["budget"] = pd.Series(budgets[0] != budgets[1], index=p.index)
    elsewhere = {"price": set(changes.loc[changes["price"], "quarter"]),
                 "inventory": set(changes.loc[changes["limits"], "quarter"])}
    reasons = []
    for i, q in zip(p.index, p["quarter"]):
        found = [r for r in REASONS if bool(why[r][i])]
        if not found:
            found = [f"{r} (another sku)" for r in ("price", "inventory") if q in elsewhere[r]] or ["other"]
        reasons.append(", ".join(found))
    gpus_a, gpus_b = p["gpus_a"].fillna(0).astype(int), p["gpus_b"].fillna(0).astype(int)
    cost_a, cost_b = p["cost_usd_per_hour_a"].fillna(0.0), p["cost_usd_per_hour_b"].fillna(0.0)
    return pd.DataFrame({"kind": "workload", "quarter": p["quarter"], "sku": p["sku_b"].astype(object)
                         .where(p["sku_b"].notna(), p["sku_a"].astype(object)),
                         "workload": p["workload"], "role": p["role"], "gpus_a": gpus_a, "gpus_b": gpus_b,
                         "gpus_delta": gpus_b - gpus_a, "cost_usd_per_hour_a": cost_a, "cost_usd_per_hour_b": cost_b,
                         "cost_delta_usd_per_hour": cost_b - cost_a, "allocation_a": p["allocation_a"],
                         "allocation_b": p["allocation_b"], "reasons": reasons})


def diff(a: PlanDir, b: PlanDir) -> pd.DataFrame:
    """The sku rows, then the changed workload rows (schema: pdfleet/output/schema.py DIFF)."""
    frame = pd.concat([sku_rows(a, b), workload_rows(a, b)], ignore_index=True)
    return frame.astype({c: "string" for c in ("kind", "quarter", "sku", "workload", "role", "allocation_a",
                                               "allocation_b", "reasons")})


def print_tables(frame: pd.DataFrame, console) -> None:
    from rich.markup import escape
    from rich.table import Table

    skus = frame[(frame["kind"] == "sku") & ((frame["gpus_delta"] != 0) | (frame["cost_delta_usd_per_hour"].abs() > 1e-9))]
    t = Table(title="GPUs and cost per sku and quarter (changed rows)")
    for c in ("quarter", "sku", "GPUs A", "GPUs B", "Δ GPUs", "$/hour A", "$/hour B", "Δ $/hour"):
        t.add_column(c, justify="left" if c in ("quarter", "sku") else "right")
    for r in skus.itertuples():
        t.add_row(escape(r.quarter), escape(r.sku), f"{r.gpus_a}", f"{r.gpus_b}", f"{r.gpus_delta:+d}",
                  f"{r.cost_usd_per_hour_a:,.2f}", f"{r.cost_usd_per_hour_b:,.2f}", f"{r.cost_delta_usd_per_hour:+,.2f}")
    console.print(t)
    all_skus = frame[frame["kind"] == "sku"]
    for q, rows in all_skus.groupby("quarter", sort=False):
        console.print(escape(f"{q}: {rows['gpus_a'].sum()} -> {rows['gpus_b'].sum()} GPUs, "
                             f"${rows['cost_usd_per_hour_a'].sum():,.2f} -> ${rows['cost_usd_per_hour_b'].sum():,.2f}/hour "
                             f"({rows['cost_delta_usd_per_hour'].sum():+,.2f})"))
    work = frame[frame["kind"] == "workload"]
    t = Table(title=f"Workloads whose allocation changed ({len(work)} rows)")
    for c in ("quarter", "workload", "role", "A", "B", "Δ $/hour", "why"):
        t.add_column(c, justify="right" if c == "Δ $/hour" else "left")
    for r in work.itertuples():
        t.add_row(escape(r.quarter), escape(r.workload), r.role, escape(r.allocation_a), escape(r.allocation_b),
                  f"{r.cost_delta_usd_per_hour:+,.2f}", escape(r.reasons))
    console.print(t)
