"""workloads_file: demand from a CSV or parquet table, the same validation as YAML workloads, one-line
errors naming file, row and column, rows that join back to the plan, and loading at scale."""


import duckdb
import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from pdfleet import spec
from pdfleet.cli import main

from conftest import tiny_fleet

WORKLOADS = {  # as fleet.yaml writes them
    "chat": {"model": "m", "rate_rps": {"q1": 5, "q2": 9}, "input_tokens": 1024, "output_tokens": 256,
             "slo": {"ttft_s": 1.0, "tpot_ms": 50}},
    "batch": {"model": "m", "tokens_per_minute": {"q1": 60000, "q2": 90000}, "input_tokens": 2048,
              "output_tokens": 128, "slo": {"ttft_s": 3.0, "tpot_ms": 100, "ttft_quantile": 0.9}, "overhead_s": 0.05},
}
TABLE = """workload,model,quarter,rate_rps,tokens_per_minute,input_tokens,output_tokens,ttft_s,tpot_ms,ttft_quantile,overhead_s
chat,m,q1,5,,1024,256,1.0,50,,
chat,m,q2,9,,1024,256,1.0,50,,
batch,m,q1,,60000,2048,128,3,100,0.9,0.05
batch,m,q2,,90000,2048,128,3,100,0.9,0.05
"""


def _write(tmp_path, table=TABLE, fmt="csv", **doc_changes):
    doc = tiny_fleet(**doc_changes)
    doc.pop("workloads")
    doc["workloads_file"] = f"demand.{fmt}"
    path = tmp_path / f"demand.{fmt}"
    if fmt == "csv":
        path.write_text(table)
    else:
        pd.read_csv(__import__("io").StringIO(table)).to_parquet(path)
    (tmp_path / "fleet.yaml").write_text(yaml.safe_dump(doc))
    return tmp_path / "fleet.yaml"


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_table_gives_the_same_fleet_as_yaml_workloads(tmp_path, fmt):
    from_table = spec.load(_write(tmp_path, fmt=fmt))
    doc = tiny_fleet()
    doc["workloads"] = WORKLOADS
    from_yaml = spec.from_dict(doc)
    assert from_table.workloads == from_yaml.workloads
    assert list(from_table.workloads) == ["chat", "batch"]


def test_without_a_quarter_column_the_demand_holds_every_quarter(tmp_path):
    table = "workload,model,rate_rps,input_tokens,output_tokens,ttft_s,tpot_ms\nchat,m,5,1024,256,1,50\n"
    fleet = spec.load(_write(tmp_path, table))
    assert fleet.workloads["chat"].rate_rps == 5


def _bad(line_changes: dict[int, str] | None = None, header: str | None = None) -> str:
    lines = TABLE.splitlines()
    if header is not None:
        lines[0] = header
    for i, text in (line_changes or {}).items():
        lines[i] = text
    return "\n".join(lines) + "\n"


BAD = {  # table -> the start of the one error line
    "not a number": (_bad({2: "chat,m,q2,nine,,1024,256,1.0,50,,"}), "row 2 (line 3) column rate_rps: not a number"),
    "negative SLO": (_bad({1: "chat,m,q1,5,,1024,256,-1,50,,", 2: "chat,m,q2,9,,1024,256,-1,50,,"}),
                     "row 1 (line 2) column ttft_s: Input should be greater than 0"),
    "unknown model": (_bad({3: "batch,gpt,q1,,60000,2048,128,3,100,0.9,0.05",
                            4: "batch,gpt,q2,,90000,2048,128,3,100,0.9,0.05"}),
                      "row 3 (line 4) column model: unknown model 'gpt'"),
    "unknown quarter": (_bad({2: "chat,m,q9,9,,1024,256,1.0,50,,"}), "row 2 (line 3) column quarter: 'q9' is not"),
    "duplicate row": (_bad({2: "batch,m,q1,,1,2048,128,3,100,0.9,0.05"}), "row 3 (line 4) column workload: a second row"),
    "a quarter short": ("\n".join(TABLE.splitlines()[:2] + TABLE.splitlines()[3:]) + "\n",
                        "row 1 (line 2) column rate_rps: no value for quarter q2"),
    "lengths differ": (_bad({2: "chat,m,q2,9,,1000,256,1.0,50,,"}), "row 2 (line 3) column input_tokens: differs"),
    "fractional tokens": (_bad({1: "chat,m,q1,5,,1024.5,256,1.0,50,,"}), "row 1 (line 2) column input_tokens: must be"),
    "both demands": (_bad({1: "chat,m,q1,5,7,1024,256,1.0,50,,"}), "row 1 (line 2) column tokens_per_minute: give"),
    "no demand": (_bad({1: "chat,m,q1,,,1024,256,1.0,50,,"}), "row 1 (line 2) column rate_rps: give"),
    "bad quantile": (_bad({3: "batch,m,q1,,60000,2048,128,3,100,2,0.05", 4: "batch,m,q2,,90000,2048,128,3,100,2,0.05"}),
                     "row 3 (line 4) column ttft_quantile: "),
    "overhead over SLO": (_bad({3: "batch,m,q1,,60000,2048,128,3,100,0.9,5", 4: "batch,m,q2,,90000,2048,128,3,100,0.9,5"}),
                          "row 3 (line 4) column overhead_s: 5 s is not below"),
    "missing column": (_bad(header="workload,model,quarter,rate_rps,tokens_per_minute,input_tokens,output_tokens,"
                                   "ttft_s,tpot,ttft_quantile,overhead_s"), "demand.csv: unknown column 'tpot'"),
    "no rate column": (_bad(header="workload,model,quarter,rps,tokens_per_minute,input_tokens,output_tokens,"
                                   "ttft_s,tpot_ms,ttft_quantile,overhead_s"), "demand.csv: unknown column 'rps'"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_rows_are_one_line_naming_file_row_and_column(tmp_path, case):
    table, expected = BAD[case]
    path = _write(tmp_path, table)
    res = CliRunner().invoke(main, ["validate", str(path)])
    assert res.exit_code == 2, res.output
    assert res.output.count("\n") == 1 and "Traceback" not in res.output
    line = res.output.strip()
    assert line.startswith("error: workloads_file demand.csv") and expected in line, line


def test_a_workload_in_both_yaml_and_the_file_is_refused(tmp_path):
    path = _write(tmp_path)
    doc = yaml.safe_load(path.read_text())
    doc["workloads"] = {"chat": WORKLOADS["chat"]}
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(spec.SpecError, match=r"^workloads\.chat: also a row of workloads_file"):
        spec.load(path)


def test_plan_rows_join_back_to_the_input_rows(tmp_path):
    path = _write(tmp_path, fmt="parquet")
    res = CliRunner().invoke(main, ["optimize", str(path), "-o", str(tmp_path / "out"), "-q"])
    assert res.exit_code == 0, res.output
    rows = duckdb.connect().execute(f"""
        SELECT d.workload, d.quarter, d.rate_rps, d.tokens_per_minute, d.input_tokens, d.output_tokens, p.demand_rps
        FROM '{tmp_path / 'demand.parquet'}' d JOIN '{tmp_path / 'out' / 'plan.parquet'}' p
        USING (workload, quarter) WHERE p.role = 'prefill'""").fetchall()
    assert len(rows) == 4
    for _, _, rate, tpm, lin, lout, demand in rows:
        want = rate if rate is not None else tpm / 60 / (lin + lout)  # SQL NULL where the row gives the other
        assert demand == pytest.approx(want)


def test_twenty_thousand_workloads_load_from_parquet(tmp_path):
    """Content only; the speed is measured by scripts/demand_table.py (no timed assertions in tests)."""
    n, quarters = 20_000, ["q1", "q2"]
    rng = np.random.default_rng(0)
    names = np.repeat([f"w{i:05d}" for i in range(n)], len(quarters))
    table = pd.DataFrame({"workload": names, "model": "m", "quarter": np.tile(quarters, n),
                          "rate_rps": rng.uniform(0.1, 5, n * len(quarters)).round(3),
                          "input_tokens": np.repeat(rng.integers(128, 4096, n), len(quarters)),
                          "output_tokens": 256, "ttft_s": 2.0, "tpot_ms": 60.0})
    doc = tiny_fleet()
    doc.pop("workloads")
    doc["workloads_file"] = "demand.parquet"
    table.to_parquet(tmp_path / "demand.parquet")
    (tmp_path / "fleet.yaml").write_text(yaml.safe_dump(doc))
    fleet = spec.load(tmp_path / "fleet.yaml")
    assert len(fleet.workloads) == n and fleet.workloads["w00007"].rate_rps["q2"] == table["rate_rps"][15]
