"""A label on every number a plan prints: measured (where, on what), derived (a formula from the engine's source),
extrapolated (from which anchor, by what ratio), estimated, or given (the catalog's or the user's figure). Pure."""

from __future__ import annotations

from gptoss_deploy import data
from gptoss_deploy.hardware.types import GIB, Gpu, Host
from gptoss_deploy.models.spec import ModelSpec
from gptoss_deploy.plan.types import Figure, KvPrediction, LlamacppSettings, Speed, VllmMemory, VllmSettings

LLAMACPP_SOURCE = "https://github.com/ggml-org/llama.cpp/tree/b11434 (src/llama-context.cpp, src/llama-kv-cache-iswa.cpp)"


def vllm_source(version: str, path: str) -> str:
    """A vLLM source file at the release's tag."""
    return f"https://github.com/vllm-project/vllm/blob/v{version}/{path}"


def arch_source(model: ModelSpec) -> str:
    """Where the model's parameter counts come from."""
    if model.arch_key and model.arch_key in data.model_catalog().architectures:
        return data.model_catalog().architectures[model.arch_key].source
    return f"{model.id}'s config.json"


def gpu_memory_figure(gpu: Gpu, host: Host) -> Figure:
    """The GPU memory the runtime sees: read on this host, the catalog's figure, or the user's description."""
    value = f"{gpu.visible_gib:.2f} GiB"
    if gpu.memory_source == "described":
        return Figure(name="GPU memory visible to the runtime", value=value, label="estimated",
                      basis="the described memory less 0.45 GiB (what CUDA typically keeps)")
    if gpu.key and host.source.startswith(("profile:", "composed:")):
        spec = data.gpu_catalog().gpus[gpu.key]
        label = "given" if spec.visible_gib is None else "measured"
        basis = ("catalog total less 0.45 GiB" if spec.visible_gib is None
                 else "the catalog's figure as the runtime reports it")
        return Figure(name="GPU memory visible to the runtime", value=value, label=label, basis=basis,
                      source=spec.source)
    return Figure(name="GPU memory visible to the runtime", value=value, label="measured",
                  basis=f"read on this host ({gpu.memory_source})")


def speed_figures(speed: Speed) -> list[Figure]:
    """The bandwidth ceiling (derived) and the expected decode speed (with its anchor)."""
    return [
        Figure(name="decode ceiling, one stream", value=f"{speed.ceiling_tokens_per_s:.0f} tok/s", label="derived",
               basis=f"{speed.bandwidth_gbs:.0f} GB/s / {speed.bytes_per_token / 1e9:.2f} GB read per token "
                     "(active experts + attention + lm_head + KV)"),
        Figure(name="decode expected, one stream", value=f"~{speed.expected_tokens_per_s:.0f} tok/s",
               label=speed.label, basis=speed.basis, source=speed.anchor),
    ]


def sequences_figure(settings: VllmSettings) -> Figure:
    """Which max_num_seqs vLLM will use and why: its profiling warms the sampler up for that many sequences."""
    source = vllm_source(settings.version, "vllm/engine/arg_utils.py")
    if settings.max_num_seqs == settings.default_max_num_seqs:
        basis = (f"vLLM {settings.version}'s own default on this device (the batch tier of "
                 "_get_default_max_num_batched_tokens_and_seqs); the flag is left out")
        return Figure(name="max_num_seqs", value=str(settings.max_num_seqs), label="derived", basis=basis,
                      source=source)
    return Figure(name="max_num_seqs", value=str(settings.max_num_seqs), label="given",
                  basis=f"set by the plan or by you (vLLM's default here: {settings.default_max_num_seqs}); the "
                        "sampler warm-up scales with it", source=source)


def vllm_figures(model: ModelSpec, host: Host, settings: VllmSettings, memory: VllmMemory, kv: KvPrediction,
                 speed: Speed | None) -> list[Figure]:
    """Every number a vLLM plan prints, labelled."""
    version = settings.version
    figures: list[Figure] = []
    if host.gpu is not None:
        figures.append(gpu_memory_figure(host.gpu, host))
        figures.append(Figure(name="requested memory", value=f"{memory.requested_bytes / GIB:.2f} GiB", label="derived",
                              basis=f"ceil(visible x {settings.gpu_memory_utilization:g})",
                              source=vllm_source(version, "vllm/v1/worker/gpu_worker.py")))
    figures.append(Figure(name="weights per rank", value=f"{memory.weights_bytes / GIB:.2f} GiB", label="derived",
                          basis=f"{model.id}'s parameter counts x {model.quantization} bytes ({settings.moe_backend} "
                                f"MoE layout) / TP{settings.tensor_parallel_size}",
                          source=arch_source(model)))
    for term in memory.terms:
        if term.label == "not counted" or term.name in ("forward_peak", "sampler_peak", "held"):
            continue
        figures.append(Figure(name=term.name.replace("_", " "), value=f"{term.bytes / GIB:.2f} GiB", label=term.label,
                              basis=term.formula, source=term.source))
    figures.append(sequences_figure(settings))
    kv_source = vllm_source(version, "vllm/v1/core/kv_cache_utils.py")
    kv_label = "given" if memory.kv_from_override else "derived"
    kv_basis = ("--kv-cache-memory-bytes" if memory.kv_from_override
                else "requested - weights - the terms above (" + (memory.budget_rule or "vLLM's profiling") + ")")
    figures += [
        Figure(name="KV cache memory", value=f"{memory.kv_bytes / GIB:.2f} GiB", label=kv_label, basis=kv_basis,
               source=vllm_source(version, "vllm/v1/worker/gpu_worker.py")),
        Figure(name="KV cache size (logged)", value=f"{kv.logged_tokens:,} tokens", label="derived",
               basis="int(concurrency x L)" if kv.log_formula == "concurrency_x_len"
               else "floor(num_blocks / groups) x block_size", source=kv_source),
        Figure(name="maximum concurrency", value=f"{kv.max_concurrency:.2f}x", label="derived",
               basis=f"{kv.num_blocks:,} blocks / {kv.blocks_per_request:,} per {settings.max_model_len:,}-token request",
               source=kv_source),
    ]
    if speed is not None:
        figures += speed_figures(speed)
    return figures


def llamacpp_figures(host: Host, settings: LlamacppSettings, speed: Speed | None) -> list[Figure]:
    """Every number a llama.cpp plan prints, labelled."""
    figures: list[Figure] = []
    if host.gpu is not None:
        figures.append(gpu_memory_figure(host.gpu, host))
    compute_gib = data.engine_facts().llamacpp.compute_buffer_gib
    figures += [
        Figure(name="GGUF weights", value=f"{settings.model_bytes / GIB:.2f} GiB", label="given",
               basis="the GGUF's tensor data (file header, or the catalog's size for a Hub GGUF)"),
        Figure(name="KV cache (full layers)", value=f"{settings.kv_bytes / GIB:.2f} GiB", label="derived",
               basis=f"{settings.n_parallel} slots share -c {settings.n_ctx:,} cells x full layers x 2 x KV heads x "
                     "head_dim x 2 B", source=LLAMACPP_SOURCE),
        Figure(name="KV cache (sliding window)", value=f"{settings.swa_bytes / GIB:.3f} GiB", label="derived",
               basis="per slot min(cells per slot, window + ubatch) padded to 256", source=LLAMACPP_SOURCE),
        Figure(name="compute buffers", value=f"{settings.compute_bytes / GIB:.2f} GiB", label="estimated",
               basis=f"{compute_gib:g} GiB per device at -ub 512 (llama.cpp sizes it at load; not derived)"),
    ]
    if speed is not None:
        figures += speed_figures(speed)
    return figures
