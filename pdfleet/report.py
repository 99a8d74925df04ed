"""The terminal summary of a plan, its warnings and the search progress bar (rich)."""

from __future__ import annotations

import contextlib
import math
import time

import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pdfleet.plan import STATUS_TEXT, shape_label


def _alloc(row) -> str:
    if row is None or row["sku"] is None or pd.isna(row["sku"]):
        return "-"
    # a plan written before dp/ep (schema < 3) is tensor-parallel
    return escape(f"{row['instances']} x {shape_label(row['sku'], row['gpus_per_instance'], row.get('dp', 1), row.get('ep', 1))}")


def _parallel(row, key: str) -> int | None:
    """dp or ep of a plan row for JSON: None where no instance is planned, 1 for a plan written before
    dp/ep (schema < 3: tensor-parallel only)."""
    if row["sku"] is None or pd.isna(row["sku"]):
        return None
    return int(row.get(key, 1))


def _num(x, fmt: str) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def _value(x):
    """A cell for JSON: NaN and pandas NA become None, numpy scalars Python numbers."""
    if x is None or (not isinstance(x, str) and pd.isna(x)):
        return None
    return x.item() if hasattr(x, "item") else x


def pd_instances(pre, dec) -> str:
    """Planned instances as the paper writes them, e.g. 3P/4D ('-' when neither role is planned)."""
    if not (pre["instances"] or dec["instances"]):
        return "-"
    return f"{pre['instances']}P/{dec['instances']}D"


def _rows(plan: pd.DataFrame):
    """(quarter, workload, prefill row, decode row, status) per planned pair, in plan order."""
    for (quarter, workload), rows in plan.groupby(["quarter", "workload"], sort=False):
        pre = rows[rows["role"] == "prefill"].iloc[0]
        dec = rows[rows["role"] == "decode"].iloc[0]
        status = pre["status"] if pre["status"] != "ok" else dec["status"]
        yield quarter, workload, pre, dec, rows["cost_usd_per_hour"].sum(), status


def quarter_costs(fleet: pd.DataFrame, hours_per_quarter: float) -> list[dict]:
    """Per quarter: GPUs and cost per hour, per quarter (x hours_per_quarter) and per year (x 4 quarters:
    the quarter's rate held for a year)."""
    out = []
    for quarter, rows in fleet.groupby("quarter", sort=False):
        hourly = float(rows["cost_usd_per_hour"].sum())
        out.append({"quarter": quarter, "gpus": int(rows["gpus"].sum()), "cost_usd_per_hour": hourly,
                    "cost_usd_per_quarter": hourly * hours_per_quarter,
                    "cost_usd_per_year": hourly * hours_per_quarter * 4,
                    "skus": [{"sku": r.sku, "gpus": int(r.gpus), "owned": int(r.owned), "purchased": int(r.purchased),
                              "rented": int(r.rented), "cost_usd_per_hour": float(r.cost_usd_per_hour)}
                             for r in rows[rows["gpus"] > 0].itertuples()]})
    return out


def summary_dict(plan: pd.DataFrame, fleet: pd.DataFrame, manifest: dict) -> dict:
    """What the terminal summary shows, as plain data (`optimize --json`)."""
    rows = []
    for quarter, workload, pre, dec, cost, status in _rows(plan):
        rows.append({
            "quarter": quarter, "workload": workload,
            **{f"{role}_{k}": _value(r[k]) for role, r in (("prefill", pre), ("decode", dec))
               for k in ("sku", "gpus_per_instance", "instances")},
            **{f"{role}_{k}": _parallel(r, k) for role, r in (("prefill", pre), ("decode", dec)) for k in ("dp", "ep")},
            "pd_instances": pd_instances(pre, dec),
            "ttft_statistic": pre["ttft_statistic"], "predicted_ttft_s": _value(pre["predicted_ttft_s"]),
            "slo_ttft_s": float(pre["slo_ttft_s"]), "predicted_tpot_ms": _value(dec["predicted_tpot_ms"]),
            "slo_tpot_ms": float(dec["slo_tpot_ms"]), "cost_usd_per_hour": float(cost), "status": status,
        })
    keys = ("solver", "cost_usd", "cost_usd_per_hour", "lower_bound_usd_per_hour", "gap", "switch_usd",
            "schema_version", "run_id")
    return {**{k: manifest.get(k) for k in keys}, "hours_per_quarter": manifest.get("hours_per_quarter"),
            "quarters": quarter_costs(fleet, float(manifest.get("hours_per_quarter") or 2190.0)), "rows": rows}


def summary(plan: pd.DataFrame, fleet: pd.DataFrame, console: Console, manifest: dict | None = None) -> None:
    table = Table(title="pdfleet plan", show_lines=False)
    for col in ("quarter", "workload", "prefill", "decode", "P/D", "TTFT s (SLO)", "TPOT ms (SLO)", "$/hour",
                "status"):
        table.add_column(col, justify="right" if col in ("P/D", "$/hour") else "left")
    for quarter, workload, pre, dec, cost, status in _rows(plan):
        style = "" if status in ("ok", "no_demand") else "bold red"
        table.add_row(
            escape(quarter), escape(workload), _alloc(pre), _alloc(dec), pd_instances(pre, dec),
            escape(f"{pre['ttft_statistic']} {_num(pre['predicted_ttft_s'], '.2f')} ({pre['slo_ttft_s']:g})"),
            f"{_num(dec['predicted_tpot_ms'], '.1f')} ({dec['slo_tpot_ms']:g})",
            f"{cost:,.2f}", f"[{style}]{status}[/]" if style else status,
        )
    console.print(table)
    hours = float((manifest or {}).get("hours_per_quarter") or 2190.0)
    for q, rows in zip(quarter_costs(fleet, hours), (r for _, r in fleet.groupby("quarter", sort=False))):
        used = rows[rows["gpus"] > 0]
        parts = ", ".join(_sku_line(r) for r in used.itertuples())
        console.print(escape(f"{q['quarter']}: {q['gpus']} GPUs ({parts or 'none'}), "
                             f"${q['cost_usd_per_hour']:,.2f}/hour, ${q['cost_usd_per_quarter']:,.0f}/quarter, "
                             f"${q['cost_usd_per_year']:,.0f}/year at this rate"))
    if manifest:
        console.print(escape(_cost_line(manifest)))
    line = _margin_line(plan, manifest or {})
    if line:
        console.print(escape(line))


def _margin_line(plan: pd.DataFrame, manifest: dict) -> str:
    """One line when roofline predictions serve part of the plan: which margin they were planned with."""
    if "prediction_error" not in plan or not (plan["source"] == "roofline").any():
        return ""
    roof = plan[(plan["source"] == "roofline") & (plan["instances"] > 0)]
    if roof.empty:
        return ""
    margin = manifest.get("prediction_margin", 0.0)
    if margin == "auto":
        how = ("planned slower than predicted by each calibration entry's cross-validated error "
               "(90th percentile of measured/predicted - 1; for expert-parallel rows at least the error "
               "measured on expert-parallel runs; for a sku without a fit of its own at least the error of moving a "
               "fit to such a sku)")
    elif float(margin) > 0:
        how = f"planned {float(margin):.0%} slower than predicted"
    else:
        how = "planned at the predictions, no margin (planning.prediction_margin: 0)"
    err = roof["prediction_error"].max()
    moved = manifest.get("roofline_moved_skus") or {}
    skus = set(roof["sku"].astype(str)) if "sku" in roof else set()
    used = [f"{s} ({moved[s]})" for s in sorted(skus & set(moved))]
    return (f"{len(roof)} plan rows rest on roofline predictions (engine {manifest.get('engine', 'any')}): {how}; "
            f"prediction_error up to {'unknown' if err != err else format(err, '.0%')}; "
            "measured profiles carry no margin"
            + (f"; skus without a fit of their own (never measured), served by a fit moved from another sku or the "
               f"pool (prediction_error at least the calibration's transfer_error): {', '.join(used)}" if used else ""))


def _sku_line(r) -> str:
    how = [f"{n} {k}" for n, k in ((r.owned, "owned"), (r.purchased, "bought"), (r.rented, "rented")) if n]
    return f"{r.sku} {r.gpus}" + (f" [{', '.join(how)}]" if how and (r.owned or r.purchased) else "")


def _cost_line(m: dict) -> str:
    def money(x):
        return "-" if x is None else f"${x:,.2f}"

    gap = m.get("gap")
    line = (f"solver {m['solver']}: cost {money(m.get('cost_usd_per_hour'))}/hour on average over the horizon "
            f"({money(m.get('cost_usd'))} in all, switches {money(m.get('switch_usd'))}); "
            f"lower bound {money(m.get('lower_bound_usd_per_hour'))}/hour; "
            f"gap {'-' if gap is None else format(gap, '.3%')}")
    if m.get("unserved_penalty_usd"):
        line += " (bound and gap include the penalty of unserved demand)"
    return line


def warnings(plan: pd.DataFrame, fleet: pd.DataFrame, console: Console, manifest: dict | None = None) -> int:
    """Print what a planner must not miss (to stderr in the CLI, even with -q); returns how many.
    manifest: the run's manifest (binding limits, roofline_skipped: why the roofline could not predict a
    (model, sku), shown for models left unserved)."""
    manifest = manifest or {}
    roofline_skipped = manifest.get("roofline_skipped", ())
    count = 0
    if manifest.get("breaks_limits"):
        for r in fleet[fleet["over_inventory"]].itertuples():
            count += 1
            console.print("[bold red]WARNING[/] " + escape(
                f"{r.quarter}: plan needs {r.gpus} {r.sku} GPUs but inventory is {r.inventory_gpus:g} "
                f"(short {r.gpus_short:g}); --solver exact ignores shared limits: use --solver auto"))
    for lim in manifest.get("binding_limits", ()):
        if lim["limit"] == "budget":
            console.print("[yellow]limit[/] " + escape(
                f"{lim['quarter']}: budget ${lim['budget_usd_per_hour']:,.2f}/hour binds; one more $1/hour of "
                f"budget would save ${lim['one_more_usd_per_hour_saves_usd']:,.2f} over the horizon"))
        elif lim["one_more_gpu_saves_usd_per_hour"] > 0:
            console.print("[yellow]limit[/] " + escape(
                f"{lim['quarter']}: {lim['sku']} {lim['limit']} binds at {lim['cap_gpus']:g} GPUs; one more "
                f"would save ${lim['one_more_gpu_saves_usd_per_hour']:,.2f}/hour"))
    bad = plan[~plan["status"].isin(["ok", "no_demand"])]
    for r in bad.drop_duplicates(["workload", "role", "status"]).itertuples():
        count += 1
        quarters = ", ".join(bad.loc[(bad["workload"] == r.workload) & (bad["role"] == r.role)
                                     & (bad["status"] == r.status), "quarter"])
        console.print("[bold red]WARNING[/] " + escape(
            f"{r.workload} {r.role} ({quarters}): {r.status}: {STATUS_TEXT[r.status]}"))
        if r.status in ("inventory", "budget"):
            for lim in manifest.get("binding_limits", ()):
                if lim["quarter"] in quarters.split(", ") and (lim["limit"] == "budget") == (r.status == "budget"):
                    if lim["limit"] != "budget" and r.workload not in lim.get("starves", ()):
                        continue
                    what = (f"budget ${lim['budget_usd_per_hour']:,.2f}/hour" if lim["limit"] == "budget" else
                            f"{lim['sku']} {lim['limit']} {lim['cap_gpus']:g} GPUs ({lim['used_gpus']:g} used)")
                    console.print(escape(f"  binding in {lim['quarter']}: {what}"))
        if r.status == "no_profile":
            for why in (s for s in roofline_skipped if s.startswith(f"{r.model} on ")):
                console.print(escape(f"  roofline could not predict {why}"))
    extra = plan[plan["prefill_extrapolated"]]
    for r in extra.drop_duplicates(["workload"]).itertuples():
        console.print("[yellow]note[/] " + escape(
            f"{r.workload}: input length {r.input_tokens} lies outside the measured prefill table of the "
            "chosen profile; its nearest measured throughput was used"))
    return count


@contextlib.contextmanager
def search_progress(console: Console, enabled: bool = True, after_s: float = 1.0):
    """A callback progress(solver, step, steps, gap) that shows a rich progress bar on `console` once a
    search has run for `after_s` seconds (short searches print nothing)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    start = time.perf_counter()
    bar = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                   TimeElapsedColumn(), console=console, transient=True)
    tasks: dict[str, int] = {}

    def update(solver: str, step: int, steps: int, gap: float) -> None:
        if not enabled or time.perf_counter() - start < after_s:
            return
        if not tasks:
            bar.start()
        if solver not in tasks:
            tasks[solver] = bar.add_task(solver, total=steps)
        text = f"{solver} gap {gap:.3%}" if math.isfinite(gap) else f"{solver} (no plan yet)"
        bar.update(tasks[solver], completed=step, total=steps, description=text)

    try:
        yield update
    finally:
        if tasks:
            bar.stop()
