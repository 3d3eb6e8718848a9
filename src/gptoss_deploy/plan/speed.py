"""Expected single-stream decode speed: the bandwidth ceiling, and an expected figure from a fitted model.

ceiling  = bandwidth / bytes read per token (attention + active experts + lm_head + KV at the context)
expected = 1 / (bytes / (bandwidth x bandwidth_efficiency) + step_overhead)
"""

from __future__ import annotations

from gptoss_deploy.models.spec import ModelSpec
from gptoss_deploy.plan.types import Speed
from gptoss_deploy.plan.weights import active_bytes_per_token

# vLLM's bandwidth share and per-step overhead are the throughput model's (data/throughput.yaml, fitted on public
# anchors by bench/throughput_model.py), so the one-stream figure and the load curve's first point agree.
LLAMACPP_EFFICIENCY = 0.85   # Strix Halo llama.cpp 47.4 of 51 tok/s (92%), rounded down (lhl/strix-halo-testing#33)
VLLM_ANCHOR = ("303 tok/s measured: gpt-oss-20b single-stream decode (median TPOT 3.30 ms), 1x H100 80GB HBM3, "
               "vLLM 0.23.0 (docs/measured/h100-vllm-0.23.0.md)")
LLAMACPP_ANCHOR = ("47.4 tok/s measured: gpt-oss-120b tg32, Radeon 8060S (Strix Halo), llama.cpp ROCm "
                   "(https://github.com/lhl/strix-halo-testing/issues/33)")
DEFAULT_RAM_BANDWIDTH_GBS = 60.0  # dual-channel DDR5 class host, for CPU-resident experts (assumption)


def decode_speed(model: ModelSpec, bandwidth_gbs: float, context_tokens: int, kv_bytes_per_token: int,
                 tp: int, bandwidth_efficiency: float, step_overhead_s: float, basis: str) -> Speed:
    """Single-stream decode on `tp` GPUs of `bandwidth_gbs` each, at `context_tokens` of context."""
    per_token = active_bytes_per_token(model.arch, model.quantization) + kv_bytes_per_token * context_tokens
    per_rank = per_token / tp
    ceiling = bandwidth_gbs * 1e9 / per_rank
    expected = 1 / (per_rank / (bandwidth_gbs * 1e9 * bandwidth_efficiency) + step_overhead_s)
    return Speed(bandwidth_gbs=bandwidth_gbs * tp, bytes_per_token=int(per_token), ceiling_tokens_per_s=ceiling,
                 efficiency=expected / ceiling, expected_tokens_per_s=expected, basis=basis, label="extrapolated")


def offload_speed(model: ModelSpec, gpu_bandwidth_gbs: float, cpu_fraction: float, ram_bandwidth_gbs: float) -> Speed:
    """llama.cpp with experts partly on the CPU: the time per token adds the GPU and the CPU parts."""
    per_token = active_bytes_per_token(model.arch, model.quantization)
    seconds = (per_token * (1 - cpu_fraction) / (gpu_bandwidth_gbs * 1e9)
               + per_token * cpu_fraction / (ram_bandwidth_gbs * 1e9))
    ceiling = 1 / seconds
    return Speed(bandwidth_gbs=gpu_bandwidth_gbs, bytes_per_token=per_token, ceiling_tokens_per_s=ceiling,
                 efficiency=LLAMACPP_EFFICIENCY, expected_tokens_per_s=ceiling * LLAMACPP_EFFICIENCY,
                 basis=f"{cpu_fraction:.0%} of active bytes read from host RAM at {ram_bandwidth_gbs:.0f} GB/s "
                       f"(assumed), the rest from GPU memory at {gpu_bandwidth_gbs:.0f} GB/s", label="estimated",
                 anchor=f"efficiency {LLAMACPP_EFFICIENCY:g} from {LLAMACPP_ANCHOR}")
