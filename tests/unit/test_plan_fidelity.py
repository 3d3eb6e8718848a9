"""Plan fidelity: which vLLM release a plan is for and why, GPUs described on the command line."""

from __future__ import annotations

import pytest

from gptoss_deploy.errors import InputError
from gptoss_deploy.hardware.profiles import profile_host
from gptoss_deploy.models import catalog
from gptoss_deploy.plan import versions
from gptoss_deploy.plan.planner import make_plan
from gptoss_deploy.plan.types import PlanRequest
from gptoss_deploy.planning import HostChoice, resolve_host

GIB = 1024**3
MODEL = catalog.lookup("openai/gpt-oss-20b")
assert MODEL is not None


def _plan(profile: str = "h100", **request: object):
    return make_plan(MODEL, profile_host(profile), PlanRequest(**request))


def test_default_release_is_the_newest_read_and_the_plan_says_it_was_assumed() -> None:
    plan = _plan()
    assert plan.vllm is not None
    assert plan.vllm.version == versions.vllm_facts().default_version == "0.33.0"
    assert plan.vllm.version_basis.startswith("assumed")
    assert any(r.startswith("vLLM 0.33.0: assumed") for r in plan.reasons)


def test_installed_release_is_planned_for_and_named() -> None:
    plan = make_plan(MODEL, profile_host("h100"), PlanRequest(),
                     installed={"vllm": "0.23.0"})
    assert plan.vllm is not None and plan.vllm.version == "0.23.0"
    assert plan.vllm.version_basis == "installed here"


def test_unknown_newer_release_is_planned_as_the_newest_known_with_a_warning() -> None:
    plan = _plan(vllm_version="99.0")
    assert plan.vllm is not None and plan.vllm.version == "99.0"
    assert any("newer than every release" in w and "0.33.0" in w for w in plan.warnings)


def test_release_before_gpt_oss_is_a_clear_error() -> None:
    with pytest.raises(InputError, match=r"predates gpt-oss support.*0\.10\.1"):
        _plan(vllm_version="0.9.0")


def test_installed_release_before_gpt_oss_does_not_fit_and_says_why() -> None:
    plan = make_plan(MODEL, profile_host("h100"), PlanRequest(engine="vllm"), installed={"vllm": "0.9.2"})
    assert plan.verdict == "does not fit"
    assert "predates gpt-oss support" in plan.reasons[0] and "upgrade" in plan.reasons[0]
    auto = make_plan(MODEL, profile_host("h100"), PlanRequest(), installed={"vllm": "0.9.2"})
    assert auto.engine == "llamacpp" and "predates gpt-oss support" in auto.reasons[0]


def test_a_described_nvidia_gpu_gets_its_architecture_from_the_compute_capability() -> None:
    host = resolve_host(HostChoice(gpu="A40", gpus=2, gpu_memory_gib=48, compute_capability="8.6",
                                   gpu_bandwidth_gbs=696))
    gpu = host.gpu
    assert gpu is not None and host.gpu_count == 2
    assert (gpu.vendor, gpu.arch, gpu.bandwidth_gbs, gpu.memory_source) == ("nvidia", "ampere", 696, "described")
    assert gpu.memory_bytes == 48 * GIB and gpu.visible_bytes < gpu.memory_bytes
    plan = make_plan(MODEL, host, PlanRequest())
    assert plan.vllm is not None and plan.vllm.attention_backend == "TRITON_ATTN"
    assert any("described on the command line" in w for w in plan.warnings)


def test_a_described_amd_gpu_gets_its_architecture_from_the_gfx_target() -> None:
    host = resolve_host(HostChoice(gpu="Instinct X", gpu_memory_gib=288, gfx_target="gfx950"))
    assert host.gpu is not None and (host.gpu.vendor, host.gpu.arch) == ("amd", "cdna4")


@pytest.mark.parametrize(("choice", "message"), [
    (HostChoice(gpu="Mystery", compute_capability="8.6"), "needs its memory"),
    (HostChoice(gpu="Mystery", gpu_memory_gib=24, compute_capability="eight"), "not MAJOR.MINOR"),
    (HostChoice(gpu="Mystery", gpu_memory_gib=24, gfx_target="navi"), "not an AMD gfx name"),
    (HostChoice(gpu="Mystery", gpu_memory_gib=24, gfx_target="gfx942", compute_capability="9.0"), "alternatives"),
    (HostChoice(gpu="L40S", gpu_memory_gib=48, compute_capability="8.9"), "is in the catalog"),
])
def test_bad_gpu_descriptions_are_input_errors(choice: HostChoice, message: str) -> None:
    with pytest.raises(InputError, match=message):
        resolve_host(choice)


def test_bandwidth_overrides_a_catalog_gpu() -> None:
    host = resolve_host(HostChoice(gpu="L40S", gpu_bandwidth_gbs=500))
    assert host.gpu is not None and host.gpu.bandwidth_gbs == 500


def _fidelity_module():
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "bench" / "plan_fidelity.py"
    spec = importlib.util.spec_from_file_location("plan_fidelity", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["plan_fidelity"] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def test_every_public_log_is_predicted_end_to_end_from_util() -> None:
    fidelity = _fidelity_module()
    for case in fidelity.CASES:
        row = fidelity.predict(case)
        if abs(case.logged_kv_gib) >= 10:
            limit = 3.0 if "GB10" in case.name else 5.0
            assert abs(row["kv_error_pct"]) <= limit, (case.name, row)
            assert abs(row["tokens_error_pct"]) <= limit and abs(row["concurrency_error_pct"]) <= limit, row
        else:  # a budget of a few GiB (or below zero): compare in GiB, and the sign decides whether it starts
            assert abs(row["kv_error_gib"]) <= 0.25, (case.name, row)
            assert (row["predicted_kv_gib"] > 0) == (case.logged_kv_gib > 0), (case.name, row)
        if case.logged_weights_gib is not None:
            assert abs(row["weights_error_pct"]) <= 2.0, (case.name, row)


def test_the_plan_asks_for_llama_cpp_slots_times_the_request_context() -> None:
    host = resolve_host(HostChoice(gpu="RTX 4090"))
    plan = make_plan(MODEL, host, PlanRequest(engine="llamacpp", max_model_len=16384, max_num_seqs=8))
    assert plan.llamacpp is not None
    assert (plan.llamacpp.n_parallel, plan.llamacpp.n_ctx) == (8, 8 * 16384)
    assert plan.engine_args[:4] == ["-c", str(8 * 16384), "-np", "8"]
    auto = make_plan(MODEL, host, PlanRequest(engine="llamacpp", max_model_len=16384))
    assert auto.llamacpp is not None and auto.llamacpp.n_parallel == 4 and auto.llamacpp.n_ctx == 4 * 16384
    # more slots must not push experts to RAM: a 24 GB card with 120b keeps one slot
    big = catalog.lookup("openai/gpt-oss-120b")
    assert big is not None
    one = make_plan(big, host, PlanRequest(engine="llamacpp"))
    assert one.llamacpp is not None and one.llamacpp.n_parallel == 1 and one.llamacpp.n_cpu_moe > 0


def test_every_printed_number_carries_a_label() -> None:
    plan = _plan()
    labels = {f.name: f.label for f in plan.figures}
    assert labels["maximum concurrency"] == "derived" and labels["KV cache memory"] == "derived"
    assert labels["non torch"] == "estimated" and labels["decode expected, one stream"] == "extrapolated"
    assert plan.speed is not None and "303 tok/s measured" in plan.speed.anchor and "anchor x" in plan.speed.anchor
    assert all(f.label in ("measured", "derived", "extrapolated", "estimated", "given") for f in plan.figures)


def _emitted(plan) -> tuple[list[str], list[str]]:
    flags = [a.split("=")[0].split(".")[0] for a in plan.engine_args if a.startswith("-")]
    return flags, [name for name in plan.env if name.startswith("VLLM_")]


def test_no_plan_emits_a_flag_or_variable_its_vllm_release_lacks() -> None:
    from gptoss_deploy import data
    from gptoss_deploy.plan import surface

    # every GPU of the catalog (one per architecture and memory size; hosts only repeat them) and an 8-GPU host
    profiles = [*data.gpu_catalog().gpus, "8xh100"]
    big, small = catalog.lookup("openai/gpt-oss-120b"), catalog.lookup("openai/gpt-oss-20b")
    assert big is not None and small is not None
    checked = 0
    for name in profiles:
        host = profile_host(name)
        for version in surface.known_versions():
            for model, request in ((big, PlanRequest(engine="vllm", vllm_version=version)),
                                   (small, PlanRequest(engine="vllm", vllm_version=version, kv_cache_dtype="fp8",
                                                       max_model_len=32768, max_num_seqs=64, enforce_eager=True,
                                                       tensor_parallel_size=min(2, host.gpu_count)))):
                plan = make_plan(model, host, request, with_alternatives=False)
                if plan.engine != "vllm":
                    continue
                flags, env = _emitted(plan)
                assert surface.missing(version, flags, env) == [], (name, version, model.id, plan.engine_args)
                checked += 1
    assert checked > 500


def test_b200_on_0_33_selects_the_moe_kernel_with_the_flag_not_the_removed_variable() -> None:
    plan = make_plan(catalog.lookup("openai/gpt-oss-120b"), profile_host("b200"), PlanRequest(vllm_version="0.33.0"))
    assert "VLLM_USE_FLASHINFER_MOE_MXFP4_MXFP8" not in plan.env
    assert plan.engine_args[plan.engine_args.index("--moe-backend") + 1] == "flashinfer_trtllm"
    old = make_plan(catalog.lookup("openai/gpt-oss-120b"), profile_host("b200"), PlanRequest(vllm_version="0.23.0"))
    assert old.env.get("VLLM_USE_FLASHINFER_MOE_MXFP4_MXFP8") == "1" and "--moe-backend" not in old.engine_args


def test_the_default_release_is_the_newest_whose_surface_was_read() -> None:
    from gptoss_deploy.plan import surface

    assert versions.vllm_facts().default_version == surface.newest_known()


def test_strix_halo_reads_large_ggufs_without_mmap() -> None:
    big = catalog.lookup("openai/gpt-oss-120b")
    assert big is not None
    host = profile_host("strix-halo-128gb")
    assert "--no-mmap" in make_plan(big, host, PlanRequest(engine="llamacpp")).engine_args
    assert "--no-mmap" not in make_plan(MODEL, host, PlanRequest(engine="llamacpp")).engine_args
    assert "--no-mmap" not in make_plan(big, profile_host("4xl40s"), PlanRequest(engine="llamacpp")).engine_args


def test_gpu_names_match_catalog_aliases_as_whole_words() -> None:
    from gptoss_deploy.hardware.profiles import find_gpu_key

    assert find_gpu_key("NVIDIA L40") is None  # a 48 GB Ada card, not the 24 GB L4
    assert find_gpu_key("NVIDIA L4") == "l4" and find_gpu_key("NVIDIA L40S") == "l40s"
    assert find_gpu_key("NVIDIA A100-SXM4-80GB") == "a100-80gb"
    assert find_gpu_key("NVIDIA H100 80GB HBM3") == "h100-sxm"


def test_amd_gpus_are_told_apart_by_product_name_not_only_by_gfx(tmp_path) -> None:
    from gptoss_deploy.hardware.amd import detect_amd

    device = tmp_path / "sys/class/drm/card0/device"
    device.mkdir(parents=True)
    (device / "vendor").write_text("0x1002\n")
    (device / "mem_info_vram_total").write_text(str(256 * GIB) + "\n")
    (device / "mem_info_gtt_total").write_text(str(64 * GIB) + "\n")
    (device / "product_name").write_text("AMD Instinct MI325X\n")
    node = tmp_path / "sys/class/kfd/kfd/topology/nodes/1"
    node.mkdir(parents=True)
    (node / "properties").write_text("gfx_target_version 90402\n")
    gpus, _, _ = detect_amd(tmp_path)
    assert [(g.key, g.gfx_target, g.arch) for g in gpus] == [("mi325x", "gfx942", "cdna3")]
