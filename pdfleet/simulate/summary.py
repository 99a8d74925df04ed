"""The terminal table of a simulation (rich): simulated against predicted and the SLO, per row."""

from __future__ import annotations

import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pdfleet.report import _num


def simulation(table: pd.DataFrame, console: Console) -> None:
    """One line per simulated (quarter, workload): the statistic each SLO bounds, simulated (predicted)."""
    out = Table(title="pdfleet simulate")
    for col in ("quarter", "workload", "requests", "P/D", "TTFT s sim (pred) SLO", "TTFT p99 s",
                "TPOT ms sim (pred) SLO", "batch", "within SLO", "SLO"):
        out.add_column(col, justify="left" if col in ("quarter", "workload") else "right")
    for r in table.itertuples():
        ttft_stat = r.ttft_checked.replace("ttft_", "").replace("_s", "")
        tpot_stat = r.tpot_checked.replace("tpot_", "").replace("_ms", "")
        met = "met" if r.slo_met else "[bold red]missed[/]"
        out.add_row(
            escape(str(r.quarter)), escape(str(r.workload)), f"{r.requests:,}",
            f"{r.prefill_instances}P/{r.decode_instances}D",
            f"{ttft_stat} {_num(getattr(r, r.ttft_checked), '.3f')} ({_num(r.predicted_ttft_s, '.3f')}) {r.slo_ttft_s:g}",
            _num(r.ttft_p99_s, ".3f"),
            f"{tpot_stat} {_num(getattr(r, r.tpot_checked), '.1f')} ({_num(r.predicted_tpot_ms, '.1f')}) {r.slo_tpot_ms:g}",
            _num(r.decode_batch_mean, ".1f"), _num(100 * r.slo_attainment, ".1f") + "%", met)
    console.print(out)
