"""manifest.json records what a plan came from: every input file's sha256, the resolved spec, versions,
device, solver, bound and gap, timings per stage, row counts by status."""

import hashlib
import json
import shutil

import jax
import yaml
from click.testing import CliRunner

from pdfleet.calibrate import DEFAULT_CALIBRATION
from pdfleet.cli import main

from conftest import tiny_fleet


def _fleet_with_files(tmp_path, tpot_fast=20):
    doc = tiny_fleet(**{"skus": ["H100-SXM"], "profiles.0.sku": "H100-SXM", "profiles.1.sku": "H100-SXM",
                        "profiles.1.gpus_per_instance": 8, "profiles.0.decode.0.tpot_ms.0": tpot_fast})
    (tmp_path / "profiles").mkdir(exist_ok=True)
    (tmp_path / "profiles" / "p.yaml").write_text(yaml.safe_dump(doc.pop("profiles")))
    shutil.copy(DEFAULT_CALIBRATION, tmp_path / "cal.json")
    doc["profile_files"] = ["profiles/p.yaml"]
    doc["planning"]["calibration"] = "cal.json"
    doc["planning"]["roofline"] = False
    (tmp_path / "fleet.yaml").write_text(yaml.safe_dump(doc))
    return tmp_path / "fleet.yaml"


def _run(tmp_path, fleet):
    res = CliRunner().invoke(main, ["optimize", str(fleet), "-o", str(tmp_path / "out"), "-q"])
    assert res.exit_code == 0, res.output
    return json.loads((tmp_path / "out" / "manifest.json").read_text())


def test_manifest_hashes_every_input_file_and_records_the_run(tmp_path):
    fleet = _fleet_with_files(tmp_path)
    m = _run(tmp_path, fleet)
    files = {f["role"]: f for f in m["input_files"]}
    assert list(files) == ["fleet", "profile_files[0]", "planning.calibration"]
    for f in files.values():
        assert f["sha256"] == hashlib.sha256(open(f["path"], "rb").read()).hexdigest()
    assert files["fleet"]["sha256"] == m["input_sha256"]
    # the resolved spec carries the catalog's fields of a sku named only by name
    h100 = m["resolved_spec"]["skus"]["H100-SXM"]
    assert h100["memory_gib"] == 80 and h100["price_usd_per_gpu_hour"] > 0
    assert m["versions"]["jax"] == jax.__version__ and m["versions"]["jaxlib"]
    assert m["device"]["backend"] == jax.default_backend() and m["device"]["kind"]
    assert m["solver"] in ("exact", "lagrangian", "milp") and m["gap"] is not None
    assert m["lower_bound_usd_per_hour"] <= m["cost_usd_per_hour"] * (1 + 1e-9)
    for stage in ("load_s", "roofline_s", "capacity_s", "problem_s", "search_s", "tables_s", "total_s"):
        assert m["timings_s"][stage] >= 0
    assert sum(m["status_counts"].values()) == m["rows"]["plan"] == 2 * 2
    assert {r: sum(c.values()) for r, c in m["status_counts_by_role"].items()} == {"prefill": 2, "decode": 2}


def test_changing_a_pulled_in_file_changes_only_its_hash(tmp_path):
    first = {f["role"]: f["sha256"] for f in _run(tmp_path, _fleet_with_files(tmp_path))["input_files"]}
    second = {f["role"]: f["sha256"] for f in _run(tmp_path, _fleet_with_files(tmp_path, 21))["input_files"]}
    assert first["profile_files[0]"] != second["profile_files[0]"]
    assert first["fleet"] == second["fleet"] and first["planning.calibration"] == second["planning.calibration"]
