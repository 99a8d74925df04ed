"""Scenarios: named what-ifs of one fleet (`optimize --scenarios FILE`, `--demand-scale X`).

A scenarios file is YAML, one entry per scenario:

    base: {}
    demand+30%: {demand_scale: 1.3}
    cheap-b200: {prices: {B200: 3.0}}              # rent USD per GPU-hour
    tight-h100: {inventory: {H100-SXM: 64}}        # one number or {quarter: number}

Each scenario is the fleet with its overrides applied and validated again by the same rules (so a
scenario that names an unknown sku is a one-line error naming the scenario). Overrides change demand,
prices and inventory only, none of which moves a candidate's per-instance capacity: the roofline
predictions and the vectorized capacity pass run once for all scenarios (optimize.prepare's `shared`).
Each scenario then gets its own fleet problem; those whose limits bind are stacked side by side into one
block-diagonal problem and searched in one solver run (search/stack.py), each keeping its own plan and
certified bound. Every output row carries its `scenario`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, ValidationError

from pdfleet import spec as S

Scale = Annotated[float, Field(gt=0, le=1000, allow_inf_nan=False)]
Name = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.+%\-]+$")]


class Scenario(S.Strict):
    demand_scale: Scale = 1.0  # every workload's rate_rps or tokens_per_minute x this
    prices: dict[str, S.Price] = Field(default_factory=dict)  # sku -> price_usd_per_gpu_hour
    inventory: dict[str, S.PerQuarter] = Field(default_factory=dict)  # sku -> inventory


def load(path: str | Path) -> dict[str, Scenario]:
    p = Path(path)
    return load_dict(S.parse_yaml(S.read_text(p, "--scenarios"), p.name), p.name)


def load_dict(data, source: str = "scenarios") -> dict[str, Scenario]:
    """Validated scenarios from parsed YAML; errors name `source` (the file) and the scenario."""
    if not isinstance(data, dict) or not data:
        raise S.SpecError(source, "must be a mapping of scenario name -> {demand_scale, prices, inventory}")
    out = {}
    for name, fields in data.items():
        if not isinstance(name, str) or not _name_ok(name):
            raise S.SpecError(f"{source}: {name}", "a scenario name is letters, digits and _ . + % - (a folder name)")
        try:
            out[name] = Scenario.model_validate(fields or {})
        except ValidationError as exc:
            err = exc.errors()[0]
            raise S.SpecError(f"{source}: {name}.{S._path(err['loc'])}".rstrip("."), S._hint(err)) from None
    return out


def _name_ok(name: str) -> bool:
    import re

    return re.fullmatch(r"[A-Za-z0-9_.+%\-]{1,64}", name) is not None


def demand_scale_scenario(scale: float) -> dict[str, Scenario]:
    return {f"demand_x{scale:g}": Scenario(demand_scale=scale)}


def _scaled(value, k: float):
    if value is None:
        return None
    if isinstance(value, dict):
        return {q: v * k for q, v in value.items()}
    return value * k


def apply(fleet: S.Fleet, name: str, sc: Scenario) -> S.Fleet:
    """The fleet under one scenario, validated again (SpecError paths name the scenario)."""
    for kind, table in (("prices", sc.prices), ("inventory", sc.inventory)):
        unknown = [s for s in table if s not in fleet.skus]
        if unknown:
            raise S.SpecError(f"scenario {name}.{kind}.{unknown[0]}",
                              f"not a sku of this fleet ({', '.join(sorted(fleet.skus))})")
    skus = {s: (sku.model_copy(update={
        **({"price_usd_per_gpu_hour": sc.prices[s]} if s in sc.prices else {}),
        **({"inventory": sc.inventory[s]} if s in sc.inventory else {})}) if s in sc.prices or s in sc.inventory
        else sku) for s, sku in fleet.skus.items()}
    workloads = fleet.workloads
    if sc.demand_scale != 1.0:
        workloads = {n: w.model_copy(update={"rate_rps": _scaled(w.rate_rps, sc.demand_scale),
                                             "tokens_per_minute": _scaled(w.tokens_per_minute, sc.demand_scale)})
                     for n, w in fleet.workloads.items()}
    out = fleet.model_copy(update={"skus": skus, "workloads": workloads})
    try:
        for s in list(sc.prices) + list(sc.inventory):
            S.Sku.model_validate(out.skus[s].model_dump())
        S._check_references(out)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise S.SpecError(f"scenario {name}", f"{S._path(err['loc'])}: {S._hint(err)}") from None
    except S.SpecError as exc:
        raise S.SpecError(f"scenario {name}: {exc.path}", exc.message) from None
    return out


# Manifest keys that differ per scenario: under manifest["scenarios"][name], not at the top level.
PER_SCENARIO = ("solver", "solver_requested", "cost_usd", "cost_usd_per_hour", "lower_bound_usd",
                "lower_bound_usd_per_hour", "gap", "unserved_penalty_usd", "switch_usd", "solver_costs_usd",
                "solver_notes", "shared_limits_enforced", "breaks_limits", "binding_limits", "total_cost_usd_per_hour",
                "status_counts", "status_counts_by_role", "rows", "over_inventory", "timings_s", "precision",
                "roofline_profiles", "roofline_skipped", "roofline_moved_skus", "resolved_spec")


def run_all(fleet: S.Fleet, scenarios: dict[str, Scenario], rounding: str | None = None, source=None, progress=None,
            precision: str = "auto", solver: str = "auto", search_progress=None):
    """Plan every scenario (the arguments of optimize.run). Returns (plan, fleet, manifest, serves_everything,
    {name: Result}); each table starts with a `scenario` column.

    One capacity pass for all (optimize.prepare's `shared`), then one search (search/stack.py): scenarios
    whose exact plan meets no limit keep it; the others are stacked into one block-diagonal problem and
    searched in one solver run, each with its own plan and certified bound."""
    import jax
    import pandas as pd

    from pdfleet import optimize
    from pdfleet.search import stack

    rounding = rounding or fleet.planning.rounding
    fleets = {name: apply(fleet, name, sc) for name, sc in scenarios.items()}
    prepared, shared = {}, None
    for name, f in fleets.items():
        prepared[name] = optimize.prepare(f, rounding, precision, progress, shared)
        shared = shared or prepared[name]
    with jax.enable_x64(True):
        searched = stack.solve_scenarios({n: p.fleet_problem for n, p in prepared.items()}, solver,
                                         seed=fleet.planning.seed, progress=search_progress)
    results = {name: optimize.finish(fleets[name], prepared[name], outcome, seconds, rounding, source, solver)
               for name, (outcome, seconds) in searched.items()}
    plans = [r.plan.assign(scenario=name) for name, r in results.items()]
    fleets = [r.fleet.assign(scenario=name) for name, r in results.items()]
    first = next(iter(results.values())).manifest
    manifest = {k: v for k, v in first.items() if k not in PER_SCENARIO}
    manifest["scenarios"] = {name: {"overrides": sc.model_dump(exclude_defaults=True),
                                    **{k: results[name].manifest.get(k) for k in PER_SCENARIO}}
                             for name, sc in scenarios.items()}
    plan = pd.concat(plans, ignore_index=True)
    fleet_df = pd.concat(fleets, ignore_index=True)
    plan = plan[["scenario", *[c for c in plan.columns if c != "scenario"]]]
    fleet_df = fleet_df[["scenario", *[c for c in fleet_df.columns if c != "scenario"]]]
    return plan, fleet_df, manifest, all(r.serves_everything for r in results.values()), results


def summary(results: dict, console) -> None:
    """One line per scenario: average and per-quarter cost per hour, GPUs, rows not served, gap."""
    from rich.markup import escape
    from rich.table import Table

    t = Table(title="pdfleet scenarios")
    quarters = list(next(iter(results.values())).manifest["total_cost_usd_per_hour"])
    for c in ("scenario", "$/hour (avg)", *[f"{q} $/hour" for q in quarters], "GPUs (last quarter)", "not served",
              "gap"):
        t.add_column(c, justify="left" if c == "scenario" else "right")
    for name, r in results.items():
        m = r.manifest
        last = r.fleet[r.fleet["quarter"] == quarters[-1]]["gpus"].sum()
        bad = int(((r.plan["demand_rps"] > 0) & ~r.plan["status"].isin(["ok", "over_slo"])).sum())
        gap = m.get("gap")
        t.add_row(escape(name), "-" if m["cost_usd_per_hour"] is None else f"{m['cost_usd_per_hour']:,.2f}",
                  *[f"{m['total_cost_usd_per_hour'][q]:,.2f}" for q in quarters], f"{last:,}", f"{bad}",
                  "-" if gap is None else f"{gap:.3%}")
    console.print(t)
