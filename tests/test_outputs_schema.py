"""The output files as a contract: declared schemas, version pins, byte-determinism, Hive partitions, SQL."""

import json

import duckdb
import pandas as pd
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from pdfleet import io
from pdfleet import optimize as opt
from pdfleet import spec
from pdfleet.cli import main
from pdfleet.output import schema

from conftest import CONFIGS, ROOT, tiny_fleet

# Each schema version pins the fingerprint of every file's columns (name, type, nullability, order).
# Changing a column without bumping SCHEMA_VERSION (and adding its line here) fails this test.
PINNED = {
    "1": {"plan": "01bf262a0ea203086f62624e20b4f64a4f7a50f044f6f83db3083586367dcc53",
          "fleet": "902db90b5c75b1787fa92cf8f4841ab223b190f63043ae9e454dee7d64ddc0ef",
          "diff": "07369c36f6263d36074fb3bc4456058496e0352c2b32b366db6359994ea719e9"},
    "2": {"plan": "a5cb746468261ff05568b865460c4b0c4c056a0cbfaed635519f61af6e3e00ad",
          "fleet": "902db90b5c75b1787fa92cf8f4841ab223b190f63043ae9e454dee7d64ddc0ef",
          "diff": "07369c36f6263d36074fb3bc4456058496e0352c2b32b366db6359994ea719e9",
          "simulate": "1994af0533188992c6ad13282d67cb2375ef0b7b35f76eb2aa0039ff68386fd1"},
    "3": {"plan": "db86524af90ca3ec264d3157c4293af8065881d9a79fbbe06744cfe955f96d55",
          "fleet": "902db90b5c75b1787fa92cf8f4841ab223b190f63043ae9e454dee7d64ddc0ef",
          "diff": "07369c36f6263d36074fb3bc4456058496e0352c2b32b366db6359994ea719e9",
          "simulate": "1994af0533188992c6ad13282d67cb2375ef0b7b35f76eb2aa0039ff68386fd1"},
    "4": {"plan": "b48f982b956b74e040224f1cbf714ba17a2cac423d5dde07dfff73606de1b6c6",
          "fleet": "902db90b5c75b1787fa92cf8f4841ab223b190f63043ae9e454dee7d64ddc0ef",
          "diff": "07369c36f6263d36074fb3bc4456058496e0352c2b32b366db6359994ea719e9",
          "simulate": "1994af0533188992c6ad13282d67cb2375ef0b7b35f76eb2aa0039ff68386fd1"},
}


def test_a_column_change_needs_a_new_schema_version():
    now = {name: schema.fingerprint(s) for name, s in schema.SCHEMAS.items()}
    assert schema.SCHEMA_VERSION in PINNED, "new SCHEMA_VERSION: pin its fingerprints in PINNED"
    assert now == PINNED[schema.SCHEMA_VERSION], "columns changed: bump SCHEMA_VERSION and pin the new fingerprints"


def test_docs_list_every_column():
    assert (ROOT / "docs" / "outputs.md").read_text() == schema.markdown(), \
        "regenerate: python -m pdfleet.output.schema > docs/outputs.md"


def test_undeclared_or_null_columns_are_refused():
    frame = pd.DataFrame({"quarter": ["q1"], "sku": ["a"]})
    with pytest.raises(schema.SchemaError, match="missing"):
        schema.to_table(frame, "fleet")


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    """configs/example-fleet.yaml planned once through the CLI, flat and partitioned."""
    flat, parts = tmp_path_factory.mktemp("flat"), tmp_path_factory.mktemp("parts")
    for out, extra in ((flat, []), (parts, ["--partition-by", "quarter"])):
        res = CliRunner().invoke(main, ["optimize", str(CONFIGS / "example-fleet.yaml"), "-o", str(out), "-q", *extra])
        assert res.exit_code == 0, res.output
    return flat, parts


def test_files_carry_the_declared_schema_and_the_manifest_its_version(example):
    flat, _ = example
    for name, declared in ((n, schema.SCHEMAS[n]) for n in ("plan", "fleet")):
        got = pq.read_schema(flat / f"{name}.parquet")
        assert got.remove_metadata().equals(declared.remove_metadata())
        assert got.metadata[b"pdfleet.schema_version"].decode() == schema.SCHEMA_VERSION
    manifest = json.loads((flat / "manifest.json").read_text())
    assert manifest["schema_version"] == schema.SCHEMA_VERSION
    assert len(manifest["run_id"]) == 32 and manifest["created_at"].endswith("+00:00")


def test_same_input_gives_identical_parquet_bytes(tmp_path):
    fleet = spec.from_dict(tiny_fleet())
    outs = []
    for i in range(2):
        r = opt.run(fleet)
        outs.append(tmp_path / f"run{i}")
        io.write_outputs(outs[-1], r.plan, r.fleet, r.manifest)
    for name in ("plan.parquet", "fleet.parquet"):
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes()
    m = [json.loads((o / "manifest.json").read_text()) for o in outs]
    assert m[0]["run_id"] != m[1]["run_id"]


def test_partitioned_layout_reads_back_as_the_flat_files(example):
    flat, parts = example
    assert sorted(p.name for p in (parts / "plan").iterdir()) == [f"quarter=2027Q{i}" for i in range(1, 5)]
    assert not (parts / "plan.parquet").exists()
    for name in ("plan", "fleet"):
        back = ds.dataset(parts / name, format="parquet", partitioning="hive").to_table().to_pandas()
        want = pd.read_parquet(flat / f"{name}.parquet")
        back = back[want.columns].astype({"quarter": "string"})
        keys = ["quarter", "workload", "role"] if name == "plan" else ["quarter", "sku"]
        back = back.sort_values(keys).reset_index(drop=True)
        want = want.astype({"quarter": "string"}).sort_values(keys).reset_index(drop=True)
        pd.testing.assert_frame_equal(back, want, check_dtype=False)


def test_duckdb_cost_per_quarter_equals_the_manifest(example):
    flat, parts = example
    manifest = json.loads((flat / "manifest.json").read_text())["total_cost_usd_per_hour"]
    con = duckdb.connect()
    plan = dict(con.execute(f"SELECT quarter, sum(cost_usd_per_hour) FROM '{flat / 'plan.parquet'}' "
                            "GROUP BY quarter").fetchall())
    fleet = dict(con.execute(f"SELECT quarter, sum(capex_usd_per_hour + opex_usd_per_hour) FROM "
                             f"'{flat / 'fleet.parquet'}' GROUP BY quarter").fetchall())
    hive = dict(con.execute(f"SELECT quarter, sum(cost_usd_per_hour) FROM read_parquet('{parts}/fleet/*/*.parquet', "
                            "hive_partitioning = true) GROUP BY quarter").fetchall())
    assert set(plan) == set(fleet) == set(hive) == set(manifest)
    for q, usd in manifest.items():
        assert plan[q] == pytest.approx(usd, rel=1e-9) and fleet[q] == pytest.approx(usd, rel=1e-9)
        assert hive[q] == pytest.approx(usd, rel=1e-9)
    # a join analysts write: GPUs by sku from the plan rows equal fleet.parquet's
    rows = con.execute(f"""SELECT f.quarter, f.sku, f.gpus, coalesce(p.gpus, 0) FROM '{flat / 'fleet.parquet'}' f
        LEFT JOIN (SELECT quarter, sku, sum(gpus) AS gpus FROM '{flat / 'plan.parquet'}' GROUP BY ALL) p
        USING (quarter, sku)""").fetchall()
    assert rows and all(a == b for _, _, a, b in rows)


def test_files_and_folders_get_the_usual_permissions(example):
    import os

    mask = os.umask(0)
    os.umask(mask)
    flat, parts = example
    for path in (flat / "plan.parquet", flat / "manifest.json", parts / "plan" / "quarter=2027Q1" / "part-0.parquet"):
        assert path.stat().st_mode & 0o777 == 0o666 & ~mask, path
    assert (parts / "plan").stat().st_mode & 0o777 == 0o777 & ~mask


def test_unexplained_nulls_flags_a_nan_or_inf_on_a_served_row_only():
    import numpy as np
    import pandas as pd

    from pdfleet.output import schema as sch

    frame = pd.DataFrame({
        "role": ["prefill", "decode", "decode", "decode"], "status": ["ok", "ok", "ok", "no_profile"],
        "source": ["roofline", "profile", "roofline", "roofline"], "engine": [None] * 4,
        "runner_up": ["a/1", None, "b/2", None], "runner_up_extra_usd_per_hour": [1.0, np.nan, 2.0, np.nan],
        "prediction_error": [0.1, np.nan, 0.2, np.nan], "predicted_ttft_s": [0.5, np.nan, np.nan, np.nan],
        "predicted_tpot_ms": [np.nan, 30.0, 31.0, np.nan], "decode_batch": [np.nan, 4.0, 5.0, np.nan],
        "decode_batch_max": [np.nan, 8.0, 9.0, np.nan], "decode_table": [None, "t", "t", None],
        "capacity_rps": [1.0, 2.0, 3.0, np.nan]})
    assert sch.unexplained_nulls(frame, "plan") == {}  # by-design nulls, and anything on a row not served
    frame.loc[2, "capacity_rps"] = np.inf
    frame.loc[0, "predicted_ttft_s"] = np.nan
    frame.loc[2, "prediction_error"] = np.nan  # a roofline row must carry its error
    assert sch.unexplained_nulls(frame, "plan") == {"capacity_rps": 1, "predicted_ttft_s": 1, "prediction_error": 1}
    fleet = pd.DataFrame({"sku": ["x", "y"], "inventory_gpus": [np.nan, np.nan], "gpus": [1.0, 2.0]})
    assert sch.unexplained_nulls(fleet, "fleet", lambda s: s == "y") == {"inventory_gpus": 1}
