"""The terminal summary of a plan (rich)."""

from __future__ import annotations

import math

import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pdfleet.plan import STATUS_TEXT


def _alloc(row) -> str:
    if row is None or row["sku"] is None or pd.isna(row["sku"]):
        return "-"
    return escape(f"{row['instances']} x {row['sku']}/{row['gpus_per_instance']}")


def _num(x, fmt: str) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def summary(plan: pd.DataFrame, fleet: pd.DataFrame, console: Console) -> None:
    table = Table(title="pdfleet plan", show_lines=False)
    for col in ("quarter", "workload", "prefill", "decode", "P/D", "TTFT s (SLO)", "TPOT ms (SLO)", "$/hour",
                "status"):
        table.add_column(col, justify="right" if col in ("P/D", "$/hour") else "left")
    for (quarter, workload), rows in plan.groupby(["quarter", "workload"], sort=False):
        pre = rows[rows["role"] == "prefill"].iloc[0]
        dec = rows[rows["role"] == "decode"].iloc[0]
        status = pre["status"] if pre["status"] != "ok" else dec["status"]
        style = "" if status in ("ok", "no_demand") else "bold red"
        table.add_row(
            escape(quarter), escape(workload), _alloc(pre), _alloc(dec), _num(pre["pd_ratio"], ".2f"),
            f"{_num(pre['predicted_ttft_s'], '.2f')} ({pre['slo_ttft_s']:g})",
            f"{_num(dec['predicted_tpot_ms'], '.1f')} ({dec['slo_tpot_ms']:g})",
            f"{rows['cost_usd_per_hour'].sum():,.2f}", f"[{style}]{status}[/]" if style else status,
        )
    console.print(table)
    for quarter, rows in fleet.groupby("quarter", sort=False):
        used = rows[rows["gpus"] > 0]
        parts = ", ".join(f"{r.sku} {r.gpus}" for r in used.itertuples())
        console.print(escape(f"{quarter}: {rows['gpus'].sum()} GPUs ({parts or 'none'}), "
                             f"${rows['cost_usd_per_hour'].sum():,.2f}/hour"))


def warnings(plan: pd.DataFrame, fleet: pd.DataFrame, console: Console, roofline_skipped=()) -> int:
    """Print what a planner must not miss (to stderr in the CLI, even with -q); returns how many.
    roofline_skipped: why the roofline could not predict a (model, sku), shown for models left unserved."""
    count = 0
    for r in fleet[fleet["over_inventory"]].itertuples():
        count += 1
        console.print("[bold red]WARNING[/] " + escape(
            f"{r.quarter}: plan needs {r.gpus} {r.sku} GPUs but inventory is {r.inventory_gpus:g} "
            f"(short {r.gpus_short:g}); shared limits are not enforced yet"))
    bad = plan[~plan["status"].isin(["ok", "no_demand"])]
    for r in bad.drop_duplicates(["workload", "role", "status"]).itertuples():
        count += 1
        quarters = ", ".join(bad.loc[(bad["workload"] == r.workload) & (bad["role"] == r.role)
                                     & (bad["status"] == r.status), "quarter"])
        console.print("[bold red]WARNING[/] " + escape(
            f"{r.workload} {r.role} ({quarters}): {r.status}: {STATUS_TEXT[r.status]}"))
        if r.status == "no_profile":
            for why in (s for s in roofline_skipped if s.startswith(f"{r.model} on ")):
                console.print(escape(f"  roofline could not predict {why}"))
    extra = plan[plan["prefill_extrapolated"]]
    for r in extra.drop_duplicates(["workload"]).itertuples():
        console.print("[yellow]note[/] " + escape(
            f"{r.workload}: input length {r.input_tokens} lies outside the measured prefill table of the "
            "chosen profile; its nearest measured throughput was used"))
    return count
