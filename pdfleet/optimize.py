"""`pdfleet optimize`: spec -> arrays -> capacities -> fleet problem -> solver -> predictions -> tables.
The only orchestration."""

from __future__ import annotations

import datetime
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pdfleet import __version__, arrays, io, plan, predicted
from pdfleet import spec as S
from pdfleet.perf.queueing import MG1


@dataclass
class Result:
    plan: pd.DataFrame
    fleet: pd.DataFrame
    manifest: dict
    timings: dict = field(default_factory=dict)
    serves_everything: bool = True
    prepared: object = None  # the Prepared it planned from (scenarios share its capacities)


# Fleets up to this many (row x candidate x quarter) cells get their capacities in float64: exact
# dollars and counts at a cost nobody notices; larger ones in float32, the speed path (counts then carry
# float32's ~1e-7 relative rounding, which only matters within a hair of a whole instance). The fleet
# search itself always runs in float64 (dollars summed over a fleet need it).
FLOAT64_CELLS = 1 << 22


def capacities(problem, chunk: int, progress=None):
    """evaluate.evaluate over the padded rows, `chunk` rows at a time (one compiled shape)."""
    import jax

    from pdfleet import evaluate as E
    from pdfleet.search.exact import _slice_rows

    fn = jax.jit(E.evaluate, static_argnames="mg1")
    mg1 = bool((np.asarray(problem.workloads.queue) == MG1).any())
    n = problem.workloads.input_tokens.shape[0]
    parts = []
    for lo in range(0, n, chunk):
        sub = _slice_rows(problem, lo, min(lo + chunk, n)) if n > chunk else problem
        args = shard_rows(sub.workloads, sub.profiles, sub.block_candidates)
        parts.append(jax.device_get(fn(*args, mg1=mg1)))
        if progress:
            progress(min(lo + chunk, n), n)
    return jax.tree_util.tree_map(lambda *xs: np.concatenate(xs, axis=0), *parts)


def shard_rows(workloads, profiles, block_candidates):
    """Place a chunk's workload rows across every local JAX device (jax.sharding, one mesh axis 'rows'):
    workload leaves split along their row axis, block_candidates along its block axis (blocks stay whole
    on one device), profiles replicated. jit then runs the vmapped kernel on every device at once. One
    device, or blocks that do not divide evenly, leave the arrays where they are."""
    import jax
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

    devices = jax.local_devices()
    if len(devices) < 2 or block_candidates.shape[0] % len(devices):
        return workloads, profiles, block_candidates
    mesh = Mesh(np.array(devices), ("rows",))
    rows, replicated = NamedSharding(mesh, P("rows")), NamedSharding(mesh, P())
    per_quarter = NamedSharding(mesh, P(None, "rows"))
    w = workloads._replace(**{k: jax.device_put(v, per_quarter if k == "demand_rps" else rows)
                              for k, v in workloads._asdict().items()})
    return w, jax.device_put(profiles, replicated), jax.device_put(block_candidates, rows)


@dataclass
class Prepared:
    """Everything before the search: the fleet with roofline profiles, padded arrays, capacities and the
    fleet problem (search/problem.py)."""

    fleet: S.Fleet
    problem: object  # arrays.Problem, in the capacity precision
    rows: list
    fleet_problem: object  # search.problem.FleetProblem
    roofline: object  # predicted.Prediction
    use64: bool
    timings: dict
    capacity: object = None  # evaluate.Capacity of every (row, candidate), host arrays


def prepare(fleet: S.Fleet, rounding: str | None = None, precision: str = "auto", progress=None,
            shared: Prepared | None = None) -> Prepared:
    """Roofline profiles, arrays, capacities and the fleet problem of a validated fleet.

    shared: the Prepared of the same fleet under other demand, prices or inventory (a scenario,
    scenarios.py). Roofline predictions and capacities depend on none of those (a candidate's capacity is
    per instance, at the SLO), so they are reused and only the arrays and the fleet problem are rebuilt:
    every scenario of a run shares one vectorized capacity pass."""
    import jax

    from pdfleet.search import problem as fleet_problem

    t0 = time.perf_counter()
    rounding = rounding or fleet.planning.rounding
    prediction = shared.roofline if shared else predicted.predict(fleet)
    fleet = fleet.model_copy(update={"profiles": [*fleet.profiles, *prediction.profiles]})
    t_pred = time.perf_counter()
    problem, rows = arrays.build(fleet)
    cells = problem.workloads.input_tokens.shape[0] * problem.block_candidates.shape[1] * len(fleet.planning.quarters)
    use64 = precision == "float64" or (precision == "auto" and cells <= FLOAT64_CELLS)
    if shared:
        _check_same_candidates(shared, problem, rows)
        use64 = shared.use64
    t1 = time.perf_counter()
    with jax.enable_x64(use64):
        problem = arrays.as_float64(problem) if use64 else problem
        cap = shared.capacity if shared else capacities(problem, arrays.CHUNK, progress)
    t2 = time.perf_counter()
    with jax.enable_x64(True):
        fp = fleet_problem.build(fleet, arrays.as_float64(problem), rows, cap, nearest=rounding == "nearest")
    t3 = time.perf_counter()
    timings = {"roofline_s": t_pred - t0, "build_s": t1 - t_pred, "capacity_s": t2 - t1, "problem_s": t3 - t2}
    return Prepared(fleet, problem, rows, fp, prediction, use64, timings, cap)


def _check_same_candidates(shared: Prepared, problem, rows) -> None:
    """A scenario reuses capacities only over the same rows and candidates (it changes no workload's
    lengths or SLO, no profile and no sku's hardware)."""
    same = (rows == shared.rows and np.array_equal(np.asarray(problem.block_candidates),
                                                   np.asarray(shared.problem.block_candidates)))
    if not same:
        raise ValueError("scenario changes the candidates: its capacities cannot be shared")


def run(fleet: S.Fleet, rounding: str | None = None, source: str | Path | None = None, progress=None,
        precision: str = "auto", solver: str = "auto", search_progress=None) -> Result:
    """Plan a validated fleet. rounding overrides planning.rounding when given; precision is
    'auto' (float64 unless the fleet is huge), 'float64' or 'float32'; solver one of search.solve.SOLVERS.
    Scenarios (scenarios.run_all) call prepare, their search and finish themselves."""
    import jax

    from pdfleet.search import solve

    rounding = rounding or fleet.planning.rounding
    prep = prepare(fleet, rounding, precision, progress)
    t0 = time.perf_counter()
    with jax.enable_x64(True):
        outcome = solve.run(prep.fleet_problem, solver, seed=prep.fleet.planning.seed, progress=search_progress)
    return finish(fleet, prep, outcome, time.perf_counter() - t0, rounding, source, solver)


def finish(given: S.Fleet, prep: Prepared, outcome, search_s: float, rounding: str, source=None,
           solver: str = "auto") -> Result:
    """The tables and manifest of a searched plan: predictions of the chosen plan, runner-ups, binding
    limits. given: the fleet as validated (before roofline profiles); outcome: a search.solve.Outcome."""
    import jax

    from pdfleet import chosen
    from pdfleet.search import fleet as F
    from pdfleet.search import solve

    fleet, fp, use64, prediction = prep.fleet, prep.fleet_problem, prep.use64, prep.roofline
    t4 = time.perf_counter()
    with jax.enable_x64(use64):
        pred = chosen.predict_plan(prep.problem, prep.rows, fp, outcome.plan)
    with jax.enable_x64(True):  # dollars and GPU counts of the tables in float64 too
        runner = F.runner_up(fp, outcome.plan, outcome.prices)
        limits = solve.binding_limits(fp, outcome)
        plan_df = plan.plan_frame(fleet, fp, outcome.plan, pred, runner)
        fleet_df = plan.fleet_frame(fleet, fp, outcome.plan)
    t5 = time.perf_counter()
    timings = {**prep.timings, "search_s": search_s, "tables_s": t5 - t4,
               "solvers_s": {k: float(v) for k, v in outcome.seconds.items()}}
    hours = fp.economics.hours * len(fp.quarters)
    cost, bound = outcome.plan.cost_usd, outcome.lower_bound_usd
    objective = outcome.plan.objective_usd
    from pdfleet.search.lagrangian import gap

    unserved = plan_df[(plan_df["demand_rps"] > 0) & ~plan_df["status"].isin(["ok", "over_slo"])]
    from pdfleet.output import provenance
    from pdfleet.output.schema import SCHEMA_VERSION

    manifest = {
        "schema_version": SCHEMA_VERSION,
        "run_id": uuid.uuid4().hex,  # run_id and created_at live here only: data files stay byte-identical
        "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "pdfleet_version": __version__,
        "input_file": str(source) if source else None,
        "input_path": str(Path(source).resolve()) if source else None,  # pdfleet simulate reads the fleet back
        "input_sha256": io.sha256_file(source) if source else None,
        "solver": outcome.solver,
        "solver_requested": solver,
        "cost_usd": _num(cost),
        "cost_usd_per_hour": _num(cost / hours),
        "lower_bound_usd": _num(bound),
        "lower_bound_usd_per_hour": _num(bound / hours),
        "gap": _num(gap(objective, bound)),
        "unserved_penalty_usd": _num(outcome.plan.penalty_usd),
        "switch_usd": float(outcome.plan.switch_usd),
        "solver_costs_usd": {k: _num(v) for k, v in outcome.costs.items()},
        "solver_notes": outcome.notes,
        "shared_limits_enforced": outcome.solver != "exact" or not outcome.breaks_limits,
        "breaks_limits": bool(outcome.breaks_limits),
        "binding_limits": limits,
        "rounding": rounding,
        "quarters": fleet.planning.quarters,
        "hours_per_quarter": fp.economics.hours,
        "seed": fleet.planning.seed,
        "backend": jax.default_backend(),
        "precision": "float64" if use64 else "float32",
        "workloads": len(fleet.workloads),
        "profiles": len(fleet.profiles) - len(prediction.profiles),
        "roofline_profiles": len(prediction.profiles),
        "roofline_skipped": prediction.skipped,
        "roofline_moved_skus": dict(sorted(prediction.moved.items())),
        "prediction_margin": fleet.planning.prediction_margin,
        "engine": fleet.planning.engine,
        "total_cost_usd_per_hour": {q: float(fleet_df.loc[fleet_df["quarter"] == q, "cost_usd_per_hour"].sum())
                                    for q in fleet.planning.quarters},
        "status_counts": {k: int(v) for k, v in plan_df["status"].value_counts().sort_index().items()},
        "status_counts_by_role": {role: {k: int(v) for k, v in rows["status"].value_counts().sort_index().items()}
                                  for role, rows in plan_df.groupby("role", sort=False)},
        "rows": {"plan": len(plan_df), "fleet": len(fleet_df)},
        "input_files": provenance.input_files(source, given),
        "resolved_spec": provenance.resolved_spec(given),
        "versions": provenance.versions(),
        "device": provenance.device(),
        "over_inventory": fleet_df.loc[fleet_df["over_inventory"], ["quarter", "sku", "gpus", "inventory_gpus"]]
        .to_dict("records"),
        "timings_s": timings,
        "pooled_prefill": pooled_savings(fleet, plan_df),
    }
    # a pinned deployment that misses its SLO does not serve its demand either (deploy: what-if)
    short = plan_df["deployed"] & (plan_df["status"] == "over_slo")
    serves = unserved.empty and not outcome.breaks_limits and not short.any()
    return Result(plan_df, fleet_df, manifest, timings, serves, prep)


def pooled_savings(fleet: S.Fleet, plan_df: pd.DataFrame) -> dict | None:
    """What the pooled M/M/c prefill (queue: mmc) saves against the per-instance M/M/1 split on the same
    candidates: per row the split needs demand x (1 + headroom) / capacity_rps instances (capacity_rps
    of an mmc row is the split's per-instance rate), rounded as planned (sizing.round_instances), at least
    min_instances. None when no row pools."""
    from pdfleet import spec

    pooled = [n for n, w in fleet.workloads.items() if spec.queue_model(fleet, w) == "mmc"]
    rows = plan_df[(plan_df["role"] == "prefill") & plan_df["workload"].isin(pooled) & (plan_df["instances"] > 0)
                   & (plan_df["demand_rps"] > 0) & ~plan_df["deployed"]]
    if rows.empty:
        return None
    from pdfleet.perf import sizing

    need = (rows["demand_rps"] * (1 + fleet.planning.headroom) / rows["capacity_rps"]).to_numpy()
    whole = np.asarray(sizing.round_instances(need, nearest=fleet.planning.rounding == "nearest"))
    split = np.maximum(whole, fleet.planning.min_instances_for("prefill"))
    saved = split - rows["instances"].to_numpy()
    return {"rows": int(len(rows)), "prefill_instances": int(rows["instances"].sum()),
            "split_instances": int(split.sum()), "instances_saved": int(saved.sum()),
            "gpus_saved": int((saved * rows["gpus_per_instance"].to_numpy()).sum())}


def _num(x: float):
    """JSON has no inf: None stands for 'no plan'."""
    return float(x) if np.isfinite(x) else None
