"""Turn a fleet.yaml's `workloads:` into a demand table and a fleet.yaml that points at it.

    python scripts/demand_table.py big.yaml -o big-table.yaml [--format csv|parquet]

Writes big-table.yaml (the same fleet, `workloads_file: big-table.demand.csv` instead of `workloads:`) and
the table, one row per workload and quarter (pdfleet/demand_file.py lists the columns). With scripts/
gen_fleet.py it makes the 100,000-workload forecasts of the workloads_file benchmark (README).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd
import yaml


def rows(workloads: dict, quarters: list[str]) -> pd.DataFrame:
    out = []
    for name, w in workloads.items():
        field = "rate_rps" if "rate_rps" in w else "tokens_per_minute"
        slo = w["slo"]
        for q in quarters:
            value = w[field][q] if isinstance(w[field], dict) else w[field]
            out.append({"workload": name, "model": w["model"], "quarter": q, field: value,
                        "input_tokens": w["input_tokens"], "output_tokens": w["output_tokens"],
                        "ttft_s": slo["ttft_s"], "tpot_ms": slo["tpot_ms"],
                        "ttft_quantile": slo.get("ttft_quantile"), "overhead_s": w.get("overhead_s", 0.0)})
    return pd.DataFrame(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("fleet")
    ap.add_argument("-o", "--out", required=True, help="fleet.yaml to write (the table goes beside it)")
    ap.add_argument("--format", choices=["csv", "parquet"], default="csv")
    args = ap.parse_args(argv)
    start = time.perf_counter()
    doc = yaml.load(Path(args.fleet).read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    quarters = (doc.get("planning") or {}).get("quarters", ["now"])
    table = rows(doc.pop("workloads"), quarters)
    out = Path(args.out)
    name = out.with_suffix(f".demand.{args.format}").name
    if args.format == "csv":
        table.to_csv(out.parent / name, index=False)
    else:
        table.to_parquet(out.parent / name, index=False)
    doc["workloads_file"] = name
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    print(f"demand_table: {table['workload'].nunique():,} workloads, {len(table):,} rows -> {out.parent / name} "
          f"({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
