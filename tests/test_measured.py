"""Readers of the measured tables: row counts, units, mappings, and the plain CSV format."""

import numpy as np
import pandas as pd
import pytest

from pdfleet import measured
from pdfleet.measured import EXTRA_COLUMNS, TIDY_COLUMNS

PERF = measured.DEFAULT_PERF_DIR
pytestmark = pytest.mark.skipif(
    not (PERF / "splitwise_perf_model.csv").exists(), reason=f"shared measured data not found in {PERF}"
)


def _tidy(df):
    assert list(df.columns) == TIDY_COLUMNS + EXTRA_COLUMNS
    assert set(df["kind"]) <= {"prefill", "decode", "e2e"}
    assert (df["time_s"] > 0).all() and (df["batch"] > 0).all() and (df["tp"] >= 1).all()


def test_splitwise_rows_and_units():
    df = measured.read_splitwise()
    _tidy(df)
    # 8 (model, sku, tp) groups; 13 prompt/batch points for prefill, 19 for decode;
    # dropped configurations: llama-2-70b TP2 batch 64 (A100 and H100) and TP2 batch 32 (A100).
    assert (df["kind"] == "prefill").sum() == 8 * 13 - 3
    assert (df["kind"] == "decode").sum() == 8 * 19 - 3
    assert set(df["sku"]) == {"A100-SXM-80GB", "H100-SXM"}
    assert set(df["model"]) == {"llama-2-70b", "bloom-176b"}
    assert set(df["engine"]) == {"unspecified"} and set(df["source"]) == {"splitwise"}
    pick = df[
        (df["model"] == "llama-2-70b") & (df["sku"] == "H100-SXM") & (df["tp"] == 4)
        & (df["batch"] == 1) & (df["input_tokens"] == 512)
    ]
    prefill = pick[pick["kind"] == "prefill"]
    assert len(prefill) == 1
    # mean of all 45 repeats (every token_size) of prompt_time, ms → s
    assert prefill["time_s"].iloc[0] == pytest.approx(0.0610, abs=0.0005)
    raw = pd.read_csv(PERF / "splitwise_perf_model.csv")
    sel = raw[
        (raw["model"] == "llama2-70b") & (raw["hardware"] == "h100-80gb") & (raw["tensor_parallel"] == 4)
        & (raw["prompt_size"] == 512) & (raw["batch_size"] == 1)
    ]
    assert len(sel) == 45
    assert prefill["time_s"].iloc[0] == pytest.approx(sel["prompt_time"].mean() / 1e3, rel=1e-12)
    assert prefill["output_tokens"].iloc[0] == 0
    # decode step of prompt 512 / 128 tokens: token_time in ms → s; context = 512 + 128/2
    dec = pick[(pick["kind"] == "decode") & (pick["output_tokens"] == 128)]
    rows128 = sel[sel["token_size"] == 128]
    assert dec["time_s"].iloc[0] == pytest.approx(rows128["token_time"].mean() / 1e3, rel=1e-12)
    assert dec["time_s"].iloc[0] == pytest.approx(0.0296, abs=0.0005)
    assert dec["context_tokens"].iloc[0] == pytest.approx(512 + 64, abs=0.5)
    # dropped: the inconsistent TP2 batch-64 configuration
    assert df[(df["tp"] == 2) & (df["batch"] == 64)].empty


def test_splitwise_power_capped_is_optional():
    base = measured.read_splitwise()
    with_pcap = measured.read_splitwise(include_power_capped=True)
    pcap = with_pcap[with_pcap["sku"] == "H100-SXM-pcap"]
    assert len(pcap) == len(base[base["sku"] == "H100-SXM"])
    # power capping slows the prefill, not the decode step
    h = base[(base["sku"] == "H100-SXM") & (base["kind"] == "prefill")]["time_s"].sum()
    assert pcap[pcap["kind"] == "prefill"]["time_s"].sum() > 1.2 * h


def test_llm_inference_bench_rows_and_mapping():
    df = measured.read_llm_inference_bench()
    _tidy(df)
    assert len(df) == 2627
    assert set(df["kind"]) == {"e2e"}
    assert set(df["engine"]) == {"vllm", "tensorrt-llm", "deepspeed-mii"}  # llama.cpp dropped
    assert set(df["sku"]) == {"A100-SXM-80GB", "H100-SXM", "GH200", "MI300X", "MI250"}
    assert (df["input_tokens"] == df["output_tokens"]).all()
    assert np.allclose(df["context_tokens"], 1.5 * df["input_tokens"])
    assert {"llama-2-70b", "llama-3-8b", "mistral-7b", "mixtral-8x7b", "qwen2-7b", "qwen2-72b"} <= set(df["model"])
    row = df[
        (df["sku"] == "H100-SXM") & (df["engine"] == "tensorrt-llm") & (df["model"] == "llama-2-70b")
        & (df["tp"] == 4) & (df["batch"] == 1) & (df["input_tokens"] == 128)
    ]
    assert row["time_s"].iloc[0] == pytest.approx(2.308812736, rel=1e-6)  # Latency, seconds
    a40 = measured.read_llm_inference_bench(a100_sku="A100-SXM-40GB")
    assert "A100-SXM-40GB" in set(a40["sku"]) and "A100-SXM-80GB" not in set(a40["sku"])


def test_mlenergy_rows_and_units():
    df = measured.read_mlenergy()
    _tidy(df)
    raw = pd.read_csv(PERF / "mlenergy_v3_configs.csv")
    kept = raw[(raw["data_parallel"] == 1) & (raw["architecture"] != "Mamba-Transformer Hybrid")]
    assert len(df) == len(kept) == 493
    assert set(df["kind"]) == {"decode"} and set(df["engine"]) == {"vllm"}
    assert df["context_tokens"].isna().all() and df["input_tokens"].isna().all()
    assert set(df["sku"]) == {"H100-SXM", "B200"}
    assert df["source"].str.startswith("mlenergy-v3:").all()
    # time_s = median ITL (ms) / 1000, batch = avg_batch_size
    r = raw.sort_values("median_itl_ms").iloc[0]
    assert df["time_s"].min() == pytest.approx(r["median_itl_ms"] / 1e3, rel=1e-12)
    fp8 = df[df["weight_dtype"] == "fp8"]
    assert {"qwen3-235b-a22b", "llama-3.1-405b"} <= set(fp8["model"])


def test_plain_csv_round_trip_and_errors(tmp_path):
    src = measured.read_splitwise().head(7)
    p = tmp_path / "mine.csv"
    src[TIDY_COLUMNS].to_csv(p, index=False)
    back = measured.read_csv(p)
    _tidy(back)
    pd.testing.assert_frame_equal(
        back[TIDY_COLUMNS].sort_values(["kind", "batch", "input_tokens"]).reset_index(drop=True),
        src[TIDY_COLUMNS].sort_values(["kind", "batch", "input_tokens"]).reset_index(drop=True),
        check_dtype=False,
    )
    src.drop(columns=["time_s"]).to_csv(p, index=False)
    with pytest.raises(ValueError, match="time_s"):
        measured.read_csv(p)
    src.assign(kind="warmup").to_csv(p, index=False)
    with pytest.raises(ValueError, match="warmup"):
        measured.read_csv(p)


def test_read_all_concatenates_sources():
    df = measured.read_all()
    assert {"splitwise", "llm-inference-bench"} <= set(df["source"])
    assert df["source"].str.startswith("mlenergy-v3:").any()
    assert len(df) == 250 + 2627 + 493


@pytest.mark.parametrize("column,value,why", [("tp", 4.5, "tp must be a whole number"), ("batch", 0, "batch must be"),
                                              ("input_tokens", float("nan"), "need input_tokens"),
                                              ("time_s", -1.0, "time_s must be")])
def test_plain_csv_rejects_rows_a_fit_would_misread(tmp_path, column, value, why):
    from pdfleet import measured

    row = {"model": "llama-3.1-8b", "sku": "H100-SXM", "tp": 1, "engine": "vllm", "kind": "prefill", "batch": 1,
           "input_tokens": 512, "output_tokens": 0, "context_tokens": 512, "time_s": 0.05, "source": "t"}
    good = pd.DataFrame([row, row])
    good.to_csv(tmp_path / "ok.csv", index=False)
    assert len(measured.read_csv(tmp_path / "ok.csv")) == 2
    bad = good.astype({column: float})
    bad.loc[1, column] = value
    bad.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ValueError, match=f"bad.csv:3: .*{why}"):
        measured.read_csv(tmp_path / "bad.csv")
