"""Each formula against numbers computed by hand (float64 via jax.enable_x64)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdfleet.perf import decode, prefill, queueing, sizing
from pdfleet.perf.memory import GIB, kv_bytes_per_token, weight_bytes

PAPER_B = np.array([10.0, 20, 30, 40, 50, 60])  # float64; jnp keeps it so under enable_x64
PAPER_T = np.array([12.8, 16.4, 18.8, 21.6, 23.9, 26.2])


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def test_sojourn_factor_mean_and_quantiles():
    assert float(queueing.sojourn_factor(0.0)) == 1.0
    assert float(queueing.sojourn_factor(0.9)) == pytest.approx(math.log(10), rel=1e-12)
    assert float(queueing.sojourn_factor(0.99)) == pytest.approx(math.log(100), rel=1e-12)


def test_mm1_eq13_paper_numbers():
    mu = 28309 / 6144
    rate = float(queueing.mm1_max_rate(mu, 1.9, 1.0))
    assert rate == pytest.approx(mu - 1 / 1.9, rel=1e-12)
    assert rate * 6144 == pytest.approx(28309 - 6144 / 1.9, rel=1e-12)  # 25,075.3 tokens/s
    # p90: lambda = mu - ln(10)/T
    assert float(queueing.mm1_max_rate(mu, 1.9, math.log(10))) == pytest.approx(mu - math.log(10) / 1.9)


def test_mm1_infeasible_below_one_service_time():
    mu = 2.0  # service time 0.5 s
    assert float(queueing.mm1_max_rate(mu, 0.5, 1.0)) == 0.0
    assert float(queueing.mm1_max_rate(mu, 0.4, 1.0)) == 0.0
    assert float(queueing.mm1_sojourn_s(mu, 2.0, 1.0)) == math.inf
    assert float(queueing.mm1_sojourn_s(mu, 1.0, 1.0)) == pytest.approx(1.0)


def test_prefill_table_interpolates_and_holds_ends():
    lens, tps = jnp.array([512.0, 1024, 2048, 2049]), jnp.array([8000.0, 10000, 9000, 9000])
    assert float(prefill.max_tokens_per_s(768.0, lens, tps)) == pytest.approx(9000.0)
    assert float(prefill.service_rate_rps(1024.0, lens, tps)) == pytest.approx(10000 / 1024)
    assert float(prefill.max_tokens_per_s(100.0, lens, tps)) == 8000.0
    assert bool(prefill.outside_range(4096.0, 512.0, 2048.0)) and not bool(prefill.outside_range(600.0, 512, 2048))


def test_decode_largest_batch_paper_table():
    b = float(decode.largest_batch_within(20.0, PAPER_B, PAPER_T, 60.0))
    assert b == pytest.approx(30 + 10 * (20 - 18.8) / (21.6 - 18.8), rel=1e-12)  # 34.2857
    assert float(decode.best_batch(20.0, PAPER_B, PAPER_T, 60.0, 1e9)) == 34.0
    assert float(decode.largest_batch_within(30.0, PAPER_B, PAPER_T, 60.0)) == 60.0  # no extrapolation
    assert float(decode.largest_batch_within(12.0, PAPER_B, PAPER_T, 60.0)) == 0.0  # first point misses
    assert float(decode.best_batch(21.6, PAPER_B, PAPER_T, 60.0, 1e9)) == 40.0  # exact hit kept


def test_decode_noisy_table_takes_largest_meeting_batch():
    b, t = jnp.array([1.0, 2, 3, 4]), jnp.array([10.0, 12, 11, 13])
    assert float(decode.largest_batch_within(11.5, b, t, 4.0)) == pytest.approx(3.25)


def test_decode_capacity_and_memory_cap():
    cap = float(decode.capacity_tokens_per_s(34.0, PAPER_B, PAPER_T))
    assert cap == pytest.approx(34 / 0.01992, rel=1e-12)  # 1,706.8 tokens/s
    assert float(decode.best_batch(20.0, PAPER_B, PAPER_T, 60.0, 12.0)) == 12.0
    # Memory cap below the first measured batch: TPOT held at the first point (conservative).
    assert float(decode.capacity_tokens_per_s(5.0, PAPER_B, PAPER_T)) == pytest.approx(5 / 0.0128)
    assert float(decode.capacity_tokens_per_s(0.0, PAPER_B, PAPER_T)) == 0.0


def test_max_batch_memory_by_hand():
    # llama-2-70b bf16 on 4 x 80 GiB at 0.9: (288 GiB - 140e9 B) / (327,680 B x 1280 tokens)
    mem = 4 * 80 * GIB * 0.9
    kv = kv_bytes_per_token(80, 8, 128, 2.0)
    expect = math.floor((mem - 140e9) / (327680 * 1280))
    assert float(decode.max_batch_memory(mem, weight_bytes(70, 2.0), kv, 1280.0)) == expect == 403
    assert float(decode.max_batch_memory(100.0, 200.0, 1.0, 1.0)) == 0.0


def test_operating_batch_solves_littles_law():
    # On the segment [30, 40]: TPOT = 18.8 + 0.28 (B - 30) = 10.4 + 0.28 B; B = r TPOT -> B = 10.4 r / (1 - 0.28 r)
    r = 1600.0 * 1e-3
    expect = 10.4 * r / (1 - 0.28 * r)
    got = float(decode.operating_batch(1600.0, PAPER_B, PAPER_T, 60.0))
    assert got == pytest.approx(expect, rel=1e-9)
    assert float(decode.operating_batch(5000.0, PAPER_B, PAPER_T, 60.0)) == math.inf  # beyond capacity


def test_counts_and_rounding():
    f = sizing.fractional_instances(jnp.array([12.52, 0.0, 3.0]), jnp.array([4.0812, 1.0, 0.0]))
    assert np.allclose(np.asarray(f)[:2], [12.52 / 4.0812, 0.0]) and float(f[2]) == math.inf
    assert float(sizing.round_instances(3.0677, nearest=True)) == 3.0
    assert float(sizing.round_instances(3.0677, nearest=False)) == 4.0
    # float noise (a few ulps of the dtype) is not an instance; a real excess is
    assert float(sizing.round_instances(np.float32(3.0000002), nearest=False)) == 3.0
    assert float(sizing.round_instances(np.float64(3.0 + 2e-15), nearest=False)) == 3.0
    assert float(sizing.round_instances(np.float64(3.0 + 1e-9), nearest=False)) == 4.0
    assert float(sizing.round_instances(2.5, nearest=True)) == 3.0  # half up, not to even
    assert float(sizing.round_instances(3.5, nearest=True)) == 4.0
    assert float(sizing.round_instances(0.2, nearest=True)) == 1.0  # positive demand keeps one instance
    assert float(sizing.round_instances(0.0, nearest=False)) == 0.0
    assert float(sizing.pd_ratio(3.0677, 3.7557)) == pytest.approx(0.8168, abs=1e-4)
    assert math.isnan(float(sizing.pd_ratio(math.nan, 3.0))) and math.isnan(float(sizing.pd_ratio(1.0, 0.0)))


def test_kv_and_weight_bytes():
    assert kv_bytes_per_token(80, 8, 128, 2.0) == 327_680
    assert kv_bytes_per_token(61, 128, 128, 2.0, kv_lora_rank=512, qk_rope_head_dim=64) == 70_272
    assert weight_bytes(671, 1.0) == 671e9


def test_kv_replication_under_tensor_parallelism():
    from pdfleet.perf.memory import kv_replication

    assert kv_replication(8, 128, mla=True) == 8  # MLA latent held whole on every GPU
    assert kv_replication(4, 8, mla=False) == 1  # 8 KV heads split over 4 GPUs
    assert kv_replication(16, 8, mla=False) == 2  # more GPUs than KV heads: each head held twice


def test_covering_table_rule():
    from pdfleet.evaluate import covering_table

    ctx, valid = np.array([600.0, 5000.0, 1.0]), np.array([True, True, False])
    assert int(covering_table(1000.0, ctx, valid)) == 1  # the shortest table at least as long
    assert int(covering_table(100.0, ctx, valid)) == 0
    assert int(covering_table(600.0, ctx, valid)) == 0  # exact match covers
    assert int(covering_table(9000.0, ctx, valid)) == 1  # none covers: the longest
