"""Parameter counts and resident weight bytes per engine and MoE backend (gptoss-facts.md §1)."""

from __future__ import annotations

import math

from pydantic import BaseModel

from gptoss_deploy.models.spec import ArchConfig

MXFP4_BYTES_PER_PARAM = 17 / 32  # 32 e2m1 values (16 bytes) + one e8m0 scale byte
# vLLM pads MoE weights per kernel (vllm/model_executor/layers/quantization/mxfp4.py create_weights):
# (hidden multiple, intermediate multiple).
MOE_PADDING = {"marlin": (256, 128), "triton": (256, 64), "flashinfer": (256, 256), "cutlass": (128, 128),
               "aiter": (256, 256), "none": (1, 1)}


def _round_up(value: int, multiple: int) -> int:
    return math.ceil(value / multiple) * multiple


class ParamCounts(BaseModel):
    """Parameters by component (biases included)."""

    attention: int
    router: int
    experts: int
    expert_biases: int
    norms: int
    embedding: int
    lm_head: int

    @property
    def total(self) -> int:
        """All parameters."""
        return (self.attention + self.router + self.experts + self.expert_biases + self.norms
                + self.embedding + self.lm_head)

    @property
    def non_expert(self) -> int:
        """Parameters kept in BF16 by MXFP4 checkpoints (attention, router, norms, embeddings, biases)."""
        return self.total - self.experts


def count_params(arch: ArchConfig, hidden_pad: int = 1, inter_pad: int = 1) -> ParamCounts:
    """Count parameters; the paddings size expert matrices as a MoE kernel stores them."""
    h, layers = arch.hidden_size, arch.num_hidden_layers
    q_width = arch.num_attention_heads * arch.head_dim
    kv_width = arch.num_key_value_heads * arch.head_dim
    attention = (h * q_width + q_width) + 2 * (h * kv_width + kv_width) + (q_width * h + h) + arch.num_attention_heads
    experts = arch.num_local_experts
    hp, ip = _round_up(h, hidden_pad), _round_up(arch.intermediate_size, inter_pad)
    router = (h * experts + experts) if arch.is_moe else 0
    expert_weights = experts * (hp * 2 * ip + ip * hp)
    expert_biases = experts * (2 * ip + hp)
    embedding = arch.vocab_size * h
    return ParamCounts(
        attention=attention * layers, router=router * layers, experts=expert_weights * layers,
        expert_biases=expert_biases * layers, norms=(2 * h) * layers + h, embedding=embedding,
        lm_head=0 if arch.tie_word_embeddings else embedding,
    )


def weight_bytes(arch: ArchConfig, quantization: str, moe_backend: str = "none") -> int:
    """Resident weight bytes on one device before any parallel split.

    MXFP4 checkpoints keep experts at 4.25 bits and everything else in BF16; BF16 checkpoints are 2 bytes/param.
    """
    hidden_pad, inter_pad = MOE_PADDING.get(moe_backend, (1, 1)) if quantization == "mxfp4" else (1, 1)
    counts = count_params(arch, hidden_pad, inter_pad)
    if quantization == "mxfp4":
        return int(counts.experts * MXFP4_BYTES_PER_PARAM) + 2 * counts.non_expert
    bytes_per_param = {"fp8": 1, "other": 2}.get(quantization, 2)
    return counts.total * bytes_per_param


def weight_bytes_per_rank(arch: ArchConfig, quantization: str, moe_backend: str, tp: int) -> int:
    """Weights on one tensor-parallel rank: experts, attention and lm_head split; embedding split by vocab."""
    total = weight_bytes(arch, quantization, moe_backend)
    if tp <= 1:
        return total
    counts = count_params(arch)
    replicated = 2 * (counts.norms + counts.router)  # norms and router weights are replicated on every rank
    return (total - replicated) // tp + replicated


def active_bytes_per_token(arch: ArchConfig, quantization: str) -> int:
    """Bytes read per decoded token: attention + active experts + lm_head (embedding lookup is negligible)."""
    counts = count_params(arch)
    per_expert = counts.experts // max(arch.num_local_experts, 1)
    expert_bytes = MXFP4_BYTES_PER_PARAM if quantization == "mxfp4" else 2
    active_experts = per_expert * arch.num_experts_per_tok
    return int(active_experts * expert_bytes) + 2 * (counts.attention + counts.lm_head + counts.router)
