"""llama.cpp memory: GGUF weights, iSWA KV cache, compute buffers, and --n-cpu-moe to fit the GPUs.

KV (f16): non-SWA layers hold n_ctx cells; SWA layers hold, per slot, min(n_ctx/slots, window + ubatch) cells
padded to 256 (llama_kv_cache_iswa, llama.cpp b11434 source). `-c` is the total context the `-np` slots share: a
plan asks for slots x the per-request context. `--n-cpu-moe N` keeps the experts of the first N layers in RAM.
"""

from __future__ import annotations

from dataclasses import dataclass

from gptoss_deploy import data
from gptoss_deploy.data.schema import LlamacppFacts
from gptoss_deploy.hardware.types import GIB, Host
from gptoss_deploy.models.spec import ModelSpec
from gptoss_deploy.plan.types import LlamacppSettings
from gptoss_deploy.plan.weights import MXFP4_BYTES_PER_PARAM, count_params

AUTO_SLOTS = 4  # llama-server's own `-np -1` (auto) is 4 slots (tools/server/server.cpp, b11434); the planner's cap
# Strix Halo (gfx1151): mmap loads hang above ~20 GB (ROCm/legacy-rocm-build#6182, ggml-org/llama.cpp#15889)
NO_MMAP_ABOVE_BYTES = 20 * 10**9
GPU_BUDGET_FRACTION = 0.95      # leave room for the driver, other processes and fragmentation
RAM_BUDGET_FRACTION = 0.90
KV_BYTES_F16 = 2
SWA_PAD = 256


def _facts() -> LlamacppFacts:
    return data.engine_facts().llamacpp


def expert_bytes_per_layer(model: ModelSpec) -> int:
    """GGUF bytes of one layer's experts (what --n-cpu-moe moves to RAM)."""
    counts = count_params(model.arch)
    per_param = MXFP4_BYTES_PER_PARAM if model.quantization == "mxfp4" else 2
    return int((counts.experts * per_param + counts.expert_biases * 2) / model.arch.num_hidden_layers)


def context_cells(n_ctx: int, n_parallel: int) -> tuple[int, int]:
    """(total cells, cells per slot) llama.cpp makes of `-c n_ctx -np n_parallel` with an explicit -np (kv_unified
    off): n_ctx padded to 256, each sequence gets pad(n_ctx / n_parallel, 256), the total is that times the slots
    (src/llama-context.cpp, b11434)."""
    padded = -(-n_ctx // SWA_PAD) * SWA_PAD
    per_slot = -(-(padded // n_parallel) // SWA_PAD) * SWA_PAD
    return per_slot * n_parallel, per_slot


def kv_bytes(model: ModelSpec, n_ctx: int, n_parallel: int) -> tuple[int, int]:
    """(non-SWA KV bytes, SWA KV bytes) for this context and number of slots."""
    arch = model.arch
    cells, slot_cells = context_cells(n_ctx, n_parallel)
    per_cell_layer = 2 * arch.num_key_value_heads * arch.head_dim * KV_BYTES_F16
    full = arch.num_full_layers * cells * per_cell_layer
    if arch.sliding_window:
        # One SWA stream per slot (kv_unified off: the server's setting with an explicit -np), each padded to 256
        # cells (src/llama-kv-cache-iswa.cpp, b11434: GGML_PAD(min(size, n_swa + n_ubatch), 256)).
        per_slot = min(slot_cells, arch.sliding_window + _facts().default_ubatch)
        cells = n_parallel * -(-per_slot // SWA_PAD) * SWA_PAD
        swa = arch.num_sliding_layers * cells * per_cell_layer
    else:
        swa = 0
    return full, swa


@dataclass(frozen=True)
class LlamacppFit:
    """llama.cpp settings, whether they fit, and a one-line reason."""

    settings: LlamacppSettings
    fits: bool
    why: str


def plan_llamacpp(model: ModelSpec, gguf: str, model_bytes: int, host: Host, n_ctx: int,
                  n_parallel: int = 1) -> LlamacppFit:
    """Settings, whether they fit, and a one-line reason. Chooses the smallest --n-cpu-moe that fits."""
    full, swa = kv_bytes(model, n_ctx, n_parallel)
    compute = int(_facts().compute_buffer_gib * GIB)
    layers = model.arch.num_hidden_layers
    per_layer = expert_bytes_per_layer(model)
    ram = host.ram_bytes
    common = dict(gguf=gguf, n_ctx=n_ctx, n_parallel=n_parallel, model_bytes=model_bytes, kv_bytes=full,
                  swa_bytes=swa, compute_bytes=compute, ram_bytes_available=ram)
    if not host.gpus:
        need = model_bytes + full + swa + compute
        settings = LlamacppSettings(**common, n_gpu_layers=0, n_cpu_moe=0, flash_attn="auto",
                                    gpu_bytes_per_device=0, gpu_budget_per_device=0, cpu_expert_bytes=model_bytes,
                                    ram_bytes_needed=need)
        fits = ram is None or need <= ram * RAM_BUDGET_FRACTION
        have = f"the host has {ram / GIB:.1f} GiB (uses at most {RAM_BUDGET_FRACTION:.0%})" if ram else "RAM unknown"
        return LlamacppFit(settings, fits, f"CPU only: needs {need / GIB:.1f} GiB of RAM; {have}")
    gpu = host.gpu
    assert gpu is not None
    reserve = data.engine_facts().vllm.memory_model.unified_memory_os_reserve_gib * GIB
    per_device_budget = int(gpu.visible_bytes * GPU_BUDGET_FRACTION - (reserve if gpu.unified_memory else 0))
    total_budget = per_device_budget * host.gpu_count
    fixed = full + swa + compute * host.gpu_count
    chosen = None
    for n_cpu_moe in range(layers + 1):
        if gpu.unified_memory and n_cpu_moe:
            break  # unified memory: RAM and GPU memory are the same pool, offloading gains nothing
        if model_bytes - n_cpu_moe * per_layer + fixed <= total_budget:
            chosen = n_cpu_moe
            break
    n_cpu_moe = chosen if chosen is not None else layers
    gpu_need = model_bytes - n_cpu_moe * per_layer + fixed
    ram_need = n_cpu_moe * per_layer
    no_mmap = gpu.arch == "rdna3.5" and model_bytes > NO_MMAP_ABOVE_BYTES
    settings = LlamacppSettings(**common, n_gpu_layers=999, n_cpu_moe=n_cpu_moe, flash_attn="on", no_mmap=no_mmap,
                                gpu_bytes_per_device=gpu_need // host.gpu_count,
                                gpu_budget_per_device=per_device_budget, cpu_expert_bytes=ram_need,
                                ram_bytes_needed=ram_need)
    if chosen is None:
        return LlamacppFit(settings, False, f"even with all {layers} layers' experts in RAM, {gpu_need / GIB:.1f} "
                           f"GiB of attention/KV/buffers exceed {total_budget / GIB:.1f} GiB of GPU memory")
    if ram is not None and ram_need > ram * RAM_BUDGET_FRACTION:
        return LlamacppFit(settings, False, f"--n-cpu-moe {n_cpu_moe} needs {ram_need / GIB:.1f} GiB of RAM for "
                           f"experts, the host has {ram / GIB:.1f} GiB")
    where = f"experts of {n_cpu_moe} layers in RAM ({ram_need / GIB:.1f} GiB)" if n_cpu_moe else "all on GPU"
    return LlamacppFit(settings, True, f"{where}; {gpu_need / GIB:.1f} of {total_budget / GIB:.1f} GiB GPU memory")


def plan_slots(model: ModelSpec, gguf: str, model_bytes: int, host: Host, per_request: int,
               slots: int | None) -> LlamacppFit:
    """`slots` slots of `per_request` tokens (-c = slots x per_request); without `slots`, the most slots up to
    AUTO_SLOTS that fit with no more experts in RAM than one slot needs (concurrency never costs decode speed)."""
    if slots is not None:
        return plan_llamacpp(model, gguf, model_bytes, host, slots * per_request, slots)
    single = plan_llamacpp(model, gguf, model_bytes, host, per_request, 1)
    if not single.fits:
        return single
    for count in range(AUTO_SLOTS, 1, -1):
        fit = plan_llamacpp(model, gguf, model_bytes, host, count * per_request, count)
        if fit.fits and fit.settings.n_cpu_moe <= single.settings.n_cpu_moe:
            return fit
    return single


def gguf_for(model: ModelSpec) -> tuple[str, int] | None:
    """The GGUF llama.cpp would load for this model and its size: the file itself, or the catalog's GGUF
    alternative as `hf:<repo>`; None when there is none."""
    from gptoss_deploy.models import catalog

    if model.format == "gguf":
        return model.id, model.checkpoint_bytes or 0
    if model.gguf_alternative:
        alt = catalog.lookup(model.gguf_alternative)
        if alt and alt.checkpoint_bytes:
            return f"hf:{alt.id}", alt.checkpoint_bytes
    return None
