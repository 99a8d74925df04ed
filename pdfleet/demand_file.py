"""`workloads_file: demand.csv | demand.parquet` in fleet.yaml: the demand forecast as a table.

One row per workload and quarter (or one row per workload without a `quarter` column: the same demand
every quarter). Columns: workload, model, quarter, rate_rps or tokens_per_minute, input_tokens,
output_tokens, ttft_s, tpot_ms, and optionally ttft_quantile, overhead_s. Per-workload columns (all but
quarter and the demand) must agree across a workload's rows. The rows become `workloads:` entries and are
validated by the same pydantic models as YAML ones; every error is one line naming the file, the row
(1-based, data rows; for CSV also the line) and the column. Columns are read and checked as arrays, so
100,000 workloads load in seconds. Plan rows join back to input rows on (workload, quarter).
"""

from __future__ import annotations

from pathlib import Path

from pdfleet.spec import SpecError

REQUIRED = ("workload", "model", "input_tokens", "output_tokens", "ttft_s", "tpot_ms")
DEMAND = ("rate_rps", "tokens_per_minute")
OPTIONAL = ("quarter", "ttft_quantile", "overhead_s")
PER_WORKLOAD = ("model", "input_tokens", "output_tokens", "ttft_s", "tpot_ms", "ttft_quantile", "overhead_s")
NUMERIC = ("rate_rps", "tokens_per_minute", "input_tokens", "output_tokens", "ttft_s", "tpot_ms", "overhead_s")
# pydantic path under workloads.NAME -> column
FIELD_COLUMN = {"model": "model", "rate_rps": "rate_rps", "tokens_per_minute": "tokens_per_minute",
                "input_tokens": "input_tokens", "output_tokens": "output_tokens", "slo.ttft_s": "ttft_s",
                "slo.tpot_ms": "tpot_ms", "slo.ttft_quantile": "ttft_quantile", "overhead_s": "overhead_s"}


class Table:
    """The file's rows as checked columns, and how to name a row in an error."""

    def __init__(self, path: Path, where: str):
        self.path, self.where = path, where
        self.csv = path.suffix.lower() != ".parquet"
        self.frame = _read(path, where)

    def at(self, row: int, column: str) -> str:
        line = f" (line {row + 2})" if self.csv else ""
        return f"{self.where} {self.path.name} row {row + 1}{line} column {column}"


def _read(path: Path, where: str):
    import pandas as pd

    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise SpecError(where, f"{path.name}: give a .csv or .parquet file")
    try:
        if suffix == ".csv":
            return pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
        return pd.read_parquet(path)
    except FileNotFoundError:
        raise SpecError(where, f"no file {path}; paths are relative to the fleet.yaml") from None
    except pd.errors.EmptyDataError:
        raise SpecError(where, f"{path.name} is empty; give a header line (workload, model, ...) and a row per "
                        "workload") from None
    except Exception as exc:  # noqa: BLE001 (pandas/pyarrow parser errors have many types)
        raise SpecError(where, f"cannot read {path}: {' '.join(str(exc).split())[:300]}") from None


def _text(column):
    """A column as stripped str, missing values as '' (pandas 3 keeps NaN through astype(str))."""
    return column.astype(object).where(column.notna(), "").astype(str).str.strip()


def _numbers(t: Table, column: str):
    """The column as floats (NaN where empty); a non-number is an error naming its row."""
    import numpy as np
    import pandas as pd

    raw = t.frame[column]
    values = pd.to_numeric(raw, errors="coerce").astype(float)
    empty = raw.isna() if pd.api.types.is_numeric_dtype(raw) else (_text(raw) == "")
    bad = np.flatnonzero(values.isna().to_numpy() & ~empty.to_numpy())
    if len(bad):
        raise SpecError(t.at(int(bad[0]), column), f"not a number (got {raw.iloc[bad[0]]!r})")
    return values.to_numpy()


def load(path: Path, quarters=None, where: str = "workloads_file") -> tuple[dict, "Rows"]:
    """(workloads as fleet.yaml dicts, Rows: renames a later error's YAML path to the file row and column)."""
    import numpy as np
    import pandas as pd

    t = Table(path, where)
    f = t.frame
    f.columns = [str(c).strip() for c in f.columns]
    unknown = [c for c in f.columns if c not in (*REQUIRED, *DEMAND, *OPTIONAL)]
    if unknown:
        raise SpecError(f"{where} {path.name}", f"unknown column {unknown[0]!r}; columns are "
                        f"{', '.join((*REQUIRED, *DEMAND, *OPTIONAL))}")
    missing = [c for c in REQUIRED if c not in f.columns]
    if missing or not any(c in f.columns for c in DEMAND):
        need = missing[0] if missing else "rate_rps or tokens_per_minute"
        raise SpecError(f"{where} {path.name}", f"missing column {need}; it needs "
                        f"{', '.join(REQUIRED)} and rate_rps or tokens_per_minute")
    if len(f) == 0:
        raise SpecError(f"{where} {path.name}", "has no rows")
    names = _text(f["workload"])
    empty = np.flatnonzero((names == "").to_numpy())
    if len(empty):
        raise SpecError(t.at(int(empty[0]), "workload"), "empty workload name")
    cols = {c: _numbers(t, c) for c in NUMERIC if c in f.columns}
    for c in ("input_tokens", "output_tokens"):
        frac = np.flatnonzero(np.isfinite(cols[c]) & (cols[c] != np.round(cols[c])))
        if len(frac):
            raise SpecError(t.at(int(frac[0]), c), f"must be a whole number of tokens (got {cols[c][frac[0]]:g})")
    quarter = _text(f["quarter"]) if "quarter" in f.columns else None
    if quarter is not None and (quarter == "").all():
        quarter = None
    keys = pd.DataFrame({"workload": names, "quarter": quarter if quarter is not None else ""})
    dup = np.flatnonzero(keys.duplicated().to_numpy())
    if len(dup):
        what = "workload and quarter" if quarter is not None else "workload (add a quarter column for per-quarter demand)"
        raise SpecError(t.at(int(dup[0]), "workload"), f"a second row for the same {what}")
    if quarter is not None:
        blank = np.flatnonzero((quarter == "").to_numpy())
        if len(blank):
            raise SpecError(t.at(int(blank[0]), "quarter"), "empty quarter; give one on every row or none")
        if isinstance(quarters, list):
            unknown = np.flatnonzero(~quarter.isin([str(q) for q in quarters]).to_numpy())
            if len(unknown):
                raise SpecError(t.at(int(unknown[0]), "quarter"), f"{quarter.iloc[unknown[0]]!r} is not a planning "
                                f"quarter; use one of {quarters}")
    # rows of one workload: codes 0..W-1 in first-seen order; first[k] = its first row
    codes, _ = pd.factorize(names)
    first = np.unique(codes, return_index=True)[1]
    ref = first[codes]  # each row's workload's first row
    for c in PER_WORKLOAD:
        if c in f.columns and quarter is not None:
            v = cols[c] if c in cols else _text(f[c]).to_numpy()
            same = (v == v[ref]) | (pd.isna(v) & pd.isna(v[ref]))
            bad = np.flatnonzero(~same)
            if len(bad):
                raise SpecError(t.at(int(bad[0]), c), f"differs from the first row of workload {names.iloc[bad[0]]!r}; "
                                "a workload's model, lengths and SLOs are one value for all its quarters")
    # demand: rate_rps or tokens_per_minute on every row, the same one for all rows of a workload
    rate = np.isfinite(cols["rate_rps"]) if "rate_rps" in cols else np.zeros(len(f), bool)
    tpm = np.isfinite(cols["tokens_per_minute"]) if "tokens_per_minute" in cols else np.zeros(len(f), bool)
    for bad, col, msg in ((~rate & ~tpm, "rate_rps", "give rate_rps or tokens_per_minute on every row"),
                          (rate & tpm, "tokens_per_minute", "give rate_rps or tokens_per_minute, not both"),
                          (rate != rate[ref], "rate_rps" if not rate[ref].all() else "tokens_per_minute",
                           "this workload gives the other demand column on its first row; use one of rate_rps or "
                           "tokens_per_minute for all its quarters")):
        rows = np.flatnonzero(bad)
        if len(rows):
            raise SpecError(t.at(int(rows[0]), col), msg)
    demand = np.where(rate, cols.get("rate_rps", 0.0), cols.get("tokens_per_minute", 0.0))
    return _workloads(t, names, quarter, demand, rate, cols, codes, first)


def _workloads(t: Table, names, quarter, demand, rate, cols, codes, first) -> tuple[dict, "Rows"]:
    """fleet.yaml workload dicts (per-quarter maps where a quarter column is given) and where each came from."""
    import numpy as np

    f = t.frame
    name_list = names.to_numpy()[first].tolist()
    if quarter is None:
        values = demand[first].tolist()
    else:  # rows grouped by workload, in file order within each: {quarter: demand}
        order = np.argsort(codes, kind="stable")
        bounds = np.searchsorted(codes[order], np.arange(len(first) + 1))
        qs, ds = quarter.to_numpy()[order].tolist(), demand[order].tolist()
        values = [dict(zip(qs[lo:hi], ds[lo:hi])) for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist())]
    quantile = _text(f["ttft_quantile"]).to_numpy()[first].tolist() if "ttft_quantile" in f.columns else None
    model = _text(f["model"]).to_numpy()[first].tolist()
    pick = {c: cols[c][first].tolist() for c in cols}
    overhead = pick.get("overhead_s")
    field = np.where(rate[first], "rate_rps", "tokens_per_minute").tolist()
    out = {}
    for k, name in enumerate(name_list):
        slo = {"ttft_s": pick["ttft_s"][k], "tpot_ms": pick["tpot_ms"][k]}
        if quantile is not None and quantile[k] != "":
            slo["ttft_quantile"] = quantile[k] if quantile[k] == "mean" else _float(quantile[k])
        w = {"model": model[k], "input_tokens": _int(pick["input_tokens"][k]),
             "output_tokens": _int(pick["output_tokens"][k]), "slo": slo, field[k]: values[k]}
        if overhead is not None and overhead[k] == overhead[k]:
            w["overhead_s"] = overhead[k]
        out[name] = w
    return out, Rows(t, names, quarter, first)


def _int(x: float):
    return int(x) if x == x else None  # NaN stays missing: pydantic says the field is required


def _float(text: str):
    try:
        return float(text)
    except ValueError:
        return text  # pydantic names it


class Rows:
    """Where each workload of the file came from, to name rows in errors raised later (pydantic,
    cross-references), which speak of YAML paths like workloads.NAME.slo.ttft_s."""

    def __init__(self, table: Table, names, quarter, first):
        self.table, self.names, self.quarter = table, names, quarter
        self.first = dict(zip(names.to_numpy()[first].tolist(), first.tolist()))

    def _row(self, name: str, quarter: str) -> int | None:
        if self.quarter is None:
            return None
        hit = (self.names == name).to_numpy() & (self.quarter == quarter).to_numpy()
        return int(hit.argmax()) if hit.any() else None

    def rename(self, spec_path: str) -> str | None:
        if not spec_path.startswith("workloads."):
            return None
        rest = spec_path[len("workloads."):]
        for name in _prefixes(rest, self.first):
            field = rest[len(name) + 1:]
            base, _, sub = field.partition(".")
            row = self.first[name]
            if base in DEMAND:
                column = base
                row = self._row(name, sub) if sub else row  # a per-quarter entry: that quarter's row
                row = self.first[name] if row is None else row
            else:
                column = FIELD_COLUMN.get(field, FIELD_COLUMN.get(base, "workload"))
            return self.table.at(row, column)
        return None


def _prefixes(rest: str, names: dict):
    """Workload names that `rest` starts with (names may contain dots), longest first."""
    parts = rest.split(".")
    for k in range(len(parts), 0, -1):
        name = ".".join(parts[:k])
        if name in names:
            yield name
