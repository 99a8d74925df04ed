"""The terminal summary: cost per hour / quarter / year, planned P/D, the TTFT statistic, --json, and
stderr warnings that never land inside a stdout line."""

import json
import subprocess
import sys

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from pdfleet.cli import main

from conftest import CONFIGS, tiny_fleet

# 'fast' and 'slow' capped at 4 GPUs each: q2's demand cannot be served (exit 3, warnings on stderr)
STARVED = tiny_fleet(**{"skus.fast.inventory": 4, "skus.slow.inventory": 4,
                        "workloads.chat.slo": {"ttft_s": 1.0, "tpot_ms": 50, "ttft_quantile": 0.9}})


def test_json_summary_matches_the_files(tmp_path):
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(STARVED))
    out = tmp_path / "out"
    proc = CliRunner().invoke(main, ["optimize", str(path), "-o", str(out), "--json"])
    assert proc.exit_code == 3, proc.output
    data = json.loads(proc.stdout)  # stdout is one JSON document, nothing else
    assert "WARNING chat prefill (q2): inventory" in proc.stderr
    fleet = pd.read_parquet(out / "fleet.parquet")
    plan = pd.read_parquet(out / "plan.parquet")
    assert [q["quarter"] for q in data["quarters"]] == ["q1", "q2"]
    for q in data["quarters"]:
        hourly = fleet.loc[fleet["quarter"] == q["quarter"], "cost_usd_per_hour"].sum()
        assert q["cost_usd_per_hour"] == pytest.approx(hourly)
        assert q["cost_usd_per_quarter"] == pytest.approx(hourly * 2190)
        assert q["cost_usd_per_year"] == pytest.approx(hourly * 2190 * 4)
    for r in data["rows"]:
        rows = plan[(plan["quarter"] == r["quarter"]) & (plan["workload"] == r["workload"])].set_index("role")
        pre, dec = rows.loc["prefill", "instances"], rows.loc["decode", "instances"]
        assert r["pd_instances"] == (f"{pre}P/{dec}D" if pre or dec else "-")
        assert r["ttft_statistic"] == "p90"
    assert {r["status"] for r in data["rows"]} == {"ok", "inventory"}
    assert data["files"] == [str(out / n) for n in ("plan.parquet", "fleet.parquet", "manifest.json")]


def test_warnings_never_glue_onto_a_stdout_line(tmp_path):
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(STARVED))
    proc = subprocess.run([sys.executable, "-m", "pdfleet.cli", "optimize", str(path), "-o", str(tmp_path / "o"),
                           "--solver", "exact"],  # ignores the caps: the "WARNING q2: plan needs ..."
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # one pipe, like a terminal
    lines = proc.stdout.splitlines()
    assert lines[-1].startswith("wrote ") and lines[-1].endswith("manifest.json")
    flagged = [i for i, line in enumerate(lines) if "WARNING" in line]
    assert flagged and all(lines[i].startswith("WARNING ") for i in flagged)
    assert max(i for i, line in enumerate(lines) if line.startswith("solver ")) < min(flagged)


def test_table_shows_planned_instances_and_the_ttft_statistic(tmp_path):
    res = CliRunner().invoke(main, ["optimize", str(CONFIGS / "paper.yaml"), "-o", str(tmp_path)])
    assert res.exit_code == 0, res.output
    # the paper's case rounded up: 4 prefill and 4 decode instances, mean TTFT (eq. 13)
    row = next(line for line in res.output.splitlines() if "4P/4D" in line)
    assert "mean " in row and "0.82" not in row
    assert "/quarter" in res.output and "/year at this rate" in res.output
