"""Plans become argv lists and env through each engine's one builder; secrets stay out of argv; open endpoints are
refused."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from gptoss_deploy.engines import Binding, Endpoint, is_loopback, registry
from gptoss_deploy.errors import InputError
from gptoss_deploy.hardware.profiles import compose_host, profile_host
from gptoss_deploy.models import catalog
from gptoss_deploy.plan.planner import make_plan
from gptoss_deploy.plan.types import PlanRequest

SECRET = "sk-test-secret-123"
VLLM, LLAMA = registry.get("vllm"), registry.get("llamacpp")


def vllm_plan():
    return make_plan(catalog.lookup("gpt-oss-120b"), profile_host("4xL40S"), PlanRequest(tensor_parallel_size=2,
                                                                                          data_parallel_size=1))


def llama_plan():
    return make_plan(catalog.lookup("gpt-oss-120b"), compose_host("L40S", 1, ram_gib=128), PlanRequest())


def test_vllm_argv_has_tool_owned_flags_then_the_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    plan = vllm_plan()
    launch = VLLM.launch(plan, Endpoint(port=9000, served_name="gpt-oss-120b", api_key=SECRET), "py")
    assert launch.argv[:3] == ["py", "-m", "vllm.entrypoints.openai.api_server"]
    assert launch.argv[launch.argv.index("--port") + 1] == "9000"
    assert launch.argv[launch.argv.index("--tensor-parallel-size") + 1] == "2"
    assert launch.argv[-len(plan.engine_args):] == plan.engine_args  # the planned flags, unchanged, last
    assert all(SECRET not in a and "hf_secret" not in a for a in launch.argv)
    assert launch.env["VLLM_API_KEY"] == SECRET and launch.env["HF_TOKEN"] == "hf_secret"
    assert launch.masked_env()["VLLM_API_KEY"] == "***" and launch.masked_env()["HF_TOKEN"] == "***"
    assert SECRET not in launch.describe() and "hf_secret" not in launch.describe()


def test_llamacpp_key_goes_through_a_0600_file(tmp_path: Path) -> None:
    launch = LLAMA.launch(llama_plan(), Endpoint(port=9001, api_key=SECRET), "llama-server", key_dir=tmp_path)
    assert launch.argv[:3] == ["llama-server", "-hf", "ggml-org/gpt-oss-120b-GGUF"]
    key_file = Path(launch.argv[launch.argv.index("--api-key-file") + 1])
    assert key_file.read_text().strip() == SECRET
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert all(SECRET not in a for a in launch.argv) and launch.files == [str(key_file)]
    launch.remove_files()
    assert not key_file.exists()


def test_the_model_as_the_process_sees_it_replaces_the_planned_reference() -> None:
    launch = LLAMA.launch(llama_plan(), Endpoint(), "llama-server", model_path="/models/gpt-oss-120b-00001-of-00003.gguf")
    assert launch.argv[1:3] == ["-m", "/models/gpt-oss-120b-00001-of-00003.gguf"] and "-hf" not in launch.argv


def test_one_builder_for_every_binding() -> None:
    plan = vllm_plan()
    container = VLLM.command(plan, Binding(program=["python3", "-m", "m"], model="/models/x", host="0.0.0.0",
                                           port=8000, served_name="x"))
    local = VLLM.command(plan, Binding(program=["py", "-m", "m"], host="127.0.0.1", port=9000, served_name="y"))
    assert container[-len(plan.engine_args):] == local[-len(plan.engine_args):] == plan.engine_args
    assert container[container.index("--model") + 1] == "/models/x" and local[local.index("--model") + 1] == plan.model


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "::"])
def test_open_endpoint_off_loopback_is_refused(host: str) -> None:
    with pytest.raises(InputError, match="without an API key"):
        VLLM.launch(vllm_plan(), Endpoint(host=host), "py")
    VLLM.launch(vllm_plan(), Endpoint(host=host, api_key=SECRET), "py")  # with a key it is allowed


def test_loopback_addresses() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("127.8.9.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2")


def test_engine_mismatch_is_an_input_error() -> None:
    with pytest.raises(InputError, match="not llama.cpp"):
        LLAMA.launch(vllm_plan(), Endpoint(), "llama-server")
    with pytest.raises(InputError, match="not vLLM"):
        VLLM.launch(llama_plan(), Endpoint(), "py")


def test_unknown_engine_names_are_input_errors() -> None:
    with pytest.raises(InputError, match="unknown engine 'sglang'"):
        registry.get("sglang")
    with pytest.raises(ValueError, match="unknown engine"):
        PlanRequest(engine="sglang")
