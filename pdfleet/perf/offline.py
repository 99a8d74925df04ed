"""Offline (max-throughput) output tokens/s of one instance and of a system of identical instances.

An offline benchmark (MLPerf Offline, trtllm-bench, vLLM's benchmark_throughput) hands the engine every
request at once; the engine keeps a running batch of B sequences and, as one finishes, admits the next
(continuous batching). In steady state each request costs its own prefill plus its share of the decode
steps, so the time per B requests is pdfleet.perf.roofline.e2e_latency_s(B, ISL, OSL): the prefill of
B·ISL tokens plus OSL decode steps of B sequences at the mean context ISL + OSL/2 (the same model
pdfleet.calibrate fits to offline rows, kind 'e2e'). Then
    instance tokens/s = B · OSL / e2e_latency_s(B, ISL, OSL)
    system tokens/s   = instances · instance tokens/s
(data-parallel instances share nothing, so the system scales by their count). Shapes: scalars.
"""

from __future__ import annotations

from pdfleet.perf import roofline


def instance_tokens_per_s(batch, input_tokens, output_tokens, model, hw, eff):
    """Output tokens/s of one instance running `batch` sequences of input_tokens in, output_tokens out."""
    return batch * output_tokens / roofline.e2e_latency_s(batch, input_tokens, output_tokens, model, hw, eff)


def system_tokens_per_s(instances, batch, input_tokens, output_tokens, model, hw, eff):
    """Output tokens/s of `instances` identical instances (module docstring)."""
    return instances * instance_tokens_per_s(batch, input_tokens, output_tokens, model, hw, eff)
