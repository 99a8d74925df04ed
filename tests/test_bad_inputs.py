"""The bad-input corpus (tests/bad_inputs/cases.yaml) through the CLI: every malformed fleet is refused with exit
2 and one `error:` line naming the YAML path (or file:line:column), what is wrong and what is allowed; no
traceback, nothing written. Also: the JSON Schema accepts the shipped fleets, and -o paths that cannot be a
folder are refused before planning."""

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from pdfleet import spec
from pdfleet.cli import main

from conftest import CONFIGS

HERE = Path(__file__).parent / "bad_inputs"
CASES = yaml.safe_load((HERE / "cases.yaml").read_text())
BASE = yaml.safe_load((HERE / "base.yaml").read_text())
ROOT_USER = hasattr(os, "geteuid") and os.geteuid() == 0


def _steps(dotted: str) -> list:
    """'profiles[0].decode[1].batch' -> ['profiles', 0, 'decode', 1, 'batch']."""
    return [int(k[1:-1]) if k.startswith("[") else k for k in re.findall(r"\[\d+\]|[^.\[\]]+", dotted)]


def _parent(doc, dotted: str):
    *head, last = _steps(dotted)
    for k in head:
        doc = doc[k]
    return doc, last


def build(case: dict, folder: Path) -> Path:
    """Write the case's fleet.yaml (and the files it names) into folder; return the fleet path."""
    fleet = folder / "fleet.yaml"
    for d in case.get("dirs", []):
        (folder / d).mkdir()
    for name, text in case.get("files", {}).items():
        (folder / name).write_text(text)
    if case.get("fleet_is_dir"):
        fleet.mkdir()
        return fleet
    if "latin1" in case:
        fleet.write_bytes(case["latin1"].encode("latin-1"))
        return fleet
    if "text" in case:
        fleet.write_text(case["text"])
        return fleet
    doc = copy.deepcopy(BASE)
    for dotted, value in case.get("set", {}).items():
        node, key = _parent(doc, dotted)
        node[key] = value
    for dotted in case.get("drop", []):
        node, key = _parent(doc, dotted)
        del node[key]
    for dotted, new in case.get("rename", {}).items():
        node, key = _parent(doc, dotted)
        node[new] = node.pop(key)
    fleet.write_text(yaml.safe_dump(doc, sort_keys=False))
    return fleet


def make_unreadable(path: Path) -> None:
    """A file whose reading fails: no read permission, or for root (who reads it anyway) a link to
    /proc/self/mem, whose read fails with an I/O error (EIO), as a failing disk would."""
    if ROOT_USER:
        path.unlink()
        path.symlink_to("/proc/self/mem")
    else:
        path.chmod(0)


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def _check_refusal(code: int, stdout: str, stderr: str, case: dict) -> None:
    assert code == 2, (code, stdout, stderr)
    assert stdout == ""
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"error: {case['expect']}"), lines[0]
    assert case["says"] in lines[0], lines[0]


def test_corpus_is_large_and_its_base_is_valid(tmp_path):
    assert len(CASES) >= 40 and len({c["name"] for c in CASES}) == len(CASES)
    assert spec.load(build({}, tmp_path)).workloads["chat"].slo.tpot_ms == 50


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, case):
    fleet = build(case, tmp_path)
    if "unreadable" in case:
        make_unreadable(tmp_path / case["unreadable"])
    before = _listing(tmp_path)
    # validate: the real command line in its own interpreter
    proc = subprocess.run([sys.executable, "-m", "pdfleet", "validate", str(fleet)], capture_output=True, text=True,
                          cwd=tmp_path)
    _check_refusal(proc.returncode, proc.stdout, proc.stderr, case)
    # optimize: in process (a second interpreter per case would double the corpus's time); an exception that
    # escaped the CLI would show as result.exception other than SystemExit
    result = CliRunner().invoke(main, ["optimize", str(fleet), "-o", str(tmp_path / "out"), "-q"])
    assert isinstance(result.exception, SystemExit), result.exception
    _check_refusal(result.exit_code, result.stdout, result.stderr, case)
    assert _listing(tmp_path) == before


# ---------------------------------------------------------------- the JSON Schema


def _schema_errors(doc) -> list[str]:
    # jsonschema is in the `test` extra (pip install -e .[test]); a venv without it skips the schema tests only
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(spec.json_schema())
    return [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(doc)]


@pytest.mark.parametrize("config", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_shipped_fleets_validate_against_the_schema(config):
    doc = yaml.safe_load((CONFIGS / config).read_text())
    assert _schema_errors(doc) == []
    assert spec.load(CONFIGS / config)  # and against the loader


def test_schema_still_requires_fields_of_entries_not_in_the_catalog():
    doc = yaml.safe_load((HERE / "base.yaml").read_text())
    assert _schema_errors(doc) == []
    del doc["skus"]["fast"]["memory_gib"]  # "fast" is no catalog sku: nothing fills it in
    assert any("memory_gib" in e for e in _schema_errors(doc))
    doc = yaml.safe_load((CONFIGS / "example-fleet.yaml").read_text())
    doc["skus"]["H100-SXM"]["colour"] = "red"  # a catalog entry's overrides are still checked
    assert any("colour" in e for e in _schema_errors(doc))


def test_schema_cli_prints_the_same_schema():
    result = CliRunner().invoke(main, ["schema"])
    assert result.exit_code == 0 and json.loads(result.stdout) == spec.json_schema()


# ---------------------------------------------------------------- output folders that cannot be written


def _out_cases(tmp_path: Path) -> dict[str, Path]:
    regular = tmp_path / "plan.txt"
    regular.write_text("not a folder\n")
    cases = {"/dev/null/x": Path("/dev/null/x"), "a regular file": regular, "under a regular file": regular / "x"}
    if not ROOT_USER:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
        cases["a read-only folder"] = locked / "plans"
    return cases


def test_unwritable_output_folder_is_one_line_before_planning(tmp_path):
    fleet = build({}, tmp_path)
    for what, out in _out_cases(tmp_path).items():
        proc = subprocess.run([sys.executable, "-m", "pdfleet", "optimize", str(fleet), "-o", str(out), "-q"],
                              capture_output=True, text=True, cwd=tmp_path)
        assert proc.returncode == 2, (what, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: cannot write the plan to {out}"), (what, proc.stderr)
        assert "not a folder" in lines[0] or "not writable" in lines[0], lines[0]
    assert (tmp_path / "plan.txt").read_text() == "not a folder\n"
