"""Run the gpt-oss conformance and security checks against an OpenAI-compatible endpoint: discover the server, let
the probes (check/probes.py) gather what it answers, and the judges (check/judges.py) decide pass / warn / fail."""

from __future__ import annotations

from urllib.parse import urlparse

import httpx

from gptoss_deploy.check import judges, probes
from gptoss_deploy.check.judges import TOOL_FLAGS
from gptoss_deploy.check.probes import Target
from gptoss_deploy.check.report import CheckReport
from gptoss_deploy.engines import bearer, is_loopback, registry
from gptoss_deploy.errors import InputError
from gptoss_deploy.httpclient import bounded_client

__all__ = ["TOOL_FLAGS", "Target", "discover", "known_routes", "normalise_url", "run_checks"]


def normalise_url(url: str) -> str:
    """http://host:port from what a user pastes (with or without /v1, with a trailing slash)."""
    bad = InputError(f"{url[:200]!r} is not an http(s) URL", hint="e.g. http://127.0.0.1:8000 or http://host:8000/v1")
    if len(url) > 2048 or any(ord(c) <= 32 or ord(c) == 127 for c in url):
        raise bad
    try:
        parsed = urlparse(url if "://" in url else f"http://{url}")
        parsed.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        raise bad from None
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise InputError(f"{url!r} is not an http(s) URL", hint="e.g. http://127.0.0.1:8000 or http://host:8000/v1")
    path = parsed.path.rstrip("/")
    path = path[:-3] if path.endswith("/v1") else path
    return f"{parsed.scheme}://{parsed.netloc}{path}"


# -- discovery -----------------------------------------------------------------------------------------------
def discover(base_url: str, api_key: str | None, model: str | None, timeout_s: float) -> tuple[Target, CheckReport]:
    """Reach the server, list its models, find the engine; bad input raises InputError (exit 2)."""
    http = bounded_client(timeout_s)
    try:
        return _discover(http, base_url, api_key, model, timeout_s)
    except BaseException:
        http.close()
        raise


def _discover(http: httpx.Client, base_url: str, api_key: str | None, model: str | None,
              timeout_s: float) -> tuple[Target, CheckReport]:
    try:
        models = http.get(f"{base_url}/v1/models", headers=bearer(api_key), timeout=min(timeout_s, 30))
    except httpx.HTTPError as exc:
        raise InputError(f"cannot reach {base_url}: {type(exc).__name__}: {exc}",
                         hint="is the server running? check the host, port and scheme") from None
    if models.status_code == 401:
        raise InputError(f"{base_url}/v1/models answered 401: " + ("the API key was rejected" if api_key
                                                                  else "the server needs an API key"),
                         hint="pass the right key with --api-key-file FILE")
    try:
        listed = [str(m["id"]) for m in models.json()["data"]]
    except (ValueError, KeyError, TypeError):
        raise InputError(f"{base_url} is not an OpenAI-compatible server: /v1/models answered HTTP "
                         f"{models.status_code} with {judges.excerpt(models.text, 120)!r}",
                         hint="point at the server's base URL, e.g. http://host:8000 (vLLM) or :8080 (llama.cpp)") from None
    if not listed:
        raise InputError(f"{base_url} serves no model", hint="wait until the model is loaded")
    if model is not None and model not in listed:
        raise InputError(f"model {model!r} is not served by {base_url}", hint=f"it serves: {', '.join(listed)}")
    target = Target(base_url, api_key, model or listed[0], timeout_s, http)
    engine, version = identify(target)
    report = CheckReport(url=base_url, model=target.model, engine=engine, engine_version=version)
    report.results.append(judges.result("discovery", "models", "pass", f"/v1/models lists {target.model}"))
    health = _status(http, f"{base_url}/health", timeout_s)
    report.results.append(judges.result("discovery", "health", "pass" if health == 200 else "warn",
                                        "/health answered 200" if health == 200 else f"/health answered {health}"))
    report.results.append(judges.result("discovery", "engine", "pass" if engine != "unknown" else "warn",
                                        f"{engine} {version or ''}".strip() if engine != "unknown" else
                                        "no known engine recognised the server (vLLM's /version, llama.cpp's /props)"))
    return target, report


def _status(http: httpx.Client, url: str, timeout_s: float) -> int | str:
    try:
        return http.get(url, timeout=min(timeout_s, 30)).status_code
    except httpx.HTTPError as exc:
        return type(exc).__name__


def identify(target: Target) -> tuple[str, str | None]:
    """(engine name, version) as the server identifies itself to each known engine's probe; "unknown" otherwise."""
    for engine in registry.engines():
        version = engine.identify(target.http, target.base_url, target.headers)
        if version is not None:
            return engine.name, version or None
    return "unknown", None


def known_routes(engine: str | None) -> list[tuple[str, str]]:
    """The engine's routes a security probe must cover (the default engine's for an unknown server)."""
    return list(registry.known_or_default(engine).security_routes)


# -- the checks ----------------------------------------------------------------------------------------------
def check_conversation(target: Target, report: CheckReport) -> None:
    """Chat, streaming, reasoning effort, tool calls (and their round trip and tool_choice=required)."""
    results, content, field = judges.chat(probes.chat(target))
    report.results += results
    report.reasoning_field = field
    report.results += judges.stream(probes.stream(target), content)
    report.results += [judges.effort(level, probes.effort(target, level)) for level in ("low", "high")]
    seen = probes.tool_call(target)
    report.results.append(judges.tool_call(seen))
    if seen.tool_calls:
        report.results.append(judges.round_trip(probes.round_trip(target, seen.tool_calls[0])))
        report.results.append(judges.tool_required(probes.tool_required(target)))


def check_security(target: Target, report: CheckReport, routes: list[tuple[str, str]]) -> None:
    """Every route without a key and with a wrong key (the engine's known routes too: /openapi.json leaves out
    mounts such as vLLM's Prometheus /metrics); state-changing routes are listed, never called."""
    host = urlparse(target.base_url).hostname or ""
    loopback = is_loopback(host)
    report.results += judges.address(host, loopback)
    probe_list = list(dict.fromkeys(routes + known_routes(report.engine)))
    report.results += judges.state_changing([path for _, path in probe_list])
    if not target.api_key:
        report.results.append(judges.no_key(probes.open_chat(target), loopback))
        return
    for method, path in probe_list:
        if not judges.is_state_changing(path):
            report.results.append(judges.route(probes.unauthenticated(target, method, path)))


def check_quality(target: Target, report: CheckReport) -> None:
    """The quality canary (check/quality.py): one row per item and the score against the threshold."""
    from gptoss_deploy.check.quality import run_quality

    outcome = run_quality(target)
    report.results += outcome.results
    report.results.append(outcome.verdict())


def run_checks(url: str, api_key: str | None = None, model: str | None = None,
               timeout_s: float = 120.0, quality: bool = False, clients: list[str] | None = None) -> CheckReport:
    """Every check against `url` (and the quality canary when `quality`, the named client profiles' request shapes:
    check/clients.py)."""
    target, report = discover(normalise_url(url), api_key, model, timeout_s)
    routes: list[tuple[str, str]] = []

    def responses() -> None:
        nonlocal routes
        routes = probes.openapi_routes(target)
        offered = not routes or "/v1/responses" in {path for _, path in routes}
        report.results.append(judges.responses(probes.responses(target) if offered else None, offered))

    try:
        # each stage on its own: what a broken server makes one stage raise is that stage's failure, and the
        # results of the others are kept (the report is always whole up to what was asked)
        stages = [("conversation", lambda: check_conversation(target, report)), ("responses", responses),
                  ("security", lambda: check_security(target, report, routes))]
        if quality:
            stages.append(("quality", lambda: check_quality(target, report)))
        if clients:
            from gptoss_deploy.check.clients import run_clients

            stages.append(("clients", lambda: report.results.extend(run_clients(target, clients))))
        for group, stage in stages:
            try:
                stage()
            except Exception as exc:
                report.results.append(judges.result(group, "server answers could be judged", "fail",
                                                    f"{type(exc).__name__}: {str(exc)[:200]}"))
    finally:
        target.close()
    return report
