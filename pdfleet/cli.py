"""Command line: `pdfleet optimize | validate | schema`. Heavy imports (JAX, pandas) happen inside verbs."""

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
      pdfleet schema > fleet.schema.json JSON Schema for editors

    Method: prefill as an M/M/1 queue under the TTFT SLO, decode capacity from a measured TPOT-vs-batch
    table under the TPOT SLO (Li et al., Kingsoft Cloud, arXiv 2603.04716).
    """


@main.command()
@click.argument("fleet_yaml", type=click.Path(dir_okay=False))
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
@click.argument("fleet_yaml", type=click.Path(dir_okay=False))
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Output folder for plan.parquet, fleet.parquet, manifest.json [default: plans/<fleet name>].")
@click.option("--rounding", type=click.Choice(["ceil", "nearest"]), default=None,
              help="Whole instances: ceil (SLO-safe) or nearest (the paper's 3P4D). Overrides planning.rounding.")
@click.option("-q", "--quiet", is_flag=True, help="Print only the output paths.")
def optimize(fleet_yaml: str, out_dir: str | None, rounding: str | None, quiet: bool) -> None:
    """Cheapest prefill and decode allocation for every workload and quarter.

    For each (quarter, workload, role) every profile of the workload's model is a candidate
    (any sku, any gpus_per_instance); the cheapest one that meets the SLOs wins, exactly.

    \b
    Writes to the output folder (atomically; nothing on error):
      plan.parquet   a row per quarter x workload x role: sku, instances, GPUs, $/hour,
                     capacity, utilization, predicted TTFT/TPOT, SLOs, status
      fleet.parquet  a row per quarter x sku: GPUs, $/hour, inventory check
      manifest.json  input hash, version, solver, rounding, totals, timings
    """
    start = time.perf_counter()
    f = _load(fleet_yaml)
    from rich.console import Console

    from pdfleet import io, optimize as opt, report

    console = Console() if sys.stdout.isatty() else Console(width=150)
    progress = _progress_printer() if not quiet else None
    result = opt.run(f, rounding=rounding, source=fleet_yaml, progress=progress)
    out = Path(out_dir) if out_dir else Path("plans") / Path(fleet_yaml).stem
    result.manifest["timings_s"]["total_s"] = time.perf_counter() - start
    paths = io.write_outputs(out, result.plan, result.fleet, result.manifest)
    if not quiet:
        report.summary(result.plan, result.fleet, console)
    click.echo("wrote " + ", ".join(str(p) for p in paths))


def _progress_printer():
    """Print block progress to stderr for fleets that need more than one compiled block."""

    def show(done: int, total: int) -> None:
        if total > done or done > 4096:
            click.echo(f"  solved {done:,}/{total:,} workload slots", err=True)

    return show


if __name__ == "__main__":
    main()
