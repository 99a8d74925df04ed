"""Command line: `pdfleet optimize | report | diff | validate | schema | estimate | calibrate | profile import`.

Heavy imports (JAX, pandas) happen inside verbs."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from pdfleet import __version__


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


def _load(path: str):
    from pdfleet import spec

    try:
        return spec.load(path)
    except spec.SpecError as exc:
        _fail(str(exc))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pdfleet")
def main() -> None:
    """Plan GPU fleets for prefill/decode-disaggregated LLM serving.

    Describe models, GPU skus, measured profiles and workloads in one fleet.yaml, then:

    \b
      pdfleet validate fleet.yaml        check it (fast; no JAX)
      pdfleet optimize fleet.yaml -o out  cheapest plan meeting every SLO -> parquet
      pdfleet report out                 offline HTML charts of a plan (out/report.html)
      pdfleet diff out_a out_b           what changed between two plans
      pdfleet schema > fleet.schema.json JSON Schema for editors
      pdfleet estimate --model M --sku S --tp 4 --input-tokens 2048 --output-tokens 256 --batch 32
                                         prefill time, TPOT, KV batch limit of one configuration
      pdfleet calibrate --data splitwise -o calibration.json
                                         fit roofline efficiencies to measured tables
      pdfleet profile import --vllm DIR --model M --sku S --gpus-per-instance 1
                                         benchmark results -> a profiles: entry (YAML)
      pdfleet simulate plans/x           replay Poisson arrivals (or --trace) through the plan's
                                         instances: simulated TTFT/TPOT against the SLOs

    Method: prefill as an M/M/1 queue under the TTFT SLO, decode capacity from a measured TPOT-vs-batch
    table under the TPOT SLO (Li et al., Kingsoft Cloud, arXiv 2603.04716).
    """


@main.command()
@click.argument("fleet_yaml", type=click.Path())  # a directory: one `error:` line from spec.load
def validate(fleet_yaml: str) -> None:
    """Check FLEET_YAML: types, ranges, unknown keys and references. Exit 0 if valid, 2 if not.

    An error is one line naming the YAML path, e.g.
    `workloads.chat.slo.ttft_s: Input should be greater than 0 (got -1)`.
    """
    f = _load(fleet_yaml)
    click.echo(f"ok: {len(f.workloads)} workloads, {len(f.models)} models, {len(f.skus)} skus, "
               f"{len(f.profiles)} profiles, {len(f.planning.quarters)} quarters")


@main.command()
def schema() -> None:
    """Print the JSON Schema of fleet.yaml (point your editor's YAML plugin at it)."""
    from pdfleet import spec

    click.echo(json.dumps(spec.json_schema(), indent=2))


@main.command()
@click.argument("fleet_yaml", type=click.Path())  # a directory: one `error:` line from spec.load
@click.option("-o", "--out", "out_dir", type=click.Path(), default=None,
              help="Output folder for plan.parquet, fleet.parquet, manifest.json [default: plans/<fleet name>].")
@click.option("--solver", type=click.Choice(["auto", "exact", "lagrangian", "evolution", "milp"]), default="auto",
              show_default=True,
              help="auto: exact when no shared limit binds, else lagrangian (milp cross-checks small fleets). "
                   "exact ignores shared limits; lagrangian (dual prices, optax) and evolution (CMA-ES) respect "
                   "them and certify a gap; milp is HiGHS on the whole integer program (the reference).")
@click.option("--rounding", type=click.Choice(["ceil", "nearest"]), default=None,
              help="Whole instances: ceil (SLO-safe) or nearest (the paper's 3P4D). Overrides planning.rounding.")
@click.option("--precision", type=click.Choice(["auto", "float64", "float32"]), default="auto", show_default=True,
              help="Arithmetic of the capacity kernels: auto is float64 unless the fleet is huge (then float32).")
@click.option("--partition-by", type=click.Choice(["quarter", "scenario"]), default=None,
              help="Write plan/ and fleet/ as Hive-style folders (plan/quarter=2027Q1/part-0.parquet) instead of "
                   "one file each, for dashboards that read folders.")
@click.option("--scenarios", "scenarios_file", type=click.Path(dir_okay=False), default=None,
              help="YAML of named what-ifs ({name: {demand_scale, prices: {sku: usd}, inventory: {sku: n}}}): "
                   "each is planned and every output row carries its `scenario`. Capacities are computed once; "
                   "scenarios whose limits bind are searched together in one stacked run, each with its own gap.")
@click.option("--demand-scale", default=None, metavar="X",
              help="Scale every workload's demand by X (with --scenarios: on top of each scenario's).")
@click.option("--json", "as_json", is_flag=True,
              help="Print the summary as one JSON object on stdout (per-quarter costs, a row per quarter x workload, "
                   "the written files; each row names its prefill/decode sku, gpus_per_instance, dp, ep and instances) "
                   "instead of the table; warnings still go to stderr.")
@click.option("-q", "--quiet", is_flag=True, help="No summary table and no progress (warnings still go to stderr).")
@click.option("--simulate", "then_simulate", is_flag=True,
              help="Then simulate the plan (as `pdfleet simulate OUT`: Poisson arrivals, an hour per row) and "
                   "write OUT/simulate.parquet; exit 3 if a simulated row misses its SLO.")
def optimize(fleet_yaml: str, out_dir: str | None, solver: str, rounding: str | None, precision: str,
             partition_by: str | None, scenarios_file: str | None, demand_scale: str | None, as_json: bool,
             quiet: bool, then_simulate: bool) -> None:
    """Cheapest prefill/decode allocation for every workload and quarter, under the fleet's limits.

    For each (quarter, workload) one (prefill, decode) pair of candidates is chosen (any sku and
    gpus_per_instance with a profile of the workload's model; planning.pairing restricts which skus may
    pair); the KV cache of every prompt crosses between them and its transfer time counts in the TTFT.
    Owned GPUs, inventory, buy/rent limits, amortized purchases and a budget couple the workloads; the
    solver minimizes the total cost over the horizon (plus planning.switch_cost_usd per instance that
    changes sku or TP between quarters) and reports a certified lower bound and gap.
    (sku, TP) combinations nobody measured are predicted by the calibrated roofline
    (planning.roofline: false turns that off); the plan's `source` column says which. MoE models
    also get expert-parallel shapes (ep = GPUs per instance, attention in dp groups for every dp
    dividing it; planning.expert_parallel: false turns them off); the plan's `dp` and `ep` columns
    say which shape a row uses.

    \b
    Exit codes: 0 every row served; 2 bad input (nothing written);
    3 some demand cannot be served within the limits (the best plan is still written; its rows'
    `status` say why, and manifest.json names the binding limits).

    \b
    Writes to the output folder (atomically; nothing on error):
      plan.parquet   a row per quarter x workload x role: sku, instances, GPUs, $/hour, capacity,
                     predicted TTFT/TPOT, KV transfer, the paired sku, the runner-up and its extra cost
      fleet.parquet  a row per quarter x sku: GPUs used, owned, purchased, rented, capex/opex $/hour
      manifest.json  solver, cost, lower bound, gap, binding limits with dual prices, timings
    """
    start = time.perf_counter()
    f = _load(fleet_yaml)
    scen = _scenarios(scenarios_file, demand_scale)
    if partition_by == "scenario" and scen is None:
        _fail("--partition-by scenario needs --scenarios FILE or --demand-scale X")
    if then_simulate and scen is not None:
        _fail("--simulate checks one plan: drop --scenarios/--demand-scale, or run `pdfleet simulate PLAN_DIR "
              "--demand-scale X` on the plan")
    out = Path(out_dir) if out_dir else Path("plans") / Path(fleet_yaml).stem
    _check_writable(out)
    loaded = time.perf_counter()
    from rich.console import Console

    from pdfleet import io, optimize as opt, report

    console = Console() if sys.stdout.isatty() else Console(width=150)
    errors = Console(stderr=True) if sys.stderr.isatty() else Console(stderr=True, width=150)
    progress = _progress_printer() if not quiet else None
    from pdfleet import spec

    kw = dict(rounding=rounding, source=fleet_yaml, progress=progress, precision=precision, solver=solver)
    with report.search_progress(errors, enabled=not quiet) as search_progress:
        try:
            if scen is None:
                result = opt.run(f, search_progress=search_progress, **kw)
                runs = {None: result}
                tables = (result.plan, result.fleet, result.manifest, result.serves_everything)
            else:
                from pdfleet import scenarios as SC

                *tables, runs = SC.run_all(f, scen, search_progress=search_progress, **kw)
        except spec.SpecError as exc:
            _fail(str(exc))
    plan_df, fleet_df, manifest, serves = tables
    manifest.setdefault("timings_s", {})["load_s"] = loaded - start
    manifest["timings_s"]["total_s"] = time.perf_counter() - start
    try:
        paths = io.write_outputs(out, plan_df, fleet_df, manifest, partition_by=partition_by)
    except OSError as exc:
        _fail(f"cannot write the plan to {out}: {exc.strerror or exc}")
    # stdout first and flushed, then the warnings on stderr, then the last stdout line: when both streams
    # share a terminal or a pipe, no warning lands in the middle of (or glued to) a stdout line
    if as_json:
        data = {name: report.summary_dict(r.plan, r.fleet, r.manifest) for name, r in runs.items()}
        data = data[None] if scen is None else {"scenarios": data}
        click.echo(json.dumps({**data, "files": [str(p) for p in paths]}, indent=1))
    elif not quiet:
        if scen is None:
            report.summary(plan_df, fleet_df, console, manifest)
        else:
            SC.summary(runs, console)
    sys.stdout.flush()
    for name, r in runs.items():
        with errors.capture() as said:
            report.warnings(r.plan, r.fleet, errors, r.manifest)
        if said.get():
            sys.stderr.write((f"scenario {name}:\n" if name is not None else "") + said.get())
    sys.stderr.flush()
    pooled = manifest.get("pooled_prefill")
    if pooled and not quiet and not as_json:
        click.echo(f"queue mmc: {pooled['prefill_instances']} pooled prefill instances where the per-instance M/M/1 "
                   f"split needs {pooled['split_instances']}: {pooled['gpus_saved']} GPUs saved")
    if not as_json:
        click.echo("wrote " + ", ".join(str(p) for p in paths))
    missed = _simulate_and_report(f, plan_df, out / "simulate.parquet", quiet or as_json) if then_simulate else False
    if not serves or missed:
        sys.exit(3)


def _check_writable(out: Path) -> None:
    """Refuse an output folder that cannot be made before planning (a large fleet plans for minutes): its
    nearest existing ancestor must be a writable directory, and `out` itself a directory if it exists."""
    import os

    if out.exists() and not out.is_dir():
        _fail(f"cannot write the plan to {out}: it is not a folder; give -o a folder")
    parent = out
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        _fail(f"cannot write the plan to {out}: {parent} is not a folder; give -o a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        _fail(f"cannot write the plan to {out}: {parent} is not writable; give -o a folder you can write")


def _simulate_and_report(fleet, plan, path: Path, quiet: bool, options=None) -> bool:
    """Simulate a plan, write the parquet atomically, print the table; True when some row missed an SLO."""
    from pdfleet import io
    from pdfleet.simulate import from_plan, summary

    try:
        table = from_plan.simulate_plan(fleet, plan, options or from_plan.Options())
    except (ValueError, OSError) as exc:  # a trace that cannot be read, a bad option
        _fail(f"cannot simulate: {exc}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        io.write_table(path, table, "simulate")
    except OSError as exc:
        _fail(f"cannot write {path}: {exc.strerror or exc}")
    if not quiet:
        summary.simulation(table, _console())
    click.echo(f"wrote {path}")
    return bool((~table["slo_met"].astype(bool)).any())


@main.command()
@click.argument("plan_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--trace", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Replay this trace (Azure CSV, Mooncake JSONL, or CSV arrival_s,input_tokens,output_tokens) for "
                   "every workload, its clock scaled so its busiest window arrives at the planned demand.")
@click.option("--poisson", is_flag=True, help="Poisson arrivals even for workloads that name a trace.")
@click.option("--demand-scale", type=click.FloatRange(min=0.001, max=1000), default=1.0, show_default=True,
              help="Multiply every row's demand (e.g. 1.3: is the plan enough for 30% more?).")
@click.option("--duration-s", type=click.FloatRange(min=1, max=1e7), default=3600.0, show_default=True,
              help="Simulated seconds of Poisson arrivals per row (at most 200,000 requests per row).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Random seed (same seed, same result).")
@click.option("--fleet", "fleet_yaml", type=click.Path(exists=True, dir_okay=False), default=None,
              help="The fleet.yaml the plan was made from [default: manifest.json's input_path].")
@click.option("-o", "--out", type=click.Path(dir_okay=False), default=None,
              help="Output parquet [default: PLAN_DIR/simulate.parquet].")
@click.option("--scenario", default=None, help="For a plan folder of scenarios: which one to simulate.")
@click.option("-q", "--quiet", is_flag=True, help="No table.")
def simulate(plan_dir, trace, poisson, demand_scale, duration_s, seed, fleet_yaml, out, scenario, quiet) -> None:
    """Check a plan by simulation: requests through its prefill and decode instances.

    Each served (quarter, workload) runs as a discrete-event simulation (JAX, all rows at once): the
    prefill instances as FIFO queues (round robin; one pooled queue for `queue: mmc`), the KV transfer,
    and decode as continuous batching stepped one iteration at a time at the TPOT of the live batch,
    admission waiting when KV memory is full. The same performance model made the plan, so what differs
    is the queueing: random arrivals, length distributions, fluctuating batches.

    \b
    Writes PLAN_DIR/simulate.parquet (or -o): a row per quarter x workload with requests, TTFT mean/p50/
    p90/p99, TPOT mean/p90 per request, mean decode batch, slo_met (and which statistic was checked).
    Exit codes: 0 every row meets its SLOs; 2 bad input; 3 some row misses.
    """
    from pdfleet.output import reader
    from pdfleet.simulate import from_plan

    try:
        plan = reader.read(plan_dir, scenario)
    except (reader.PlanDirError, OSError) as exc:
        _fail(f"{exc}; make a plan with `pdfleet optimize fleet.yaml -o {plan_dir}`")
    if fleet_yaml is None:
        fleet_yaml = plan.manifest.get("input_path")
        if not fleet_yaml or not Path(fleet_yaml).is_file():
            _fail(f"{plan_dir}: cannot find the fleet.yaml the plan was made from; pass --fleet FILE")
    fleet = _load(fleet_yaml)
    options = from_plan.Options(seed=seed, duration_s=duration_s, demand_scale=demand_scale, trace=trace,
                                poisson=poisson)
    target = Path(out) if out else Path(plan_dir) / "simulate.parquet"
    if _simulate_and_report(fleet, plan.plan, target, quiet, options):
        sys.exit(3)


def _scenarios(scenarios_file: str | None, demand_scale: str | None):
    """{name: Scenario} from --scenarios and --demand-scale, or None when neither is given."""
    if scenarios_file is None and demand_scale is None:
        return None
    from pdfleet import scenarios as SC
    from pdfleet import spec

    scale = _number("--demand-scale", demand_scale, whole=False, minimum=1e-9) if demand_scale is not None else None
    try:
        scen = SC.load(scenarios_file) if scenarios_file else SC.demand_scale_scenario(scale)
    except spec.SpecError as exc:
        _fail(str(exc))
    if scenarios_file and scale is not None:
        scen = {n: s.model_copy(update={"demand_scale": s.demand_scale * scale}) for n, s in scen.items()}
    return scen


@main.command()
@click.argument("plan_dir", type=click.Path(file_okay=False))
@click.option("-o", "--out", default=None, type=click.Path(dir_okay=False),
              help="HTML file to write [default: PLAN_DIR/report.html].")
@click.option("--scenario", default=None, help="The scenario to show, for a folder written with --scenarios.")
def report(plan_dir: str, out: str | None, scenario: str | None) -> None:
    """One self-contained HTML report of a plan folder (opens offline; fetches nothing).

    \b
    Charts: cost per quarter by sku (capex/opex), GPUs per sku against inventory and owned, instances
    and P/D per workload, predicted TTFT/TPOT against the SLO, and simulated against predicted when
    PLAN_DIR/simulate.parquet exists; the plan table below.
    """
    from pdfleet.output import html, reader

    try:
        d = reader.read(plan_dir, scenario)
    except reader.PlanDirError as exc:
        _fail(str(exc))
    path = Path(out) if out else Path(plan_dir) / "report.html"
    text = html.render(d)
    _write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    click.echo(f"wrote {path}")


@main.command()
@click.argument("plan_a", type=click.Path(file_okay=False))
@click.argument("plan_b", type=click.Path(file_okay=False))
@click.option("-o", "--out", default=None, type=click.Path(dir_okay=False),
              help="Also write the differences as parquet (schema in docs/outputs.md).")
@click.option("--scenario-a", default=None, help="PLAN_A's scenario, for a folder written with --scenarios.")
@click.option("--scenario-b", default=None, help="PLAN_B's scenario (PLAN_A and PLAN_B may be one folder).")
def diff(plan_a: str, plan_b: str, out: str | None, scenario_a: str | None, scenario_b: str | None) -> None:
    """What changed from PLAN_A to PLAN_B (two folders written by `pdfleet optimize -o`).

    \b
    GPUs and cost per sku and quarter, then every (quarter, workload, role) whose allocation changed
    and why: demand, slo, price, inventory or budget (the inputs that differ for that row).
    """
    from pdfleet import io
    from pdfleet.output import diff as D
    from pdfleet.output import reader, schema

    try:
        a, b = reader.read(plan_a, scenario_a), reader.read(plan_b, scenario_b)
    except reader.PlanDirError as exc:
        _fail(str(exc))
    frame = D.diff(a, b)
    D.print_tables(frame, _console())
    if out is not None:
        data = io._table_bytes(schema.to_table(frame, "diff"))
        _write_atomic(Path(out), lambda tmp: tmp.write_bytes(data))
        click.echo(f"wrote {out}")


def _progress_printer():
    """Print block progress to stderr for fleets that need more than one compiled block."""

    def show(done: int, total: int) -> None:
        if total > done or done > 4096:
            click.echo(f"  solved {done:,}/{total:,} workload slots", err=True)

    return show


# ---------------------------------------------------------------- estimate, calibrate, profile import


def _number(flag: str, raw: str | None, *, whole: bool = True, minimum: float = 1):
    """A numeric flag given as text, so that a bad value is one `error:` line (not click's usage block)."""
    try:
        value = float(raw)
    except (TypeError, ValueError):
        _fail(f"{flag} must be a number (got {raw!r})")
    if not value >= minimum or value == float("inf"):
        _fail(f"{flag} must be >= {minimum:g} (got {raw})")
    if whole and value != int(value):
        _fail(f"{flag} must be a whole number (got {raw})")
    return int(value) if whole else value


def _write_atomic(path: Path, write) -> None:
    """Write through a temp file next to `path`, then rename (DESIGN.md: writes are atomic)."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        _fail(f"cannot write {path}: {exc.strerror or exc}")


def _console():
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=250)


_SINGLE_FLAGS = ("--model", "--sku", "--tp", "--input-tokens", "--output-tokens", "--batch")


def _check_engine(engine: str | None, calibration) -> None:
    """`estimate --engine`: what planning.engine accepts (estimate.ENGINES) or an engine the calibration file
    was fitted for (`pdfleet calibrate --by sku,engine` on your own rows), else one line and exit 2."""
    from pdfleet import calibrate
    from pdfleet import estimate as est

    known = [*est.ENGINES, *sorted(calibrate.engines_in(calibration) - set(est.ENGINES))]
    if engine is not None and engine not in known:
        _fail(f"--engine must be one of {', '.join(known)} (got {engine!r})")


@main.command()
@click.option("--model", default=None, help="Model name (catalog, or the fleet's models).")
@click.option("--sku", default=None, help="GPU sku name (catalog, or the fleet's skus).")
@click.option("--tp", default=None, metavar="N", help="GPUs per instance (tensor-parallel degree).")
@click.option("--precision", default=None, metavar="[bf16|fp8|fp4]",
              help="Weight precision [default: the model's weight_dtype].")
@click.option("--input-tokens", default=None, metavar="N", help="Input (prompt) tokens per request.")
@click.option("--output-tokens", default=None, metavar="N", help="Output tokens per request.")
@click.option("--batch", default=None, metavar="B", help="Decode batch (concurrent sequences).")
@click.option("--dp", default=None, metavar="N",
              help="Attention data-parallel groups of --tp GPUs each (MoE models): the instance has tp x dp GPUs "
                   "[default: 1].")
@click.option("--ep", default=None, metavar="N",
              help="Expert parallelism: 1 (experts tensor-parallel) or tp x dp (whole experts spread over every "
                   "GPU; DeepSeek-V3 / Qwen3-235B as served disaggregated, e.g. --tp 1 --dp 8 --ep 8) [default: 1].")
@click.option("--queries", default=None, type=click.Path(dir_okay=False),
              help="CSV of many queries: model, sku, tp, precision, input_tokens, output_tokens, batch, and "
                   "optional dp, ep.")
@click.option("--fleet", "fleet_yaml", default=None, type=click.Path(dir_okay=False),
              help="Resolve names in this fleet.yaml too (its skus/models override the catalog) and use its "
                   "measured profiles, planning.memory_utilization, and planning.calibration and planning.engine "
                   "where --calibration and --engine are not given (the entries its plan uses).")
@click.option("--calibration", default=None, type=click.Path(dir_okay=False),
              help="Calibration file from `pdfleet calibrate` [default: the --fleet's planning.calibration, else the shipped one].")
@click.option("--engine", default=None, metavar="vllm|sglang|tensorrt-llm|any",
              help="Use the calibration entry of this engine where the file has one; the `fit` column says "
              "which entry served and whether it was borrowed from another sku or engine. Besides the engines "
              "planning.engine takes, any engine the file was fitted for (e.g. nim in the shipped one) "
              "[default: any, or the --fleet's planning.engine].")
@click.option("-o", "--out", default=None, type=click.Path(dir_okay=False), help="Write the results as CSV.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON records.")
def estimate(model, sku, tp, precision, input_tokens, output_tokens, batch, dp, ep, queries, fleet_yaml, calibration,
             engine, out, as_json) -> None:
    """Prefill time, TPOT, KV-memory batch limit and sizes of a model on a sku.

    From a measured profile where the fleet has one for (model, sku, tp), else from the roofline with
    calibrated efficiencies; the *_source columns say which. One query by flags, or many with --queries.

    \b
    prefill_s           one request, unloaded (profile: L / TPmax(L))
    tpot_ms             one decode step at the batch, mean context input + output/2
    decode_tokens_per_s batch / TPOT (output tokens/s of one instance)
    max_batch_memory    largest batch whose KV cache fits (planning.memory_utilization, default 0.9)
    weights_gib, kv_gib_per_request (KV bytes per token x (input + output))
    """
    from pdfleet import estimate as est
    from pdfleet import spec

    given = {f: v for f, v in zip(_SINGLE_FLAGS, (model, sku, tp, input_tokens, output_tokens, batch)) if v is not None}
    extra = [f for f, v in (("--precision", precision), ("--dp", dp), ("--ep", ep)) if v is not None]
    if queries is not None and (given or extra):
        _fail(f"give --queries FILE.csv or the single-query flags ({', '.join([*given, *extra])}), not both")
    if queries is None:
        missing = [f for f in _SINGLE_FLAGS if f not in given]
        if missing:
            _fail(f"missing {', '.join(missing)}; give all of {' '.join(_SINGLE_FLAGS)} or --queries FILE.csv")
        if precision is not None and precision not in est.PRECISIONS:
            _fail(f"--precision must be one of {', '.join(est.PRECISIONS)} (got {precision!r})")
    try:
        ctx = est.context(fleet_yaml, calibration, engine)
        _check_engine(engine, ctx.calibration)  # the --fleet's file where --calibration is not given
        if queries is not None:
            qs = est.read_queries(queries, ctx)
        else:
            qs = [est.check(est.Query(model, sku, _number("--tp", tp), precision,
                                      _number("--input-tokens", input_tokens),
                                      _number("--output-tokens", output_tokens),
                                      _number("--batch", batch, whole=False),
                                      _number("--dp", dp or "1"), _number("--ep", ep or "1")), ctx)]
        df = est.estimate(qs, ctx)
    except spec.SpecError as exc:
        _fail(f"{fleet_yaml}: {exc}" if exc.path else str(exc))
    except est.EstimateError as exc:
        _fail(str(exc))
    if out is not None:
        _write_atomic(Path(out), lambda tmp: df.to_csv(tmp, index=False))
    if as_json:
        click.echo(df.to_json(orient="records", indent=1, double_precision=10))
    elif out is not None:
        click.echo(f"wrote {out} ({len(df)} queries)")
    else:
        _estimate_table(df, _console())


def _estimate_table(df, console) -> None:
    """A few queries: one column per query (fields down the side); many: one row per query."""
    import pandas as pd
    from rich.table import Table

    fmt = {
        "tp": "{:d}", "input_tokens": "{:,d}", "output_tokens": "{:,d}", "batch": "{:g}",
        "prefill_s": "{:.4g}", "tpot_ms": "{:.2f}", "decode_tokens_per_s": "{:,.0f}",
        "max_batch_memory": "{:,d}", "weights_gib": "{:.1f}", "kv_gib_per_request": "{:.4f}",
    }
    cell = lambda c, v: "nan" if v is None or v is pd.NA else fmt[c].format(v) if c in fmt else str(v)
    records = df.to_dict("records")
    if len(records) <= 4:
        table = Table(show_header=len(records) > 1, header_style="bold")
        table.add_column("", style="bold", no_wrap=True)
        for i in range(len(records)):
            table.add_column(f"query {i + 1}", overflow="fold", max_width=70)
        for col in df.columns:
            table.add_row(col, *[cell(col, r[col]) for r in records])
    else:
        table = Table(show_header=True, header_style="bold")
        for col in df.columns:
            table.add_column(col, justify="right" if col in fmt else "left", overflow="fold",
                             min_width=None if col == "note" else len(col))
        for r in records:
            table.add_row(*[cell(c, v) for c, v in r.items()])
    console.print(table)


_SHIPPED = {  # --data name -> (measured reader, file in the perf dir, key of calibrate.SHIPPED_SOURCES)
    "splitwise": ("read_splitwise", "splitwise_perf_model.csv", "splitwise"),
    "llm-inference-bench": ("read_llm_inference_bench", "llm_inference_bench_all_results.csv", "llm-inference-bench"),
    "mlenergy": ("read_mlenergy", "mlenergy_v3_configs.csv", "mlenergy-v3"),
}


@main.command()
@click.option("--data", "data", multiple=True, metavar="NAME|FILE.csv",
              help="Measured data (repeatable): splitwise, llm-inference-bench, mlenergy (shipped readers), or a "
                   "CSV with the tidy columns of pdfleet.measured [default: the three shipped sources].")
@click.option("--perf-dir", default=None, type=click.Path(file_okay=False),
              help="Folder of the shipped measured files [default: ../shared/data/perf].")
@click.option("--by", "by", default="sku", metavar="sku|sku,engine", help="One parameter set per sku, or per "
              "(sku, engine) pair [default: sku].")
@click.option("--steps", default="3000", metavar="N", help="Adam steps [default: 3000].")
@click.option("--lr", default="0.05", metavar="LR", help="Adam learning rate [default: 0.05].")
@click.option("-o", "--out", default="calibration.json", type=click.Path(dir_okay=False),
              help="Calibration file to write [default: calibration.json].")
def calibrate(data, perf_dir, by, steps, lr, out) -> None:
    """Fit roofline efficiencies to measured tables and write a calibration file.

    Use it with `pdfleet estimate --calibration FILE`. The fit is pdfleet.calibrate.fit (optax Adam on the
    Huber loss of log(predicted / measured)); rows whose model or sku the catalogs lack are dropped and counted.
    The file has no cross-validated errors (cv_error), so `planning.prediction_margin: auto` refuses it; the
    shipped file and `python -m pdfleet.calibrate FILE` (every measured source, cross-validated) have them.
    """
    groups = {"sku": ("sku",), "sku,engine": ("sku", "engine")}
    key = by.replace(" ", "")
    if key not in groups:
        _fail(f"--by must be sku or sku,engine (got {by!r})")
    n_steps = _number("--steps", steps)
    rate = _number("--lr", lr, whole=False, minimum=0)
    if rate <= 0:
        _fail(f"--lr must be > 0 (got {lr})")
    import pandas as pd

    from pdfleet import calibrate as cal
    from pdfleet import measured

    frames, sources = [], {}
    for item in data or tuple(_SHIPPED):
        try:
            if item in _SHIPPED:
                reader, filename, source = _SHIPPED[item]
                path = Path(perf_dir) / filename if perf_dir else None
                frames.append(getattr(measured, reader)(path))
                sources[source] = cal.SHIPPED_SOURCES[source]
            elif Path(item).is_file():
                frames.append(measured.read_csv(item))
                sources[Path(item).name] = f"plain CSV {item} (pdfleet.measured.read_csv)"
            else:
                _fail(f"--data {item}: not a file, nor one of {', '.join(_SHIPPED)}")
        except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            _fail(f"--data {item}: cannot read ({' '.join(str(exc).split())}); use --perf-dir or check the path")
        except (ValueError, KeyError) as exc:
            _fail(f"--data {item}: {' '.join(str(exc).split())}")
    df = pd.concat(frames, ignore_index=True)
    try:
        fit = cal.fit(df, groups[key], steps=n_steps, lr=rate)
    except ValueError as exc:
        _fail(f"calibrate: {exc}")
    try:
        written = cal.write_calibration(Path(out), [fit], sources,
                                        note=f"pdfleet calibrate --by {key} on {', '.join(data or _SHIPPED)}")
    except OSError as exc:
        _fail(f"cannot write {out}: {exc.strerror or exc}")
    for sku, engines in written["skus"].items():
        for engine, e in engines.items():
            p = e["params"]
            group = sku if key == "sku" else f"{sku} / {engine}"
            click.echo(f"{group:28s} rows={e['rows']:5d}  fit MAPE={e['fit_mape_pct']:6.2f}%  "
                       f"eta_c={p['eta_compute']:.3f} eta_m={p['eta_memory']:.3f} eta_link={p['eta_link']:.3f} "
                       f"c0={p['c_prefill_s'] * 1e3:.2f}ms c1={p['c_decode_s'] * 1e3:.2f}ms")
    if fit.dropped:
        click.echo("dropped rows: " + ", ".join(f"{k}: {v}" for k, v in fit.dropped.items()))
    click.echo(f"all {len(fit.table)} rows: fit MAPE {fit.mape_pct:.2f}%; wrote {out}")


@main.group()
def profile() -> None:
    """Measured performance profiles (the profiles: entries of fleet.yaml)."""


@profile.command("import")
@click.option("--vllm", multiple=True, type=click.Path(), metavar="FILE_OR_DIR",
              help="vLLM benchmark_serving / `vllm bench serve --save-result` JSON, one per concurrency "
                   "(repeatable; a folder means its *.json).")
@click.option("--csv", "csv_path", default=None, type=click.Path(dir_okay=False),
              help="CSV: concurrency, mean_ttft_ms, mean_tpot_ms, input_tokens, output_tokens.")
@click.option("--model", default=None, help="Model name the profile is for (required).")
@click.option("--sku", default=None, help="GPU sku name (required).")
@click.option("--gpus-per-instance", default=None, metavar="N", help="GPUs of the benchmarked instance (required).")
@click.option("-o", "--out", default=None, type=click.Path(dir_okay=False),
              help="Write the YAML here [default: print it].")
def profile_import(vllm, csv_path, model, sku, gpus_per_instance, out) -> None:
    """Turn serving-benchmark results into a profiles: entry (YAML) for fleet.yaml.

    Decode table: TPOT (mean) against the concurrency cap; prefill: input tokens / TTFT of the
    concurrency-1 run, if there is one. Suspicious data is printed as warnings on stderr.
    """
    from pdfleet import profile_import as pi

    missing = [f for f, v in (("--model", model), ("--sku", sku), ("--gpus-per-instance", gpus_per_instance))
               if not v]
    if missing:
        _fail(f"missing {', '.join(missing)}; give --model, --sku and --gpus-per-instance")
    if bool(vllm) == bool(csv_path):
        _fail("give --vllm FILE_OR_DIR (repeatable) or --csv FILE, one of the two")
    gpus = _number("--gpus-per-instance", gpus_per_instance)
    try:
        if vllm:
            entry = pi.from_vllm_json(list(vllm), model, sku, gpus)
        else:
            entry = pi.from_csv(csv_path, model, sku, gpus)
    except pi.ProfileImportError as exc:
        _fail(" ".join(str(exc).split()))
    for w in entry.get("warnings") or ():
        click.echo(f"warning: {' '.join(str(w).split())}", err=True)
    text = pi.to_yaml(entry)
    if out is None:
        click.echo(text, nl=False)
    else:
        _write_atomic(Path(out), lambda tmp: tmp.write_text(text, encoding="utf-8"))
        click.echo(f"wrote {out}")


if __name__ == "__main__":
    main()
