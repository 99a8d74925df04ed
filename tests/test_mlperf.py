"""Offline system throughput (pdfleet.perf.offline, predicted.offline_layouts) and the MLPerf Offline acceptance:
llama2-70b on 8x H100, H200, B200 and MI300X predicted within 20 % and ranked by tokens/s per dollar as measured."""

import pytest
from jax import enable_x64

from pdfleet import catalog, measured, measured_sources as ms, predicted
from pdfleet.perf import offline, roofline

EFF = roofline.Efficiency(0.5, 0.8, 0.7, 0.01, 0.005, 5e-6, 1e-4, 1e-5, 0.0, 0.4)
HAVE_DATA = (measured.DEFAULT_PERF_DIR / "mlperf_inference_v5.1_llm.csv").exists()


def test_offline_tokens_per_s_is_batch_times_output_over_e2e():
    skus, models = catalog.load_skus(), catalog.load_models()
    shape = roofline.model_shape_from_catalog(models["llama-2-70b"], weight_dtype="fp8", kv_dtype="fp8", tp=2)
    hw = roofline.hardware_from_sku(skus["H200-SXM"], 2, "fp8")
    with enable_x64():
        e2e = float(roofline.e2e_latency_s(512.0, 256.0, 290.0, shape, hw, EFF))
        one = float(offline.instance_tokens_per_s(512.0, 256.0, 290.0, shape, hw, EFF))
        four = float(offline.system_tokens_per_s(4, 512.0, 256.0, 290.0, shape, hw, EFF))
    assert one == pytest.approx(512 * 290 / e2e, rel=1e-12)
    assert four == pytest.approx(4 * one, rel=1e-12)


def test_offline_layouts_follow_the_rule():
    """TP 1, 2, 4, 8 on 8 H100s for fp8 llama-2-70b: instances = 8 / tp, the batch is trtllm_running_batch of
    the KV capacity, every layout is predicted; the best is the one with the most tokens/s."""
    skus, models = catalog.load_skus(), catalog.load_models()
    model, sku = models["llama-2-70b"], skus["H100-SXM"]
    layouts = predicted.offline_layouts(model, sku, 8, "fp8", "fp8", 256.0, 290.0, EFF, "tensorrt-llm")
    assert [d["tp"] for d in layouts] == [1, 2, 4, 8]
    for d in layouts:
        cap = ms.kv_capacity(model, sku, d["tp"], "fp8", "fp8", 546.0, "tensorrt-llm")
        assert d["instances"] == 8 // d["tp"] and d["batch"] == ms.trtllm_running_batch(cap, 256.0, 290.0)
    best = predicted.best_offline_layout(model, sku, 8, "fp8", "fp8", 256.0, 290.0, EFF, "tensorrt-llm")
    assert best["tokens_per_s"] == max(d["tokens_per_s"] for d in layouts)
    # bf16 weights (138 GB) do not fit one 80 GiB H100: no TP1 layout
    assert [d["tp"] for d in predicted.offline_layouts(model, sku, 8, "bf16", "", 256.0, 290.0, EFF)] == [2, 4, 8]


@pytest.mark.skipif(not HAVE_DATA, reason="shared MLPerf tables not found")
def test_mlperf_offline_acceptance():
    """The issue's acceptance, with the shipped calibration (never fitted on MLPerf rows)."""
    t = predicted.mlperf_offline_check()
    assert sorted(t["sku"]) == sorted(ms.MLPERF_SKUS)
    worst = t.loc[t["error"].abs().idxmax()]
    assert (t["error"].abs() <= 0.2).all(), f"{worst['sku']}: {worst['error']:+.1%}"
    assert (t["measured_rank"] == t["predicted_rank"]).all(), t[["sku", "measured_rank", "predicted_rank"]]
