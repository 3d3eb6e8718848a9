"""llama.cpp: a Plan -> `llama-server ...` argv; the API key goes through a 0600 --api-key-file. Probe and adapt."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from gptoss_deploy.engines import Endpoint, Launch, hf_token_env, require_auth_off_loopback, write_key_file
from gptoss_deploy.engines.probe import EngineInfo, cached_probe, executable_key, long_flags, run_text, split_flags
from gptoss_deploy.errors import EngineError, InputError
from gptoss_deploy.plan.types import Plan

SHORT_FORMS = {"-fa": "--flash-attn", "-c": "--ctx-size", "-np": "--parallel", "-ngl": "--n-gpu-layers",
               "-m": "--model", "-hf": "--hf-repo", "-ot": "--override-tensor", "-a": "--alias",
               "-lv": "--log-verbosity"}


def launch(plan: Plan, endpoint: Endpoint, binary: str = "llama-server", model_path: str | None = None,
           key_dir: Path | None = None) -> Launch:
    """llama-server for this plan (`model_path` replaces the planned GGUF, e.g. a downloaded file)."""
    if plan.engine != "llamacpp" or plan.llamacpp is None:
        raise InputError(f"the plan's engine is {plan.engine or 'none'}, not llama.cpp",
                         hint="plan with --engine llamacpp, or launch with the plan's engine")
    require_auth_off_loopback(endpoint)
    args = list(plan.engine_args)
    if model_path:
        args[:2] = ["-m", model_path]  # the plan's args start with the model: -m FILE or -hf REPO
    # Verbosity 4 logs the model/KV/compute buffer sizes that plan-vs-actual reads (not prompts); --metrics
    # serves the Prometheus counters that `gptoss bench` checks its token totals against.
    argv = [binary, *args, "--alias", endpoint.served_name, "--host", endpoint.host, "--port", str(endpoint.port),
            "-lv", "4", "--metrics"]
    files = []
    if endpoint.api_key:
        key_file = write_key_file(endpoint.api_key, key_dir)
        argv += ["--api-key-file", str(key_file)]
        files.append(str(key_file))
    return Launch(engine="llamacpp", argv=argv, env=hf_token_env(), files=files)


def find_binary(binary: str | None = None) -> str:
    """--llama-server, else `llama-server` on PATH; a clear error when there is none."""
    found = shutil.which(binary or "llama-server")
    if found is None:
        raise EngineError(f"llama-server not found ({binary or 'not on PATH'})",
                          hint="build it (cmake --build build --target llama-server) or install llama.cpp, then pass "
                               "--llama-server /path/to/llama-server")
    return found


def probe(binary: str) -> EngineInfo:
    """Build number and --help of this llama-server (cached per file)."""
    path = find_binary(binary)

    def compute() -> EngineInfo:
        version_text = run_text([path, "--version"], timeout_s=30)
        match = re.search(r"version: (\d+) \(|build (\d+)", version_text)
        build = next((g for g in (match.groups() if match else ()) if g and g != "0"), None)
        text = run_text([path, "--help"], timeout_s=30)
        if "--port" not in text:
            raise EngineError(f"{path} --help does not look like llama-server's", hint="pass the llama-server binary")
        return EngineInfo(engine="llamacpp", executable=path, version=f"b{build}" if build else None,
                          flags=long_flags(text), help_text=text)

    return cached_probe("llamacpp", executable_key(path), compute)


def _flash_attn_takes_value(info: EngineInfo) -> bool:
    return re.search(r"--flash-attn \[?(on|FA)", info.help_text) is not None


def _cpu_moe_override(layers: int) -> list[str]:
    """--n-cpu-moe N for builds without it: keep the experts of the first N layers in RAM via -ot."""
    pattern = "|".join(str(i) for i in range(layers))
    return ["-ot", rf"blk\.({pattern})\.ffn_(up|down|gate)_exps\.=CPU"]


def adapt(launch: Launch, info: EngineInfo) -> tuple[Launch, list[str]]:
    """Fit the launch to this llama-server build: -fa forms, --jinja, --n-cpu-moe; drop unknown flags."""
    name = info.version or "this build"
    notes: list[str] = []
    kept: list[str] = [launch.argv[0]]
    for item in split_flags(launch.argv[1:]):
        flag = SHORT_FORMS.get(item[0], item[0])
        if not flag.startswith("--") or info.knows(flag):
            if flag == "--flash-attn" and len(item) > 1 and not _flash_attn_takes_value(info):
                notes.append(f"llama-server {name} takes -fa as a switch: -fa {item[1]} -> "
                             + ("-fa" if item[1] == "on" else "left out"))
                item = ["-fa"] if item[1] == "on" else []
            kept += item
        elif flag in ("--model", "--hf-repo", "--port", "--host"):
            raise EngineError(f"llama-server {name} does not know {item[0]}", hint="use a current llama.cpp build")
        elif flag == "--api-key-file":
            raise EngineError(f"llama-server {name} has no --api-key-file, and the key must not go on the command line",
                              hint="use a newer llama.cpp build, or serve on 127.0.0.1 without a key")
        elif flag == "--n-cpu-moe" and info.knows("--override-tensor"):
            kept += _cpu_moe_override(int(item[1]))
            notes.append(f"llama-server {name} has no --n-cpu-moe: the same placement through -ot")
        elif flag == "--jinja":
            notes.append(f"llama-server {name} has no --jinja: the gpt-oss chat template may not render; upgrade")
        else:
            notes.append(f"llama-server {name} does not know {item[0]}: left out")
    return launch.model_copy(update={"argv": kept}), notes
