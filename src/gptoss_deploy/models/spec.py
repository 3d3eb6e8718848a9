"""What the planner needs to know about a model: architecture, quantization, files and sizes."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

Quantization = Literal["mxfp4", "bf16", "fp16", "fp8", "other"]
ModelFormat = Literal["safetensors", "gguf"]


class ArchConfig(BaseModel):
    """The architecture fields of config.json (or a GGUF header) that size memory and speed."""

    architecture: str = "GptOssForCausalLM"
    num_hidden_layers: int = Field(gt=0, le=4096)
    hidden_size: int = Field(gt=0, lt=2**31)
    intermediate_size: int = Field(gt=0, lt=2**31)
    num_attention_heads: int = Field(gt=0, lt=2**31)
    num_key_value_heads: int = Field(gt=0, lt=2**31)
    head_dim: int = Field(gt=0, lt=2**31)
    num_local_experts: int = Field(1, ge=1, le=65536)
    num_experts_per_tok: int = Field(1, ge=1, le=65536)
    sliding_window: int | None = Field(None, ge=0, lt=2**31)
    layer_types: list[str] | None = Field(None, max_length=4096)
    vocab_size: int = Field(gt=0, lt=2**31)
    max_position_embeddings: int = Field(gt=0, lt=2**31)
    tie_word_embeddings: bool = False

    def kinds(self) -> list[str]:
        """Per-layer attention kind: 'sliding_attention' or 'full_attention'."""
        if self.layer_types and len(self.layer_types) == self.num_hidden_layers:
            return list(self.layer_types)
        if self.sliding_window and self.architecture == "GptOssForCausalLM":
            return ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(self.num_hidden_layers)]
        return ["full_attention"] * self.num_hidden_layers

    @property
    def num_full_layers(self) -> int:
        """Layers whose KV grows with the context."""
        return self.kinds().count("full_attention")

    @property
    def num_sliding_layers(self) -> int:
        """Layers whose KV is bounded by the sliding window."""
        return self.num_hidden_layers - self.num_full_layers

    @property
    def is_moe(self) -> bool:
        """Mixture of experts (more than one expert per layer)."""
        return self.num_local_experts > 1


class ModelSpec(BaseModel):
    """A model to plan for, from the catalog, a local directory, the Hub or a GGUF file."""

    id: str
    source: Literal["catalog", "local", "hub", "gguf"]
    format: ModelFormat
    quantization: Quantization
    arch: ArchConfig
    arch_key: str | None = Field(None, description="gpt-oss-120b / gpt-oss-20b when recognised; None = generic")
    checkpoint_bytes: int | None = None
    gguf_files: list[str] = Field(default_factory=list)
    gguf_alternative: str | None = None
    official_alternative: str | None = None
    download_exclude: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)

    @property
    def is_gpt_oss(self) -> bool:
        """True for the gpt-oss architecture (harmony format, sinks, MXFP4 MoE)."""
        return self.arch.architecture == "GptOssForCausalLM"
