"""`gptoss serve` without an engine: settings precedence, refusals, argv adaptation, failure hints, progress."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from gptoss_deploy.engines import Endpoint, Launch, registry, vllm
from gptoss_deploy.engines.probe import EngineInfo, cached_probe, long_flags, split_flags
from gptoss_deploy.errors import EngineError, GptossError, InputError
from gptoss_deploy.hardware.profiles import profile_host
from gptoss_deploy.models import catalog
from gptoss_deploy.plan.planner import make_plan
from gptoss_deploy.plan.types import PlanRequest
from gptoss_deploy.serve.config import resolve_settings
from gptoss_deploy.serve.logparse import LogState, Phase, describe_failure
from gptoss_deploy.serve.notify import notify
from gptoss_deploy.serve.progress import Snapshot, describe, percent
from gptoss_deploy.serve.service import check_plan, served_name

VLLM, LLAMA = registry.get("vllm"), registry.get("llamacpp")
OLD_VLLM_HELP = """usage: api_server.py [-h] [--model MODEL] [--port PORT] [--host HOST]
  [--max-model-len MAX_MODEL_LEN] [--gpu-memory-utilization GPU_MEMORY_UTILIZATION]
  [--enable-prefix-caching] [--tool-call-parser {hermes,llama3_json,mistral}]
  [--enable-auto-tool-choice] [--served-model-name SERVED_MODEL_NAME]
"""
OLD_LLAMA_HELP = """-m,    --model FNAME         model path
-c,    --ctx-size N                     size of the prompt context
-np,   --parallel N                     number of parallel sequences
-fa,   --flash-attn                     enable Flash Attention (default: disabled)
-ot,   --override-tensor <tensor name pattern>=<buffer type>,...
-a,    --alias STRING
--host HOST
--port PORT
"""


def test_flag_beats_environment_beats_config_file_beats_default(tmp_path: Path) -> None:
    config = tmp_path / "serve.yaml"
    config.write_text("MAX_MODEL_LEN: 32768\nmax_num_seqs: 64\nPORT: 9001\nENABLE_PREFIX_CACHING: false\n")
    environ = {"MAX_MODEL_LEN": "65536", "PORT": "9002", "MODEL": "gpt-oss-120b"}
    settings = resolve_settings({"port": 9003}, environ, config)
    assert settings.port == 9003 and settings.sources["port"] == "flag"
    assert settings.max_model_len == 65536 and settings.sources["max_model_len"] == "env MAX_MODEL_LEN"
    assert settings.max_num_seqs == 64 and settings.sources["max_num_seqs"].startswith("config ")
    assert settings.enable_prefix_caching is False
    assert settings.model == "gpt-oss-120b" and settings.host == "127.0.0.1" and "host" not in settings.sources


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("MAX_MODEL_LEN", "lots", "environment MAX_MODEL_LEN: 'lots' is not a valid max_model_len"),
    ("GPU_MEMORY_UTILIZATION", "1.5", "1.5 is outside (0, 1]"),
    ("ASYNC_SCHEDULING", "maybe", "expected true or false"),
    ("PORT", "70000", "70000 is outside [1, 65,535]: a TCP port"),
    ("KV_CACHE_DTYPE", "fp4", "expected one of auto, fp8"),
])
def test_bad_environment_values_name_the_variable(name: str, value: str, expected: str) -> None:
    with pytest.raises(InputError, match=None) as caught:
        resolve_settings({}, {name: value})
    assert expected in caught.value.message


def test_config_file_may_not_hold_a_key_or_unknown_settings(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("API_KEY: sk-in-a-file\n")
    with pytest.raises(InputError, match="holds an API key") as caught:
        resolve_settings({}, {}, config)
    assert "sk-in-a-file" not in caught.value.message
    config.write_text("MAX_MODEL_LENGTH: 4096\n")
    with pytest.raises(InputError, match="unknown setting 'MAX_MODEL_LENGTH'"):
        resolve_settings({}, {}, config)
    with pytest.raises(InputError, match="cannot read config file"):
        resolve_settings({}, {}, tmp_path / "absent.yaml")


def test_api_key_from_the_environment_is_never_shown() -> None:
    settings = resolve_settings({}, {"API_KEY": "sk-secret-env"})
    assert settings.api_key == "sk-secret-env"
    assert "sk-secret-env" not in repr(settings) and "sk-secret-env" not in settings.model_dump_json()


def test_served_name_defaults_to_the_model_as_typed() -> None:
    assert served_name(resolve_settings({"model": "gpt-oss-20b"}, {})) == "gpt-oss-20b"
    assert served_name(resolve_settings({"model": "/models/gpt-oss-20b-mxfp4.gguf"}, {})) == "gpt-oss-20b-mxfp4"
    assert served_name(resolve_settings({"model": "./ckpt/gpt-oss-20b"}, {})) == "gpt-oss-20b"
    assert served_name(resolve_settings({"model": "x", "served_model_name": "mine"}, {})) == "mine"


def _plan(profile: str, version: str, **request: object):
    return make_plan(catalog.lookup("gpt-oss-20b"), profile_host(profile),
                     PlanRequest(engine="vllm", vllm_version=version, **request), with_alternatives=False)


def test_refused_explicit_values_stop_serve_unless_forced() -> None:
    settings = resolve_settings({}, {"ASYNC_SCHEDULING": "1", "VLLM_ATTENTION_BACKEND_OVERRIDE": "FLASH_ATTN"})
    plan = _plan("4xL40S", "0.12.0", async_scheduling=True, attention_backend="FLASH_ATTN")
    with pytest.raises(InputError) as caught:
        check_plan(plan, settings)
    message = caught.value.message
    assert "env ASYNC_SCHEDULING" in message and "Streaming drops or scrambles tokens" in message
    assert "attention_backend=FLASH_ATTN" in message and "vllm#40153" in message
    assert "--force" in (caught.value.hint or "")
    forced = _plan("4xL40S", "0.12.0", async_scheduling=True, attention_backend="FLASH_ATTN", force=True)
    check_plan(forced, settings)
    assert "--async-scheduling" in forced.engine_args
    assert forced.env.get("VLLM_ATTENTION_BACKEND") == "FLASH_ATTN"
    assert any("--force keeps async_scheduling" in w for w in forced.warnings)


def test_fp8_kv_refused_on_rocm_aiter_but_only_a_warning_on_hopper() -> None:
    rocm = make_plan(catalog.lookup("gpt-oss-120b"), profile_host("mi300x"),
                     PlanRequest(engine="vllm", vllm_version="0.23.0", kv_cache_dtype="fp8"), with_alternatives=False)
    with pytest.raises(InputError, match="kv_cache_dtype=fp8"):
        check_plan(rocm, resolve_settings({}, {"KV_CACHE_DTYPE": "fp8"}))
    hopper = _plan("h100", "0.23.0", kv_cache_dtype="fp8")
    check_plan(hopper, resolve_settings({}, {"KV_CACHE_DTYPE": "fp8"}))
    assert "--kv-cache-dtype" in hopper.engine_args
    assert any(i.id == "fp8-kv-accuracy-hopper" and i.severity == "warn" for i in hopper.issues)


def test_a_plan_that_does_not_fit_is_refused_with_its_reason() -> None:
    plan = make_plan(catalog.lookup("gpt-oss-120b"), profile_host("rtx-4090"), PlanRequest(engine="vllm"),
                     with_alternatives=False)
    with pytest.raises(GptossError, match="does not fit") as caught:
        check_plan(plan, resolve_settings({}, {}))
    assert "gptoss plan" in (caught.value.hint or "")


def _vllm_launch(args: list[str], env: dict[str, str] | None = None) -> Launch:
    return Launch(engine="vllm", argv=["python", "-m", vllm.MODULE, "--model", "m", *args], env=env or {})


def test_vllm_argv_is_adapted_to_an_older_release() -> None:
    info = EngineInfo(engine="vllm", executable="python", version="0.10.1", flags=long_flags(OLD_VLLM_HELP),
                      help_text=OLD_VLLM_HELP)
    launch, notes = VLLM.adapt(_vllm_launch(["--max-model-len", "4096", "--attention-backend", "TRITON_ATTN",
                                             "--no-async-scheduling", "--tool-call-parser", "openai",
                                             "--enable-auto-tool-choice"]), info)
    assert launch.argv == ["python", "-m", vllm.MODULE, "--model", "m", "--max-model-len", "4096"]
    assert launch.env == {"VLLM_ATTENTION_BACKEND": "TRITON_ATTN_VLLM_V1"}
    assert any("--no-async-scheduling: left out" in n for n in notes)
    assert any("no 'openai' tool parser" in n for n in notes)


def test_vllm_argv_is_kept_when_the_release_knows_every_flag() -> None:
    args = ["--max-model-len", "4096", "--enable-prefix-caching", "--tool-call-parser", "hermes",
            "--enable-auto-tool-choice"]
    info = EngineInfo(engine="vllm", executable="python", version="0.10.1", flags=long_flags(OLD_VLLM_HELP),
                      help_text=OLD_VLLM_HELP)
    launch, notes = VLLM.adapt(_vllm_launch(args), info)
    assert launch.argv[5:] == args and notes == []


def test_llama_argv_is_adapted_to_an_older_build() -> None:
    info = EngineInfo(engine="llamacpp", executable="llama-server", version="b4000", flags=long_flags(OLD_LLAMA_HELP),
                      help_text=OLD_LLAMA_HELP)
    launch = Launch(engine="llamacpp", argv=["llama-server", "-m", "x.gguf", "-c", "8192", "--jinja", "-fa", "on",
                                             "--n-cpu-moe", "3", "--host", "127.0.0.1", "--port", "8080"])
    adapted, notes = LLAMA.adapt(launch, info)
    assert adapted.argv == ["llama-server", "-m", "x.gguf", "-c", "8192", "-fa",
                            "-ot", r"blk\.(0|1|2)\.ffn_(up|down|gate)_exps\.=CPU", "--host", "127.0.0.1",
                            "--port", "8080"]
    assert any("--jinja" in n for n in notes) and any("-fa as a switch" in n for n in notes)
    keyed = launch.model_copy(update={"argv": [*launch.argv, "--api-key-file", "/run/key"]})
    with pytest.raises(EngineError, match="no --api-key-file"):
        LLAMA.adapt(keyed, info)


def test_split_flags_keeps_values_and_negative_numbers_together() -> None:
    assert split_flags(["-m", "x", "--seed", "-1", "--jinja", "-fa", "on"]) == [
        ["-m", "x"], ["--seed", "-1"], ["--jinja"], ["-fa", "on"]]


def test_probe_results_are_cached_by_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPTOSS_CACHE", str(tmp_path))
    calls: list[int] = []

    def compute() -> EngineInfo:
        calls.append(1)
        return EngineInfo(engine="vllm", executable="python", version="0.32.0", flags=["--model"])

    first = cached_probe("vllm", ["/usr/bin/python3", "0.32.0"], compute)
    second = cached_probe("vllm", ["/usr/bin/python3", "0.32.0"], compute)
    cached_probe("vllm", ["/usr/bin/python3", "0.33.0"], compute)
    assert first == second and len(calls) == 2


def test_missing_engines_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="llama-server not found"):
        LLAMA.locate(str(tmp_path / "llama-server"))
    with pytest.raises(EngineError, match="not found"):
        vllm.installed_version(str(tmp_path / "python"))


@pytest.mark.parametrize(("line", "failure", "in_hint"), [
    ("ValueError: To serve at least one request with the model's max seq len (131072), (5.14 GiB KV cache is "
     "needed, which is larger than the available KV cache memory (4.30 GiB). Based on the available memory, the "
     "estimated maximum model length is 107520. Try increasing", "kv_too_small", "--max-model-len 107520"),
    ("  Value error, User-specified max_model_len (200000) is greater than the derived max_model_len "
     "(max_position_embeddings=131072.0 or model_max_length=None in model's config.json).", "max_len_over_model",
     "lower --max-model-len"),
    ("ValueError: No available memory for the cache blocks. Try increasing `gpu_memory_utilization`",
     "no_kv_memory", "--gpu-memory-utilization"),
    ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB", "oom", "--max-num-batched-tokens"),
    ("AssertionError: Sinks are only supported in FlashAttention 3", "sinks_unsupported", "attention backend"),
    ("KeyError: 'invalid tool call parser: openai (chose from { hermes })'", "tool_parser", "--no-tools"),
    ("ValueError: Model architectures ['GptOssForCausalLM'] are not supported for now.", "unsupported_arch",
     "upgrade vLLM"),
    ("openai_harmony.HarmonyError: error downloading or loading vocab file", "harmony_vocab", "gptoss vocab install"),
    ("OSError: [Errno 98] Address already in use", "port_in_use", "--port"),
    ("OSError: /models/x does not appear to have a file named config.json", "model_missing", "--model"),
])
def test_vllm_startup_failures_are_classified_with_a_hint(line: str, failure: str, in_hint: str) -> None:
    state = LogState(engine="vllm")
    state.feed(f"(EngineCore pid=1) ERROR 11-23 10:00:00 [core.py:1] {line}")
    assert state.phase is Phase.FAILED and state.failure == failure
    what, hint = describe_failure(state.failure, state.facts)
    assert in_hint in hint and what


def test_llama_server_failures_are_classified() -> None:
    state = LogState(engine="llamacpp")
    state.feed("0.00.100 E srv    start: couldn't bind HTTP server socket, hostname: 127.0.0.1, port: 8080")
    assert state.failure == "port_in_use"
    state = LogState(engine="llamacpp")
    state.feed("0.00.050 E gguf_init_from_file: failed to open GGUF file '/m/x.gguf'")
    assert state.failure == "model_missing"


def test_llama_buffers_on_several_devices_add_up() -> None:
    state = LogState(engine="llamacpp")
    for line in ("load_tensors:   CPU_Mapped model buffer size =  1104.61 MiB",
                 "load_tensors:        CUDA0 model buffer size = 10949.38 MiB",
                 "llama_kv_cache: size =  192.00 MiB (  4096 cells,  12 layers,  1/1 seqs), K (f16)",
                 "llama_kv_cache: size =   18.00 MiB (   768 cells,  12 layers,  1/1 seqs), K (f16)"):
        state.feed(line)
    assert float(state.facts["weights_mib"]) == pytest.approx(12053.99)
    assert float(state.facts["kv_mib"]) == pytest.approx(210.0)


def test_plain_progress_line_reports_phase_percent_and_detail() -> None:
    state = LogState(engine="vllm")
    state.feed("Loading safetensors checkpoint shards:  60% Completed | 3/5 [00:10<00:06,  3.1s/it]")
    snap = Snapshot(state=state, elapsed_s=45, quiet_s=2, gpu_used_bytes=12 * 2**30)
    assert state.phase is Phase.WEIGHTS
    assert percent(snap) == 58  # 40 + 30 x 3/5
    assert describe(snap) == "loading weights 3/5 shards, GPU 12.0 GiB in use"
    quiet = Snapshot(state=state, elapsed_s=200, quiet_s=95)
    assert "no new log line for 95 s" in describe(quiet)


def test_sd_notify_reaches_the_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    address = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(address)
        monkeypatch.setenv("NOTIFY_SOCKET", address)
        assert notify("READY=1", "STATUS=serving")
        assert server.recv(100) == b"READY=1\nSTATUS=serving"
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert not notify("READY=1")


def test_loopback_rule_applies_to_serve_endpoints() -> None:
    from gptoss_deploy.engines import require_auth_off_loopback

    with pytest.raises(InputError, match="without an API key"):
        require_auth_off_loopback(Endpoint(host="0.0.0.0"))
    require_auth_off_loopback(Endpoint(host="0.0.0.0", api_key="k" * 16))


def test_download_progress_counts_partial_blobs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    from gptoss_deploy.serve.service import hub_download_probe

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    probe = hub_download_probe("openai/gpt-oss-20b", 13 * 2**30)
    assert probe() == (0, 13 * 2**30)
    blobs = tmp_path / "models--openai--gpt-oss-20b" / "blobs"
    blobs.mkdir(parents=True)
    (blobs / "a1b2").write_bytes(b"x" * 1000)
    (blobs / "c3d4.incomplete").write_bytes(b"x" * 500)
    assert probe() == (1500, 13 * 2**30)


@pytest.mark.parametrize(("profile", "model"), [("1xh100", "gpt-oss-20b"), ("4xl40s", "gpt-oss-120b")])
def test_plan_save_config_round_trips_through_serve_config(profile: str, model: str, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from gptoss_deploy.cli.main import main

    config = tmp_path / "serve.yaml"
    assert main(["plan", "--profile", profile, "--model", model, "--save-config", str(config), "--json"]) == 0
    planned = json.loads(capsys.readouterr().out)["data"]
    text = config.read_text()
    assert text.startswith("# gptoss serve --config") and "API_KEY" not in text
    assert main(["serve", "--config", str(config), "--profile", profile, "--dry-run", "--json"]) == 0
    served = json.loads(capsys.readouterr().out)["data"]
    assert served["engine_args"] == planned["engine_args"]  # the same engine flags, re-planned from the file
