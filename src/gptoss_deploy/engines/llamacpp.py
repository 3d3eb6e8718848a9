"""llama.cpp: a Plan -> `llama-server ...` argv; the API key goes through a 0600 --api-key-file."""

from __future__ import annotations

from pathlib import Path

from gptoss_deploy.engines import Endpoint, Launch, hf_token_env, require_auth_off_loopback, write_key_file
from gptoss_deploy.errors import InputError
from gptoss_deploy.plan.types import Plan


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
    argv = [binary, *args, "--alias", endpoint.served_name, "--host", endpoint.host, "--port", str(endpoint.port)]
    files = []
    if endpoint.api_key:
        key_file = write_key_file(endpoint.api_key, key_dir)
        argv += ["--api-key-file", str(key_file)]
        files.append(str(key_file))
    return Launch(engine="llamacpp", argv=argv, env=hf_token_env(), files=files)
