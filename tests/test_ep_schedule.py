"""How offline trtllm-bench runs of the DEPn rows are scheduled: attention-DP ranks that start their context phases
on their own stall the others (roofline.adp_context_stall_s, TensorRT-LLM's ADP Balance blog), pinned by hand."""

import math

import pytest

from pdfleet import measured_sources as ms, predicted
from pdfleet.perf import roofline

SHAPE = roofline.ModelShape(active_params=10e9, weight_bytes=40e9, kv_bytes_per_token=1e5, layers=10.0,
                            hidden_size=4096.0, attn_dim=4096.0, expert_bytes=30e9, experts=8.0,
                            experts_per_token=2.0, routed_active_params=6e9, moe_layers=10.0)
HW = roofline.Hardware(peak_flops=1e15, hbm_bw=4e12, link_bw=4e11, tp=4.0)
EFF = roofline.Efficiency(0.5, 0.8, 0.7, 0.01, 0.005)


def test_adp_context_stall_by_hand():
    """8 requests of 1000 tokens on DP4/EP4: per GPU F_a = (2·(10 − 6)e9·8000 + 2·10·8·1000²·4096) / 4 FLOP,
    Q_a = 10e9 B of dense weights (tp_a = 1) + 8000·1e5 / 4 B of KV; t_a their 1.5-norm at 0.5 PFLOP/s and 3.2 TB/s,
    and the three other ranks' contexts run after it: 3·t_a."""
    t_c = (2 * 4e9 * 8000 + 2 * 10 * 8 * 1000**2 * 4096) / 4 / (1e15 * 0.5)
    t_m = (10e9 + 8000 * 1e5 / 4) / (4e12 * 0.8)
    t_a = (t_c**1.5 + t_m**1.5) ** (1 / 1.5)
    assert float(roofline.adp_context_stall_s(1000.0, SHAPE, HW, EFF, 4.0, 8.0)) == pytest.approx(3 * t_a, rel=1e-5)
    # DP2 groups of tp_a = 2: half the dense weights per GPU, one other rank waits
    t_m2 = (10e9 / 2 + 8000 * 1e5 / 4) / (4e12 * 0.8)
    t_a2 = (t_c**1.5 + t_m2**1.5) ** (1 / 1.5)
    assert float(roofline.adp_context_stall_s(1000.0, SHAPE, HW, EFF, 2.0, 8.0)) == pytest.approx(t_a2, rel=1e-5)
    assert float(roofline.adp_context_stall_s(1000.0, SHAPE, HW, EFF, 1.0, 8.0)) == 0.0


def test_offline_batch_charges_the_stall_only_without_adp_balance():
    args = (8.0, 1000.0, 500.0, SHAPE, HW, EFF, 4.0, 4.0)
    balanced = float(predicted.ep_offline_batch_s(*args))
    unbalanced = float(predicted.ep_offline_batch_s(*args, adp_balance=0.0))
    assert balanced == float(predicted.ep_offline_batch_s(*args, adp_balance=1.0))
    stall = float(roofline.adp_context_stall_s(1000.0, SHAPE, HW, EFF, 4.0, 8.0))
    assert unbalanced - balanced == pytest.approx(stall, rel=1e-4) and stall > 0
    assert balanced == pytest.approx(float(roofline.ep_prefill_time_s(1000.0, SHAPE, HW, EFF, 4.0, 4.0, 8.0))
                                     + 500.0 * float(roofline.ep_decode_step_s(8.0, 1250.0, SHAPE, HW, EFF, 4.0, 4.0)),
                                     rel=1e-5)


def test_reader_marks_the_rows_run_with_adp_balance():
    """The page's DeepSeek R1 llm_options set attention_dp_config enable_balance; Qwen3 MoE and GPT-OSS do not."""
    table, _ = ms.read_trtllm_ep()
    assert set(table["model"]) == {"deepseek-v3", "gpt-oss-120b", "qwen3-235b-a22b"}
    assert (table["adp_balance"] == (table["model"] == "deepseek-v3").astype(float)).all()
    assert math.isclose(table["adp_balance"].sum(), (table["model"] == "deepseek-v3").sum())
