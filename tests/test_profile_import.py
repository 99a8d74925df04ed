"""Tests for pdfleet.profile_import (vLLM benchmark JSON / CSV -> profile entry)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pdfleet.profile_import import (
    ProfileImportError,
    from_csv,
    from_vllm_json,
    to_yaml,
)

DATA = Path(__file__).parent / "data"
VLLM_DIR = DATA / "vllm_bench"
STEM = "Llama-3.1-8B-Instruct"
FILES = {
    1: VLLM_DIR / f"vllm-infqps-concurrency1-{STEM}-20250601-101500.json",
    8: VLLM_DIR / f"vllm-infqps-concurrency8-{STEM}-20250601-102000.json",
    16: VLLM_DIR / f"vllm-infqps-concurrency16-{STEM}-20250601-102500.json",
    32: VLLM_DIR / f"vllm-infqps-concurrency32-{STEM}-20250601-103000.json",
}
CSV = DATA / "profile_bench.csv"


def _load(c: int) -> dict:
    return json.loads(FILES[c].read_text())


def _write(tmp_path: Path, name: str, rec) -> Path:
    p = tmp_path / name
    p.write_text(json.dumps(rec))
    return p


def _copy_all(tmp_path: Path) -> dict[int, Path]:
    out = {}
    for c, f in FILES.items():
        out[c] = tmp_path / f.name
        shutil.copy(f, out[c])
    return out


# ---------------------------------------------------------------- vLLM JSON


def test_vllm_json_exact_table():
    # given out of order on purpose: the table must come out sorted by batch
    paths = [FILES[16], FILES[1], FILES[32], FILES[8]]
    prof = from_vllm_json(paths, model="llama-3.1-8b", sku="H100-SXM", gpus_per_instance=1)
    assert prof["warnings"] == []
    source = prof.pop("source")
    prof.pop("warnings")
    assert prof == {
        "model": "llama-3.1-8b",
        "sku": "H100-SXM",
        "gpus_per_instance": 1,
        # concurrency-1 run: 8192 tokens / 8 requests = 1024 tokens, mean TTFT 80 ms
        "prefill": {"max_tokens_per_s": 12800.0},
        "decode": [
            {
                # per-run means 1024, 1025, 1024, 1024 -> 1024.25 -> 1024
                "input_tokens": 1024,
                "output_tokens": 256,
                "batch": [1, 8, 16, 32],
                "tpot_ms": [7.1, 8.4, 9.9, 13.2],
            }
        ],
    }
    # source names the files (in batch order), the tool, the model and the run dates
    names = [FILES[c].name for c in (1, 8, 16, 32)]
    assert source.index(names[0]) < source.index(names[1]) < source.index(names[2]) < source.index(names[3])
    assert "vllm bench serve" in source
    assert "meta-llama/Llama-3.1-8B-Instruct" in source
    assert "20250601-101500..20250601-103000" in source


def test_vllm_json_uses_mean_not_median_tpot():
    prof = from_vllm_json(list(FILES.values()), "m", "s", 8)
    medians = [_load(c)["median_tpot_ms"] for c in sorted(FILES)]
    means = [_load(c)["mean_tpot_ms"] for c in sorted(FILES)]
    assert prof["decode"][0]["tpot_ms"] == means != medians


def test_vllm_json_directory_and_keys_are_order_free(tmp_path):
    _copy_all(tmp_path)
    (tmp_path / "x.pytorch.json").write_text("[]")  # side file of --save-result: ignored in a directory
    prof = from_vllm_json(tmp_path, "m", "s", 1)
    assert prof["decode"][0]["batch"] == [1, 8, 16, 32]


def test_vllm_json_appended_results_file(tmp_path):
    # --append-result writes one JSON object per line into one file
    p = tmp_path / "appended.json"
    p.write_text("\n".join(json.dumps(_load(c)) for c in (8, 16, 32)))
    prof = from_vllm_json(p, "m", "s", 1)
    assert prof["decode"][0]["batch"] == [8, 16, 32]
    assert "appended.json#1" in prof["source"]
    # no concurrency-1 run -> no prefill, and a warning saying so
    assert "prefill" not in prof
    assert any("prefill omitted" in w for w in prof["warnings"])


def test_vllm_json_mismatched_lengths(tmp_path):
    files = _copy_all(tmp_path)
    rec = _load(32)
    rec["total_input_tokens"] = int(rec["total_input_tokens"] * 1.25)  # 1280 vs 1024 tokens
    _write(tmp_path, files[32].name, rec)
    with pytest.raises(ProfileImportError) as ei:
        from_vllm_json(list(files.values()), "m", "s", 1)
    msg = str(ei.value)
    assert "input length" in msg and files[32].name in msg and "10%" in msg
    assert "\n" not in msg


def test_yaml_source_stays_on_one_line():
    text = to_yaml(from_vllm_json(list(FILES.values()), "m", "s", 1))
    assert [ln for ln in text.splitlines() if ln.strip().startswith("source:")][0].count(FILES[32].name) == 1


def test_vllm_json_output_length_within_tolerance_is_fine(tmp_path):
    files = _copy_all(tmp_path)
    rec = _load(32)
    rec["total_output_tokens"] = int(rec["total_output_tokens"] * 1.08)  # 8 % < 10 %
    _write(tmp_path, files[32].name, rec)
    prof = from_vllm_json(list(files.values()), "m", "s", 1)
    assert prof["decode"][0]["output_tokens"] == round((256 * 3 + 256 * 1.08) / 4)


def test_vllm_json_duplicate_batch(tmp_path):
    dup = _write(tmp_path, "rerun-concurrency8.json", _load(8))
    with pytest.raises(ProfileImportError) as ei:
        from_vllm_json([FILES[1], FILES[8], dup], "m", "s", 1)
    msg = str(ei.value)
    assert FILES[8].name in msg and dup.name in msg and "batch 8" in msg


@pytest.mark.parametrize("key", ["mean_tpot_ms", "total_input_tokens", "completed", "max_concurrency"])
def test_vllm_json_missing_key_names_file(tmp_path, key):
    rec = _load(16)
    del rec[key]
    bad = _write(tmp_path, "broken-run.json", rec)
    with pytest.raises(ProfileImportError) as ei:
        from_vllm_json([FILES[1], bad], "m", "s", 1)
    msg = str(ei.value)
    assert "broken-run.json" in msg and key in msg and "rerun" in msg
    assert not isinstance(ei.value, KeyError)


def test_vllm_json_null_concurrency_is_rejected(tmp_path):
    rec = _load(16)
    rec["max_concurrency"] = None
    bad = _write(tmp_path, "no-cap.json", rec)
    with pytest.raises(ProfileImportError, match=r"no-cap\.json.*--max-concurrency"):
        from_vllm_json([bad], "m", "s", 1)


def test_vllm_json_bad_files(tmp_path):
    with pytest.raises(ProfileImportError, match="not found"):
        from_vllm_json([tmp_path / "nope.json"], "m", "s", 1)
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    with pytest.raises(ProfileImportError, match=r"garbage\.json: not valid JSON"):
        from_vllm_json([garbage], "m", "s", 1)
    side = _write(tmp_path, "run.pytorch.json", [{"benchmark": {}}])
    with pytest.raises(ProfileImportError, match=r"run\.pytorch\.json.*main result JSON"):
        from_vllm_json([side], "m", "s", 1)
    rec = _load(8)
    rec["mean_tpot_ms"] = "fast"
    wrong = _write(tmp_path, "wrong-type.json", rec)
    with pytest.raises(ProfileImportError, match=r"wrong-type\.json: 'mean_tpot_ms'"):
        from_vllm_json([wrong], "m", "s", 1)


def test_vllm_json_different_models_rejected(tmp_path):
    rec = _load(8)
    rec["model_id"] = "Qwen/Qwen2.5-7B-Instruct"
    other = _write(tmp_path, "qwen-c8.json", rec)
    with pytest.raises(ProfileImportError, match=r"model_id"):
        from_vllm_json([FILES[1], other], "m", "s", 1)


def test_bad_arguments():
    with pytest.raises(ProfileImportError, match="gpus_per_instance"):
        from_vllm_json(list(FILES.values()), "m", "s", 0)
    with pytest.raises(ProfileImportError, match="sku"):
        from_vllm_json(list(FILES.values()), "m", "", 1)
    with pytest.raises(ProfileImportError, match="no benchmark files"):
        from_vllm_json([], "m", "s", 1)


def test_tpot_drop_warns_but_imports(tmp_path):
    files = _copy_all(tmp_path)
    rec = _load(16)
    rec["mean_tpot_ms"] = 7.5  # below 8.4 at batch 8 by > 5 %
    _write(tmp_path, files[16].name, rec)
    prof = from_vllm_json(list(files.values()), "m", "s", 1)
    assert prof["decode"][0]["tpot_ms"] == [7.1, 8.4, 7.5, 13.2]
    drops = [w for w in prof["warnings"] if "TPOT" in w]
    assert len(drops) == 1 and files[16].name in drops[0] and "batch 8" in drops[0]
    # a small dip (< 5 %) is treated as noise
    rec["mean_tpot_ms"] = 8.1
    _write(tmp_path, files[16].name, rec)
    prof = from_vllm_json(list(files.values()), "m", "s", 1)
    assert not [w for w in prof["warnings"] if "TPOT" in w]


def test_unsaturated_run_warnings(tmp_path):
    rec = _load(32)
    rec["request_rate"] = 4.0
    rec["max_concurrent_requests"] = 20
    rec["failed"] = 3
    p = _write(tmp_path, "c32.json", rec)
    prof = from_vllm_json([FILES[1], p], "m", "s", 1)
    text = " | ".join(prof["warnings"])
    assert "request_rate=4.0" in text and "peak concurrency 20" in text and "3 failed" in text


def test_concurrency1_without_ttft_omits_prefill(tmp_path):
    rec = _load(1)
    rec["mean_ttft_ms"] = 0.0  # what vLLM writes when the endpoint did not stream
    p = _write(tmp_path, "c1.json", rec)
    prof = from_vllm_json([p, FILES[8]], "m", "s", 1)
    assert "prefill" not in prof
    assert any("c1.json" in w and "prefill omitted" in w for w in prof["warnings"])


# ---------------------------------------------------------------- CSV


def test_csv_import_paper_table():
    prof = from_csv(CSV, model="deepseek-v3.1", sku="H200", gpus_per_instance=8)
    assert prof["decode"] == [
        {
            "input_tokens": 6144,
            "output_tokens": 512,
            "batch": [10, 20, 30, 40, 50, 60],
            "tpot_ms": [12.8, 16.4, 18.8, 21.6, 23.9, 26.2],
        }
    ]
    assert prof["model"] == "deepseek-v3.1" and prof["sku"] == "H200" and prof["gpus_per_instance"] == 8
    assert "prefill" not in prof  # lowest concurrency is 10, not 1
    assert prof["source"].startswith("CSV benchmark table: profile_bench.csv; file dated ")
    assert len(prof["warnings"]) == 1 and "prefill omitted" in prof["warnings"][0]


def test_csv_prefill_and_errors(tmp_path):
    p = tmp_path / "bench.csv"
    p.write_text(
        "concurrency,mean_ttft_ms,mean_tpot_ms,input_tokens,output_tokens\n"
        "1,250,10.0,2000,200\n"
        "4,300,11.0,2010,200\n"
    )
    prof = from_csv(p, "m", "s", 2)
    assert prof["prefill"] == {"max_tokens_per_s": 8000.0}
    assert prof["decode"][0]["input_tokens"] == 2005
    assert prof["warnings"] == []

    p.write_text("concurrency,mean_tpot_ms,input_tokens\n1,10,2000\n")
    with pytest.raises(ProfileImportError, match=r"bench\.csv: missing column\(s\) mean_ttft_ms, output_tokens"):
        from_csv(p, "m", "s", 1)

    p.write_text(
        "concurrency,mean_ttft_ms,mean_tpot_ms,input_tokens,output_tokens\n"
        "1,250,10.0,2000,200\n"
        "1,260,10.5,2000,200\n"
    )
    with pytest.raises(ProfileImportError, match=r"bench\.csv:2 and bench\.csv:3: both at batch 1"):
        from_csv(p, "m", "s", 1)

    p.write_text(
        "concurrency,mean_ttft_ms,mean_tpot_ms,input_tokens,output_tokens\n"
        "1,250,10.0,2000,200\n"
        "8,260,12.0,2000,400\n"
    )
    with pytest.raises(ProfileImportError, match=r"output length 200 vs 400"):
        from_csv(p, "m", "s", 1)

    p.write_text("concurrency,mean_ttft_ms,mean_tpot_ms,input_tokens,output_tokens\n2.5,,10.0,2000,200\n")
    with pytest.raises(ProfileImportError, match=r"bench\.csv:2: concurrency 2.5 is not an integer"):
        from_csv(p, "m", "s", 1)

    p.write_text("concurrency,mean_ttft_ms,mean_tpot_ms,input_tokens,output_tokens\n4,,,2000,200\n")
    with pytest.raises(ProfileImportError, match=r"bench\.csv:2: empty 'mean_tpot_ms'"):
        from_csv(p, "m", "s", 1)

    with pytest.raises(ProfileImportError, match="not found"):
        from_csv(tmp_path / "missing.csv", "m", "s", 1)


# ---------------------------------------------------------------- YAML


@pytest.mark.parametrize("which", ["json", "csv"])
def test_yaml_round_trip(which):
    if which == "json":
        prof = from_vllm_json(list(FILES.values()), "llama-3.1-8b", "H100-SXM", 1)
    else:
        prof = from_csv(CSV, "deepseek-v3.1", "H200", 8)
    text = to_yaml(prof)
    loaded = yaml.safe_load(text)
    assert isinstance(loaded, list) and len(loaded) == 1
    expected = {k: v for k, v in prof.items() if k != "warnings"}
    assert loaded[0] == expected
    assert list(loaded[0]) == list(expected)  # key order kept
    assert text.startswith("- model:") or text.startswith("# WARNING:")
    for w in prof["warnings"]:
        assert f"# WARNING: {w}" in text
    # scalar lists are written inline, one line each
    assert "batch: [" in text and "tpot_ms: [" in text
    # pasting under a `profiles:` key gives valid YAML with the same entry
    assert yaml.safe_load("profiles:\n" + text)["profiles"][0] == expected


def test_module_does_not_import_jax():
    code = (
        "import sys; import pdfleet.profile_import; "
        "assert 'jax' not in sys.modules, 'jax imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent.parent)
