"""Catalog sanity: required entries and fields, plausible ranges, and byte sizes via perf.memory."""

import subprocess
import sys

import pytest

from pdfleet.catalog import (
    MODEL_OPTIONAL,
    MODEL_REQUIRED,
    SKU_OPTIONAL,
    SKU_REQUIRED,
    load_models,
    load_skus,
)
from pdfleet.perf.memory import DTYPE_BYTES, kv_bytes_per_token, weight_bytes

REQUIRED_SKUS = [
    "A100-SXM-80GB", "A100-SXM-40GB", "H100-SXM", "H100-PCIE", "H200-SXM", "H20", "B200",
    "L40S", "L4", "MI300X", "GH200", "MI250",
]
REQUIRED_MODELS = [
    "llama-3.1-8b", "llama-3.1-70b", "llama-3.1-405b", "llama-2-70b", "qwen3-32b",
    "qwen3-235b-a22b", "deepseek-v3", "deepseek-v3.1", "mixtral-8x7b", "gpt-oss-120b",
    "bloom-176b", "llama-2-7b", "llama-3-8b", "llama-3-70b", "mistral-7b", "qwen2-7b",
    "qwen2-72b", "qwen3-8b", "qwen3-14b", "qwen3-30b-a3b", "llama-3.3-70b", "gpt-oss-20b",
]
MOE_MODELS = [
    "qwen3-235b-a22b", "qwen3-30b-a3b", "deepseek-v3", "deepseek-v3.1", "mixtral-8x7b", "mixtral-8x22b",
    "gpt-oss-120b", "gpt-oss-20b",
]
MLA_MODELS = ["deepseek-v3", "deepseek-v3.1"]


def kv_of(m, dtype=None):
    """KV bytes per token of a catalog model, through the one formula in perf.memory."""
    return kv_bytes_per_token(
        m["layers"], m["kv_heads"], m["head_dim"], DTYPE_BYTES[dtype or m["kv_dtype"]],
        kv_lora_rank=m.get("kv_lora_rank", 0), qk_rope_head_dim=m.get("qk_rope_head_dim", 0),
    )


@pytest.fixture(scope="module")
def skus():
    return load_skus()


@pytest.fixture(scope="module")
def models():
    return load_models()


@pytest.mark.parametrize("name", REQUIRED_SKUS)
def test_sku_present_with_fields(skus, name):
    s = skus[name]
    for f in SKU_REQUIRED:
        assert f in s, f"{name} lacks {f}"
    assert set(s) <= set(SKU_REQUIRED) | set(SKU_OPTIONAL), f"{name}: unknown field"
    assert str(s["source"]).strip() and str(s["source_date"]).strip()
    if "price_usd_per_gpu_hour" in s:
        assert str(s.get("price_source", "")).strip(), f"{name}: price without price_source"


@pytest.mark.parametrize("name", REQUIRED_SKUS)
def test_sku_ranges(skus, name):
    s = skus[name]
    assert 16 <= s["memory_gib"] <= 288
    assert s["gpus_per_node"] in (1, 2, 4, 8)
    assert 50 <= s["tflops_bf16"] <= 5000
    assert 0.2 <= s["hbm_tbps"] <= 10
    assert 16 <= s["link_gbps"] <= 1000
    # Dense FP8 is 2x dense BF16 on every part that has it (checks nobody mixed sparse numbers in).
    if "tflops_fp8" in s:
        assert s["tflops_fp8"] == pytest.approx(2 * s["tflops_bf16"], rel=0.02)
    if "tflops_fp4" in s:
        assert s["tflops_fp4"] == pytest.approx(2 * s["tflops_fp8"], rel=0.02)
    if "price_usd_per_gpu_hour" in s:
        assert 0.1 <= s["price_usd_per_gpu_hour"] <= 20


def test_known_sku_numbers(skus):
    assert skus["H100-SXM"]["tflops_bf16"] == pytest.approx(989.4)
    assert skus["H100-SXM"]["link_gbps"] == 450
    assert skus["A100-SXM-80GB"]["hbm_tbps"] == pytest.approx(2.039)
    assert "tflops_fp8" not in skus["A100-SXM-80GB"]  # Ampere has no FP8
    assert "tflops_fp4" in skus["B200"] and "tflops_fp4" not in skus["H200-SXM"]


@pytest.mark.parametrize("name", REQUIRED_MODELS)
def test_model_present_with_fields(models, name):
    m = models[name]
    for f in MODEL_REQUIRED:
        assert f in m, f"{name} lacks {f}"
    assert set(m) <= set(MODEL_REQUIRED) | set(MODEL_OPTIONAL), f"{name}: unknown field"
    assert "config.json" in m["source"] and str(m["source_date"]).strip()
    assert m["weight_dtype"] in DTYPE_BYTES and m["kv_dtype"] in DTYPE_BYTES


@pytest.mark.parametrize("name", REQUIRED_MODELS)
def test_model_ranges(models, name):
    m = models[name]
    assert 1 <= m["params_b"] <= 1000
    assert 0 < m["active_params_b"] <= m["params_b"]
    assert 16 <= m["layers"] <= 130
    assert 1024 <= m["hidden_size"] <= 20000
    assert m["heads"] % m["kv_heads"] == 0
    assert m["head_dim"] in (64, 128)
    assert 30000 <= m["vocab_size"] <= 260000
    if "experts" in m:
        assert 1 <= m["experts_per_token"] < m["experts"]
    # kv_lora_rank and qk_rope_head_dim come together or not at all
    assert ("kv_lora_rank" in m) == ("qk_rope_head_dim" in m)


@pytest.mark.parametrize("name", MOE_MODELS)
def test_moe_active_below_total(models, name):
    m = models[name]
    assert m["active_params_b"] < m["params_b"]
    assert "experts" in m and "experts_per_token" in m


def test_dense_active_equals_total(models):
    for name, m in models.items():
        if name not in MOE_MODELS:
            assert m["active_params_b"] == m["params_b"], name
            assert "experts" not in m, name


def test_mla_fields(models):
    for name in MLA_MODELS:
        assert models[name]["kv_lora_rank"] == 512
        assert models[name]["qk_rope_head_dim"] == 64
    assert all("kv_lora_rank" not in m for n, m in models.items() if n not in MLA_MODELS)


def test_kv_bytes_per_token(models):
    assert kv_of(models["llama-3.1-70b"], "bf16") == 327_680
    assert kv_of(models["llama-2-70b"], "bf16") == 327_680
    assert kv_of(models["deepseek-v3"], "bf16") == 61 * 576 * 2 == 70_272
    assert kv_of(models["deepseek-v3.1"], "bf16") == 70_272
    assert kv_of(models["bloom-176b"], "bf16") == 2 * 70 * 112 * 128 * 2


def test_weight_bytes(models):
    m = models["llama-3.1-70b"]
    assert weight_bytes(m["params_b"], DTYPE_BYTES["bf16"]) == pytest.approx(141e9, rel=0.01)
    # deepseek-v3 ships fp8: one byte per parameter
    assert weight_bytes(models["deepseek-v3"]["params_b"], DTYPE_BYTES["fp8"]) == pytest.approx(671e9)


def test_loaders_return_copies():
    a = load_skus()
    a["H100-SXM"]["price_usd_per_gpu_hour"] = -1.0
    del a["L4"]
    b = load_skus()
    assert b["H100-SXM"]["price_usd_per_gpu_hour"] > 0 and "L4" in b
    m = load_models()
    m["llama-3.1-8b"]["layers"] = 0
    assert load_models()["llama-3.1-8b"]["layers"] == 32


def test_catalog_does_not_import_jax():
    code = "import sys, pdfleet.catalog as c; c.load_skus(); c.load_models(); print('jax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
