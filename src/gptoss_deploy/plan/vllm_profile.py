"""vLLM's non-KV GPU memory for gpt-oss, as Worker.determine_available_memory measures it, per vLLM release.

The numbers and version boundaries live in data/vllm_memory.yaml, each with the vLLM source it was read from. In short:

* The budget is ``ceil(total x util) - weights - torch peak - non-torch growth - CUDA-graph estimate`` (from 0.27.1 the
  first three are measured as a free-memory delta plus a transient headroom, which also counts buffers made before
  profiling).
* profile_run runs one forward of MNBT tokens, frees it, then warms the sampler on N = min(MNBT, max_num_seqs) rows:
  ``torch peak = max(forward peak, sampler peak + held tensors)``. With gpt-oss's 201,088-entry vocabulary the sampler
  wins: 38 B per logit entry on the PyTorch sort path (<= 0.16), 14 B plus a Triton buffer from 0.17, 2 B on the V2
  model runner (0.29-0.32), so max_num_seqs moves memory and MNBT barely does.
* CUDA-driver / library memory (and on unified-memory parts, host growth) cannot be derived; those terms are labelled
  ``estimated`` and carry their evidence.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Literal

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from gptoss_deploy import data
from gptoss_deploy.errors import DataError, InputError
from gptoss_deploy.hardware.types import GIB
from gptoss_deploy.models.spec import ArchConfig
from gptoss_deploy.plan.versions import parse_version

Runner = Literal["v1", "v2"]
Label = Literal["derived", "measured", "estimated", "not counted"]
MoeBackend = Literal["triton", "marlin"]

DATA_FILE = "vllm_memory.yaml"
REPO = "https://github.com/vllm-project/vllm/blob"
BLOCK_SIZE = 16
MAX_LOGIT_BIAS_TOKENS = 1024  # LogitBiasState table widths (allowed ids, bias ids, bias values) in MRV2
MAX_STOP_TOKEN_IDS = 128


# ------------------------------------------------------------------------------------------------------------ data
@cache
def facts() -> Mapping[str, Any]:
    """data/vllm_memory.yaml, parsed once per process."""
    import yaml

    try:
        text = resources.files("gptoss_deploy.data").joinpath(DATA_FILE).read_text(encoding="utf-8")
        content = data.safe_yaml(text)
    except (OSError, yaml.YAMLError) as exc:
        raise DataError(f"packaged data file {DATA_FILE} cannot be read: {exc}",
                        hint="reinstall gpt-oss-deploy; this is a bug if it persists") from exc
    if not isinstance(content, dict) or content.get("schema_version") != 1:
        raise DataError(f"packaged data file {DATA_FILE} is malformed (schema_version 1 expected)",
                        hint="reinstall gpt-oss-deploy; this is a bug if it persists")
    return content


def _section(name: str) -> Any:
    try:
        return facts()[name]
    except KeyError:
        raise DataError(f"{DATA_FILE} has no {name!r} section", hint="this is a bug in gpt-oss-deploy") from None


def _in(version: str, spec: str) -> bool:
    try:
        return parse_version(version) in SpecifierSet(spec)
    except InvalidSpecifier as exc:
        raise DataError(f"{DATA_FILE} has a bad version range {spec!r}") from exc


def _entry(section: str, version: str, **match: str) -> Mapping[str, Any]:
    """The entry of a versioned list whose `versions` range holds `version` (last match wins)."""
    found: Mapping[str, Any] | None = None
    for item in _section(section):
        if _in(version, item["versions"]) and all(item.get(k) == v for k, v in match.items()):
            found = item
    if found is None:
        raise InputError(f"vLLM {version} is outside what {DATA_FILE} covers ({section})",
                         hint="gpt-oss needs vLLM 0.10.1 or newer")
    return found


# ------------------------------------------------------------------------------------------------------------ types
@dataclass(frozen=True)
class Term:
    """One part of the non-KV memory: its size in bytes, how it is known, the formula and where it comes from."""

    bytes: int
    label: Label
    formula: str
    source: str

    @property
    def gib(self) -> float:
        """Size in GiB."""
        return self.bytes / GIB


@dataclass(frozen=True)
class CudaGraphPlan:
    """The CUDA graphs vLLM captures for gpt-oss (empty with --enforce-eager)."""

    max_capture_size: int
    piecewise_sizes: tuple[int, ...]
    full_sizes: tuple[int, ...]

    @property
    def num_graphs(self) -> int:
        """PIECEWISE plus FULL graphs captured."""
        return len(self.piecewise_sizes) + len(self.full_sizes)


@dataclass(frozen=True)
class NonKvBreakdown:
    """Everything determine_available_memory subtracts besides the weights, term by term, in bytes per GPU."""

    version: str
    runner: Runner
    budget_rule: str
    sampler_path: str
    num_sampled: int
    forward_peak: Term
    sampler_peak: Term
    held: Term
    torch_peak: Term
    preallocated: Term
    non_torch: Term
    unified_host_buffers: Term
    unified_extra: Term
    cudagraph_estimate: Term
    cudagraph_in_budget: bool
    cudagraphs: CudaGraphPlan

    @property
    def other_bytes(self) -> int:
        """Non-KV memory besides the weights and the CUDA-graph estimate."""
        return (self.torch_peak.bytes + self.preallocated.bytes + self.non_torch.bytes
                + self.unified_host_buffers.bytes + self.unified_extra.bytes)

    @property
    def budget_bytes(self) -> int:
        """Non-KV memory besides the weights that the KV budget loses (graphs included when vLLM subtracts them)."""
        return self.other_bytes + (self.cudagraph_estimate.bytes if self.cudagraph_in_budget else 0)

    def terms(self) -> dict[str, Term]:
        """The terms by name, in the order they combine (torch_peak already contains forward/sampler/held)."""
        return {
            "forward_peak": self.forward_peak, "sampler_peak": self.sampler_peak, "held": self.held,
            "torch_peak": self.torch_peak, "preallocated": self.preallocated, "non_torch": self.non_torch,
            "unified_host_buffers": self.unified_host_buffers, "unified_extra": self.unified_extra,
            "cudagraph_estimate": self.cudagraph_estimate,
        }


@dataclass(frozen=True)
class Lever:
    """What changing one setting does to vLLM's memory split (negative = frees memory / shrinks KV)."""

    name: str
    current: int | float | bool
    alternative: int | float | bool
    non_kv_delta_bytes: int
    kv_delta_bytes: int
    moves_non_kv: bool
    reason: str


# ------------------------------------------------------------------------------------------------------------ rules
def model_runner(version: str) -> Runner:
    """Which GPU model runner profiles gpt-oss in this release (V2 is the default from 0.29.0)."""
    runner = _entry("model_runner", version)["runner"]
    return "v2" if runner == "v2" else "v1"


def budget_rule(version: str) -> Mapping[str, Any]:
    """The composition rule of the non-KV figure for this release (peak + non-torch, or free-delta + headroom)."""
    return _entry("budget_rule", version)


def num_sampled(mnbt: int, max_num_seqs: int) -> int:
    """Rows the sampler warm-up runs on: the dummy batch spreads MNBT tokens over min(MNBT, max_num_seqs) requests."""
    return max(1, min(mnbt, max_num_seqs))


def capture_plan(version: str, mnbt: int, max_num_seqs: int, enforce_eager: bool,
                 full_graphs: bool = True) -> CudaGraphPlan:
    """The CUDA-graph capture sizes for gpt-oss: max = min(MNBT, 1024) (gpt-oss override), FULL decode <= max_num_seqs."""
    if enforce_eager:
        return CudaGraphPlan(0, (), ())
    top = min(mnbt, 1024)
    sizes = [s for s in (1, 2, 4) if s <= top]
    if top >= 8:
        sizes += list(range(8, min(top + 1, 256), 8))
    if top >= 256:
        sizes += list(range(256, top + 1, 16))
    if mnbt <= top and _in(version, ">=0.20.2"):
        sizes.append(mnbt)
    piecewise = tuple(sorted(set(sizes)))
    full = tuple(s for s in piecewise if s <= max_num_seqs) if full_graphs else ()
    return CudaGraphPlan(piecewise[-1] if piecewise else 0, piecewise, full)


def cudagraph_in_budget(version: str, enforce_eager: bool) -> bool:
    """True when vLLM subtracts its CUDA-graph estimate from the KV budget by default (0.20.2 / 0.21.0 on)."""
    graphs = _section("cudagraph")
    return not enforce_eager and _in(version, graphs["estimate_in_budget"])


def cudagraph_estimate(arch: ArchConfig, version: str, plan: CudaGraphPlan) -> Term:
    """The graph-memory estimate, scaled from the one measured figure by layers and graph count (see the YAML)."""
    graphs = _section("cudagraph")
    measured = graphs["measured"]
    if plan.num_graphs == 0:
        return Term(0, "not counted", "--enforce-eager: no graphs", graphs["source"])
    per_layer_graph = measured["gib"] * GIB / (measured["layers"] * (measured["piecewise_graphs"] + measured["full_graphs"]))
    value = int(per_layer_graph * arch.num_hidden_layers * plan.num_graphs)
    when = ("subtracted from the KV budget" if _in(version, graphs["estimate_in_budget"]) else
            "profiled but not subtracted (VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS=0 default)"
            if _in(version, graphs["estimate_exists"]) else "no estimate in this release; graphs are captured after KV")
    formula = (f"{measured['gib']} GiB x {arch.num_hidden_layers}/{measured['layers']} layers x {plan.num_graphs}/"
               f"{measured['piecewise_graphs'] + measured['full_graphs']} graphs ({when})")
    return Term(value, "measured", formula, f"{measured['source']}; scaling: {graphs['scaling'].strip()}")


def num_sms_for(compute_capability: str | None) -> int:
    """SM count used for the Triton top-k/top-p buffer (by compute capability, else the H100 value)."""
    table = _section("num_sms")
    by_cc: Mapping[str, int] = table["by_compute_capability"]
    return int(by_cc.get(compute_capability or "", table["default"]))


def default_flashinfer_sampler(version: str, compute_capability: str | None) -> bool:
    """Whether the FlashInfer top-k/top-p sampler is on by default (installed, enabled and supported)."""
    entry = _entry("sampler_by_version", version)
    if not entry["flashinfer_sampler_default"] or not _in(version, ">=0.21.0"):
        return False
    if compute_capability is None:
        return True
    try:
        cc = Version(compute_capability)
    except InvalidVersion:
        return False
    return Version("8.0") <= cc <= Version("12.1")


def _triton_buffer(rows: int, num_sms: int, vocab: int) -> int:
    programs = min(num_sms, rows)
    return min(1 << max(0, programs - 1).bit_length(), num_sms) * vocab * 4


def _sort_bytes_per_entry(rows: int) -> int:
    per = _section("sampler_paths")["sort"]["bytes_per_entry"]
    return int(per["rows_ge_128"] if rows >= 128 else per["rows_2_to_127"] if rows > 1 else per["rows_1"])


def sampler_peak(version: str, rows: int, vocab: int, tp: int, num_sms: int, flashinfer_sampler: bool,
                 runner: Runner | None = None) -> tuple[int, str, str]:
    """(bytes, path, formula) of the sampler warm-up peak, logits included (N x vocab entries).

    `runner="v1"` on a release whose default is the V2 runner (VLLM_USE_V2_MODEL_RUNNER=0) takes the V1 Triton path.
    """
    entry = _entry("sampler_by_version", version)
    path: str = entry["flashinfer_path"] if flashinfer_sampler else entry["path"]
    if runner == "v1" and path.startswith("v2"):
        path = "triton"
    paths = _section("sampler_paths")
    entries = rows * vocab
    gather = (4 + 2 / tp) if tp > 1 else 0.0
    if path == "sort" or (path == "triton" and rows < paths["triton"]["min_rows"]):
        per = _sort_bytes_per_entry(rows)
        return per * entries, "sort", f"{per} B x {rows} x {vocab} (PyTorch sort of fp32 logits)"
    if path == "triton":
        per = paths["triton"]["bytes_per_entry"]
        buffer = _triton_buffer(rows, num_sms, vocab)
        return (per * entries + buffer, "triton",
                f"{per} B x {rows} x {vocab} + Triton buffer {buffer // (vocab * 4)} x {vocab} x 4 B")
    if path == "flashinfer_v1":
        per = paths["flashinfer_v1"]["bytes_per_entry"]
        return per * entries, "flashinfer_v1", f"{per} B x {rows} x {vocab} (FlashInfer top_k_first)"
    plain_per = max(float(paths["v2_plain"]["bytes_per_entry"]), gather)
    plain = int(plain_per * entries)
    plain_formula = f"{plain_per:g} B x {rows} x {vocab} (bf16 logits{', TP all-gather copy' if tp > 1 else ''})"
    if path == "v2_plain":
        return plain, "v2_plain", plain_formula
    warm = paths["v2_warmup_params"]["bytes_per_entry"]
    if flashinfer_sampler:
        second, how = int(warm["flashinfer"]) * entries, f"{warm['flashinfer']} B x {rows} x {vocab} (FlashInfer)"
    else:
        buffer = _triton_buffer(rows, num_sms, vocab)
        second, how = int(warm["triton"]) * entries + buffer, f"{warm['triton']} B x {rows} x {vocab} + Triton buffer"
    return max(plain, second), "v2_warmup_params", f"max({plain_formula}, {how})"


def forward_peak(arch: ArchConfig, mnbt: int, tp: int, moe_backend: MoeBackend) -> tuple[int, str]:
    """(bytes, formula): live tensors of one MoE block in the MNBT-token profile forward (a lower bound)."""
    h, k, e = arch.hidden_size, arch.num_experts_per_tok, arch.num_local_experts
    inter = arch.intermediate_size / tp
    if moe_backend == "marlin":
        per_token = 2 * (3 * h + k * max(2 * inter, h) + k * inter + e) + 16 * k
        formula = "lower bound T x (2(3H + k max(2I/tp, H) + k I/tp + E) + 16k)"
    else:
        per_token = 2 * (3 * h + k * inter + e) + 16 * k
        formula = "lower bound T x (2(3H + k I/tp + E) + 16k)"
    return int(mnbt * per_token), f"{formula} = {mnbt} x {per_token:.0f} B"


# ------------------------------------------------------------------------------------------------------------ main
def non_kv_breakdown(arch: ArchConfig, version: str, tp: int, mnbt: int, max_num_seqs: int, enforce_eager: bool,
                     unified_memory: bool, *, max_model_len: int = 131072, moe_backend: MoeBackend = "triton",
                     compute_capability: str | None = None, num_sms: int | None = None,
                     flashinfer_sampler: bool | None = None, full_graphs: bool = True,
                     runner: Runner | None = None) -> NonKvBreakdown:
    """vLLM's non-KV memory besides the weights for one GPU (rank), term by term, as `version` measures it.

    `moe_backend` picks the forward formula ("marlin" on Ampere/Ada/consumer Blackwell and pip wheels without
    triton_kernels, "triton" otherwise); `flashinfer_sampler=None` takes the release's default; `num_sms` defaults by
    compute capability. `unified_memory` adds the host-side terms vLLM counts on integrated GPUs (GB10, Thor, Orin).
    `runner` overrides the release's default model runner (VLLM_USE_V2_MODEL_RUNNER).
    """
    if tp < 1 or mnbt < 1 or max_num_seqs < 1:
        raise InputError("tp, max_num_batched_tokens and max_num_seqs must be positive")
    runner = runner or model_runner(version)
    rule = budget_rule(version)
    rows = num_sampled(mnbt, max_num_seqs)
    vocab, hidden = arch.vocab_size, arch.hidden_size
    sms = num_sms if num_sms is not None else num_sms_for(compute_capability)
    use_fi = default_flashinfer_sampler(version, compute_capability) if flashinfer_sampler is None else flashinfer_sampler
    paths = _section("sampler_paths")
    run = _section("profile_run")
    entry = _entry("sampler_by_version", version)

    fwd_bytes, fwd_formula = forward_peak(arch, mnbt, tp, moe_backend)
    forward = Term(fwd_bytes, "derived", fwd_formula, _section("forward_peak")["source"])
    smp_bytes, path, smp_formula = sampler_peak(version, rows, vocab, tp, sms, use_fi, runner)
    sampler = Term(smp_bytes, "derived", smp_formula, f"{paths[path]['source']}; {entry['source']}")
    held_rows = mnbt + (2 if runner == "v1" else 1) * rows
    held = Term(held_rows * hidden * 2, "derived", f"({mnbt} + {held_rows - mnbt}) x {hidden} x 2 B",
                run["source"])
    peak_bytes = max(forward.bytes, sampler.bytes + held.bytes)
    torch_peak = Term(peak_bytes, "derived",
                      f"max(forward {forward.gib:.3f}, sampler {sampler.gib:.3f} + held {held.gib:.3f}) GiB "
                      f"= {'sampler' if sampler.bytes + held.bytes >= forward.bytes else 'forward'}",
                      run["source"])

    pre = _section("preallocated_buffers")
    if rule["counts_preallocated_buffers"]:
        if runner == "v1":
            pre_bytes = max_num_seqs * math.ceil(max_model_len / BLOCK_SIZE) * 4 + mnbt * hidden * 2
            pre_formula = pre["v1"]
        else:
            pre_bytes = max_num_seqs * (4 * vocab + 4 * math.ceil(vocab / 32)
                                        + 3 * MAX_LOGIT_BIAS_TOKENS * 4 + MAX_STOP_TOKEN_IDS * 4)
            pre_formula = pre["v2"]
        preallocated = Term(pre_bytes, "derived", pre_formula, pre["source"])
    else:
        preallocated = Term(0, "not counted", "buffers made before profiling are in no term before 0.27.1",
                            rule["source"])

    nt = _section("non_torch")
    nt_bytes = int(nt["discrete_gib"] * GIB) + (int(nt["tp_extra_gib"] * GIB) if tp > 1 else 0)
    nt_formula = f"{nt['discrete_gib']} GiB" + (f" + {nt['tp_extra_gib']} GiB (TP > 1)" if tp > 1 else "")
    non_torch = Term(nt_bytes, "estimated", f"{nt_formula}: {nt['evidence'].strip()}",
                     nt["source"] + (f"; {nt['tp_source']}" if tp > 1 else ""))

    if unified_memory:
        host = _entry("unified_host_buffers", version, runner=runner)
        per = int(host["bytes_per_seq_token"])
        unified_host = Term(max_num_seqs * max_model_len * per, "derived",
                            f"{max_num_seqs} x {max_model_len} x {per} B host tensors (counted: free = MemAvailable)",
                            host["source"])
        unified_extra = Term(int(nt["unified_extra_gib"] * GIB), "estimated",
                             f"{nt['unified_extra_gib']} GiB: {nt['unified_evidence'].strip()}", nt["unified_source"])
    else:
        unified_host = Term(0, "not counted", "discrete GPU: host memory is not in cudaMemGetInfo", run["source"])
        unified_extra = Term(0, "not counted", "discrete GPU", run["source"])

    plan = capture_plan(version, mnbt, max_num_seqs, enforce_eager, full_graphs)
    return NonKvBreakdown(
        version=version, runner=runner, budget_rule=str(rule["id"]), sampler_path=path, num_sampled=rows,
        forward_peak=forward, sampler_peak=sampler, held=held, torch_peak=torch_peak, preallocated=preallocated,
        non_torch=non_torch, unified_host_buffers=unified_host, unified_extra=unified_extra,
        cudagraph_estimate=cudagraph_estimate(arch, version, plan),
        cudagraph_in_budget=cudagraph_in_budget(version, enforce_eager), cudagraphs=plan,
    )


def requested_bytes(visible_bytes: int, util: float) -> int:
    """What vLLM asks for: ceil(total x gpu_memory_utilization) (request_memory)."""
    return math.ceil(visible_bytes * util)


def available_kv_bytes(visible_bytes: int, util: float, weights_bytes: int, breakdown: NonKvBreakdown) -> int:
    """'Available KV cache memory' = ceil(total x util) - weights - the breakdown's budget terms (may be negative)."""
    return requested_bytes(visible_bytes, util) - weights_bytes - breakdown.budget_bytes


def levers(arch: ArchConfig, version: str, tp: int, mnbt: int, max_num_seqs: int, enforce_eager: bool,
           unified_memory: bool, weights_bytes: int, *, util: float = 0.9, visible_bytes: int | None = None,
           threshold: float = 0.01, alternatives: Mapping[str, int | float | bool] | None = None,
           **options: Any) -> tuple[Lever, ...]:
    """Which settings move vLLM's memory: each lever's effect on the non-KV total and on the KV budget.

    A lever `moves_non_kv` when it changes weights + budget terms by more than `threshold` of that total. Default
    alternatives: max_num_seqs quartered, MNBT quartered (not below 1024), enforce_eager flipped, util + 0.02.
    gpu_memory_utilization never changes the non-KV total; it moves the KV budget one for one (needs `visible_bytes`).
    `options` go to non_kv_breakdown (moe_backend, compute_capability, max_model_len, ...).
    """
    base = non_kv_breakdown(arch, version, tp, mnbt, max_num_seqs, enforce_eager, unified_memory, **options)
    total = weights_bytes + base.budget_bytes
    current: dict[str, int | float | bool] = {
        "max_num_seqs": max_num_seqs, "max_num_batched_tokens": mnbt, "enforce_eager": enforce_eager,
        "gpu_memory_utilization": util,
    }
    alt: dict[str, int | float | bool] = {
        "max_num_seqs": max(1, max_num_seqs // 4), "max_num_batched_tokens": max(min(mnbt, 1024), mnbt // 4),
        "enforce_eager": not enforce_eager, "gpu_memory_utilization": min(1.0, round(util + 0.02, 4)),
    }
    for name, value in (alternatives or {}).items():
        if name not in alt:
            raise InputError(f"unknown lever {name!r}", hint=f"one of {', '.join(alt)}")
        alt[name] = value
    result = []
    for name, value in alt.items():
        if name == "gpu_memory_utilization":
            visible = visible_bytes if visible_bytes is not None else 0
            kv_delta = requested_bytes(visible, float(value)) - requested_bytes(visible, util)
            result.append(Lever(name, util, value, 0, kv_delta, False,
                                "changes what vLLM requests, not what it subtracts: the KV budget moves one for one"))
            continue
        settings: dict[str, Any] = {"max_num_seqs": max_num_seqs, "max_num_batched_tokens": mnbt,
                                    "enforce_eager": enforce_eager, name: value}
        other = non_kv_breakdown(arch, version, tp, int(settings["max_num_batched_tokens"]),
                                 int(settings["max_num_seqs"]), bool(settings["enforce_eager"]), unified_memory,
                                 **options)
        delta = other.budget_bytes - base.budget_bytes
        result.append(Lever(name, current[name], value, delta, -delta, abs(delta) > threshold * total,
                            _lever_reason(name, base, other)))
    return tuple(result)


def _lever_reason(name: str, base: NonKvBreakdown, other: NonKvBreakdown) -> str:
    """Which terms a lever changes, in words."""
    parts = []
    for key in ("torch_peak", "preallocated", "unified_host_buffers"):
        a, b = base.terms()[key], other.terms()[key]
        if a.bytes != b.bytes:
            parts.append(f"{key} {a.gib:.2f} -> {b.gib:.2f} GiB")
    graphs_a = base.budget_bytes - base.other_bytes
    graphs_b = other.budget_bytes - other.other_bytes
    if graphs_a != graphs_b:
        parts.append(f"CUDA-graph estimate {graphs_a / GIB:.2f} -> {graphs_b / GIB:.2f} GiB")
    if base.sampler_path != other.sampler_path:
        parts.append(f"sampler path {base.sampler_path} -> {other.sampler_path}")
    return "; ".join(parts) or f"{name} does not change what vLLM {base.version} subtracts"
