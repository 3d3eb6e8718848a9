"""The engines this tool knows, by name. Built-ins (vLLM, llama.cpp) register on first use; a test or a plugin
may register another engine, and every stage (plan, serve, try, render, check, bench, the lane) picks it up."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gptoss_deploy.errors import InputError

if TYPE_CHECKING:
    from gptoss_deploy.engines.base import Engine
    from gptoss_deploy.plan.types import Plan

_ENGINES: dict[str, Engine] = {}
_BUILTINS_LOADED = False


def _builtins() -> dict[str, Engine]:
    global _BUILTINS_LOADED
    if not _BUILTINS_LOADED:
        _BUILTINS_LOADED = True
        from gptoss_deploy.engines.llamacpp import LlamacppEngine
        from gptoss_deploy.engines.vllm import VllmEngine

        for engine in (VllmEngine(), LlamacppEngine()):
            _ENGINES.setdefault(engine.name, engine)
    return _ENGINES


def register(engine: Engine) -> None:
    """Add an engine (replacing one of the same name)."""
    _builtins()[engine.name] = engine


def unregister(name: str) -> None:
    """Remove an engine (tests)."""
    _builtins().pop(name, None)


def names() -> list[str]:
    """Every engine name, built-ins first."""
    return list(_builtins())


def engines() -> list[Engine]:
    """Every engine, built-ins first."""
    return list(_builtins().values())


def get(name: str) -> Engine:
    """The engine called `name`; InputError for an unknown one."""
    found = _builtins().get(name)
    if found is None:
        raise InputError(f"unknown engine {name!r}", hint=f"known engines: {', '.join(names())}")
    return found


def for_plan(plan: Plan) -> Engine:
    """The engine a plan runs on; InputError for a plan without one (it does not fit)."""
    if plan.engine is None:
        raise InputError(f"the plan for {plan.model} has no engine: it does not fit {plan.host}",
                         hint="`gptoss plan` lists the alternatives")
    return get(plan.engine)


def default() -> Engine:
    """The engine assumed for a server that does not say which it is (the first registered: vLLM)."""
    return engines()[0]


def known_or_default(name: str | None) -> Engine:
    """The engine called `name`, or the default one for a server that did not say (or an unknown name)."""
    return _builtins().get(name or "") or default()


def fallback_for(plan: Plan) -> Engine | None:
    """The broad fallback engine for a plan on another engine (llama.cpp for vLLM plans), or None."""
    return next((e for e in engines() if e.fallback and e.name != plan.engine), None)


def secret_env_names() -> list[str]:
    """Variables through which any engine receives its API key."""
    return sorted({e.key_env for e in engines() if e.key_env})
