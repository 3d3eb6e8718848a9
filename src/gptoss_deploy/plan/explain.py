"""`--explain`: every formula with its inputs and result, written from the same constants the planner computes with
(engine_facts.yaml's memory model, the MXFP4 byte size, the speed model), so the text cannot drift from the math."""

from __future__ import annotations

from fractions import Fraction

from gptoss_deploy.hardware.types import GIB
from gptoss_deploy.models.spec import ModelSpec
from gptoss_deploy.plan import throughput, versions
from gptoss_deploy.plan.llamacpp_memory import LlamacppFit
from gptoss_deploy.plan.search import VllmCandidate
from gptoss_deploy.plan.types import Explain, VllmMemory
from gptoss_deploy.plan.vllm_memory import CONTEXT_ROUNDING
from gptoss_deploy.plan.weights import MXFP4_BYTES_PER_PARAM


def _bytes(value: float) -> str:
    """128 KiB, 1.5 MiB, 8 B."""
    for unit, size in (("GiB", GIB), ("MiB", 2**20), ("KiB", 2**10)):
        if value >= size:
            return f"{value / size:g} {unit}"
    return f"{value:g} B"


def _gib(value: float) -> str:
    return f"{value / GIB:.2f} GiB"


def memory_term_rows(m: VllmMemory) -> list[Explain]:
    """vLLM's non-KV terms as its profiling forms them, each with its label and source."""
    return [Explain(name=term.name.replace("_", " "), formula=term.formula, inputs={}, result=_gib(term.bytes),
                    label=term.label, source=term.source) for term in m.terms]


def vllm_rows(model: ModelSpec, c: VllmCandidate) -> list[Explain]:
    """The vLLM memory and KV chain, step by step."""
    m, kv, s = c.memory, c.kv, c.settings
    facts = versions.vllm_facts()
    mxfp4 = Fraction(MXFP4_BYTES_PER_PARAM).limit_denominator(64)
    return [
        Explain(name="weights per rank",
                formula=f"experts x {mxfp4.numerator}/{mxfp4.denominator} B (MXFP4, padded for the MoE kernel) "
                        "+ 2 B x rest, / TP",
                inputs={"moe_backend": s.moe_backend, "quantization": model.quantization, "tp": s.tensor_parallel_size},
                result=_gib(m.weights_bytes)),
        Explain(name="requested memory", formula="ceil(visible x gpu_memory_utilization)",
                inputs={"visible_gib": round(m.visible_bytes / GIB, 2), "util": s.gpu_memory_utilization},
                result=_gib(m.requested_bytes)),
        *memory_term_rows(m),
        Explain(name="KV memory", formula="requested - weights - torch peak - preallocated - non-torch - graphs "
                                          "(or --kv-cache-memory-bytes)",
                inputs={"budget_rule": m.budget_rule}, result=_gib(m.kv_bytes), label="derived"),
        Explain(name="page", formula="block_size x 2 x kv_heads/TP x head_dim x dtype_bytes",
                inputs={"block_size": kv.block_size, "kv_heads": model.arch.num_key_value_heads,
                        "head_dim": model.arch.head_dim, "kv_dtype": s.kv_cache_dtype}, result=f"{kv.page_bytes:,} B"),
        Explain(name="num_blocks", formula="floor(kv_bytes / page / group_size)",
                inputs={"group_size": kv.group_size, "groups": kv.num_groups}, result=f"{kv.num_blocks:,}"),
        Explain(name="blocks per request", formula="cdiv(L,bs) + cdiv(min(window-1+MNBT, L),bs) + 1",
                inputs={"L": s.max_model_len, "mnbt": s.max_num_batched_tokens}, result=f"{kv.blocks_per_request:,}"),
        Explain(name="max concurrency", formula="num_blocks / blocks_per_request", inputs={},
                result=f"{kv.max_concurrency:.2f}x"),
        Explain(name="logged KV size",
                formula="int(concurrency x L)" if kv.log_formula == "concurrency_x_len"
                else "floor(num_blocks / groups) x block_size",
                inputs={"vllm_version": s.version, "new_formula_since": facts.kv_log_formula.new_since},
                result=f"{kv.logged_tokens:,} tokens"),
        Explain(name="largest context that fits", formula=f"binary search on blocks per request (vLLM's auto-fit), "
                f"plans round down to {CONTEXT_ROUNDING}", inputs={"num_blocks": kv.num_blocks},
                result=f"{kv.max_len_that_fits:,} tokens"),
    ]


def vllm_speed_basis(context: int) -> str:
    """How the single-stream vLLM speed is extrapolated."""
    eff = throughput.default_efficiency()
    return (f"vLLM at {context} tokens of context: bytes/(bandwidth x {eff.bandwidth:g}) + "
            f"{eff.step_overhead_s * 1000:g} ms per step, the throughput model's constants fitted on public anchors "
            "(data/throughput.yaml; GB10 120b stock vLLM 33-34 tok/s, NVIDIA/dgx-spark-playbooks#79, among them)")


def llamacpp_rows(fit: LlamacppFit) -> list[Explain]:
    """The llama.cpp memory sum."""
    s = fit.settings
    return [Explain(name="llama.cpp memory", formula="GGUF - n_cpu_moe x experts/layer + KV(full) + KV(SWA) + compute",
                    inputs={"gguf_gib": round(s.model_bytes / GIB, 2), "n_cpu_moe": s.n_cpu_moe,
                            "kv_gib": round(s.kv_bytes / GIB, 2), "swa_gib": round(s.swa_bytes / GIB, 3),
                            "compute_gib": round(s.compute_bytes / GIB, 2)},
                    result=f"{s.gpu_bytes_per_device / GIB:.2f} GiB per device of {s.gpu_budget_per_device / GIB:.2f}")]
