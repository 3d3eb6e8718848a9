"""Build the ladder from the plan, run each rung through `gptoss serve`'s machinery, journal every attempt.

Rungs, best first: what you asked for (verbatim, when the planner changed it) -> the plan -> a smaller batch
(MNBT / memory utilisation) -> a shorter context -> eager mode -> llama.cpp with the GGUF and computed
--n-cpu-moe. Each names the failure it guards against. A rung is tried with a deadline; the outcome is the serve
failure classifier's (OOM, unsupported architecture, sinks assertion, tool parser, hang, ...). The first rung that
becomes ready and passes `gptoss check` wins; the engine is then stopped (or benchmarked first with --bench).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from gptoss_deploy.errors import GptossError, InputError
from gptoss_deploy.serve.config import ServeSettings
from gptoss_deploy.serve.service import Prepared, ServeInputs

VERBATIM_SETTINGS = ("max_model_len", "max_num_batched_tokens", "gpu_memory_utilization", "max_num_seqs")


@dataclass
class Rung:
    """One attempt: settings and inputs relative to the base, and what is expected to go wrong."""

    name: str
    expected: str
    settings: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)
    verbatim: dict[str, Any] = field(default_factory=dict)  # settings forced into the plan, unchecked
    fallback: bool = False  # runs on the fallback engine: the `--` arguments (for the planned engine) are dropped


class Attempt(BaseModel):
    """A journal record."""

    kind: str = "attempt"
    key: str
    rung: str
    expected: str
    started: str
    duration_s: float
    outcome: str  # ready, check_failed, or a failure class (oom, unsupported_arch, hang, timeout, ...)
    detail: str = ""
    command: str | None = None  # masked argv + env, as a person would read it
    log: str | None = None
    log_excerpt: str = ""
    plan_vs_actual: list[dict[str, Any]] = Field(default_factory=list)
    check: dict[str, int] | None = None
    bench: dict[str, Any] | None = None


def build_ladder(base: ServeSettings, inputs: ServeInputs, gguf: str | None) -> tuple[list[Rung], str | None]:
    """The rungs for these settings, and the plan-time error when the settings as given cannot be planned."""
    from gptoss_deploy.engines import registry
    from gptoss_deploy.serve.service import prepare
    from gptoss_deploy.serve.supervisor import uses_gpu

    requested = {k: getattr(base, k) for k in VERBATIM_SETTINGS if getattr(base, k) is not None}
    planning = replace(inputs, require_engine=False)
    rungs: list[Rung] = []
    plan_error = None
    try:
        prepared = prepare(base, planning)
    except InputError as exc:  # the settings as given are refused by the planner: try them verbatim first
        plan_error = exc.message
        prepared = prepare(base.model_copy(update={k: None for k in requested}), planning)
        rungs.append(Rung("as requested", f"the planner refused it: {exc.message}", verbatim=requested))
    prepared.launch.remove_files()  # only its plan is used here
    planned = prepared.plan
    reset = {k: None for k in requested} if plan_error else {}  # later rungs start from the planner's values
    rungs.append(Rung("planned", _expected_for_plan(prepared), settings=dict(reset)))
    engine = registry.for_plan(planned)
    for step in engine.ladder(planned, uses_gpu(planned)):
        rungs.append(Rung(step.name, step.expected, settings=reset | step.settings, inputs=dict(step.inputs)))
    fallback = registry.fallback_for(planned)
    if fallback is not None and (gguf or fallback.can_serve(prepared.model) is None):
        rungs.append(Rung(fallback.label, fallback.fallback or "", fallback=True,
                          settings=reset | {"engine": fallback.name, "model": gguf or base.model, "max_model_len": None}))
    return rungs, plan_error


def _expected_for_plan(prepared: Prepared) -> str:
    plan = prepared.plan
    risks = [f"{hit.id}: {hit.effect}" for hit in plan.issues if hit.severity != "info"]
    return "; ".join(risks[:2]) or "none known (the plan fits with margin)"


def rung_key(settings: ServeSettings, rung: Rung) -> str:
    """What identifies an attempt for --resume: model, engine settings and the rung."""
    payload = json.dumps({"model": settings.model, "rung": rung.name, "settings": rung.settings,
                          "verbatim": rung.verbatim, "inputs": rung.inputs}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def prepare_rung(base: ServeSettings, inputs: ServeInputs, rung: Rung) -> Prepared:
    """The rung's launch: the base settings with the rung's changes, planned; verbatim values forced into the plan."""
    from gptoss_deploy.serve.service import prepare

    settings = base.model_copy(update=rung.settings | {k: None for k in rung.verbatim})
    rung_inputs = replace(inputs, **rung.inputs, force=inputs.force or bool(rung.verbatim),
                          extra_args=[] if rung.fallback else list(inputs.extra_args))
    return prepare(settings, rung_inputs, forced=rung.verbatim or None)


def _now() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat(timespec="seconds")


def classify(exc: BaseException, failure: str | None) -> tuple[str, str]:
    """(outcome, detail) for a failed start: the serve classifier's class, else timeout / hang / exit."""
    message = exc.message if isinstance(exc, GptossError) else str(exc)
    if failure:
        return failure, message.split("\n")[0]
    if " hung: " in message:
        return "hang", message.split("\n")[0]
    if "not ready after" in message:
        return "timeout", message.split("\n")[0]
    if "is not installed" in message or "was not found" in message or "not found" in message:
        return "engine_missing", message.split("\n")[0]
    if isinstance(exc, InputError):
        return "refused", message.split("\n")[0]
    return "exited", message.split("\n")[0]


class Ladder:
    """Runs rungs in order and journals each attempt."""

    def __init__(self, base: ServeSettings, inputs: ServeInputs, rungs: list[Rung], journal: Path,
                 deadline_s: float | None, log_dir: Path, run_check: bool = True, bench: bool = False,
                 say: Any = print) -> None:
        self.base, self.inputs, self.rungs, self.journal = base, inputs, rungs, journal
        self.deadline_s, self.log_dir, self.run_check, self.bench, self.say = deadline_s, log_dir, run_check, bench, say

    def done_keys(self) -> set[str]:
        """Rungs that already failed (for --resume; a rung that worked is worth running again)."""
        from gptoss_deploy.bench.journal import read_journal

        if not self.journal.exists():
            return set()
        return {r["key"] for r in read_journal(self.journal)
                if r.get("kind") == "attempt" and r.get("outcome") not in ("ready", "skipped")}

    def run(self, resume: bool = False) -> list[Attempt]:
        """Try rungs until one is ready and passes the check; returns this run's attempts."""
        from gptoss_deploy.bench.journal import Journal

        skip = self.done_keys() if resume else set()
        attempts: list[Attempt] = []
        engine_missing = False
        with Journal(self.journal) as journal:
            for rung in self.rungs:
                key = rung_key(self.base, rung)
                if key in skip:
                    self.say(f"[try] {rung.name}: already tried (--resume), skipped")
                    continue
                if engine_missing and not rung.fallback:
                    attempt = Attempt(key=key, rung=rung.name, expected=rung.expected, started=_now(), duration_s=0.0,
                                      outcome="skipped", detail="the planned engine is not available here (see the "
                                                                "first attempt)")
                    journal.append(attempt.model_dump())
                    attempts.append(attempt)
                    self.say(f"[try] {rung.name}: skipped (the engine is not available)")
                    continue
                self.say(f"[try] {rung.name}: expecting {rung.expected}")
                attempt = self.attempt(rung, key)
                engine_missing = engine_missing or (attempt.outcome == "engine_missing" and not rung.fallback)
                journal.append(attempt.model_dump())
                attempts.append(attempt)
                self.say(f"[try] {rung.name}: {attempt.outcome} in {attempt.duration_s:.0f} s"
                         + (f" ({attempt.detail[:200]})" if attempt.detail and attempt.outcome != "ready" else ""))
                if attempt.outcome == "ready":
                    break
        return attempts

    def attempt(self, rung: Rung, key: str) -> Attempt:
        """One rung: prepare, start with a deadline, check, (bench), stop."""
        from gptoss_deploy.serve.supervisor import SuperviseOptions, Supervisor, ready_timeout_for

        started = time.monotonic()
        record: dict[str, Any] = {"key": key, "rung": rung.name, "expected": rung.expected,
                                  "started": _now()}
        supervisor = None
        try:
            prepared = prepare_rung(self.base, self.inputs, rung)
            record["command"] = prepared.launch.describe()
            log = self.log_dir / f"try-{prepared.endpoint.port}-{rung.name.replace(' ', '-').replace('.', '')}.log"
            record["log"] = str(log)
            options = SuperviseOptions(ready_timeout_s=self.deadline_s or ready_timeout_for(prepared.model.checkpoint_bytes))
            supervisor = Supervisor(prepared.launch, prepared.plan, prepared.endpoint, log, options)
            report = supervisor.start()
            record["plan_vs_actual"] = [c.model_dump() for c in report.plan_vs_actual]
            record["outcome"] = "ready"
            if self.run_check:
                record |= self._check(prepared)
            if record["outcome"] == "ready" and self.bench:
                record["bench"] = self._bench(prepared)
        except (GptossError, OSError) as exc:
            failure = supervisor.engine.state.failure if supervisor and supervisor.engine else None
            record["outcome"], record["detail"] = classify(exc, failure)
            if supervisor is not None and supervisor.report is not None:
                record["plan_vs_actual"] = [c.model_dump() for c in supervisor.report.plan_vs_actual]
        finally:
            if supervisor is not None:
                record["log_excerpt"] = supervisor.sink.tail(1200)
                supervisor.stop()
        record["duration_s"] = round(time.monotonic() - started, 1)
        return Attempt(**record)

    @staticmethod
    def _check(prepared: Prepared) -> dict[str, Any]:
        from gptoss_deploy.check.runner import run_checks

        report = run_checks(prepared.endpoint.base_url, api_key=prepared.endpoint.api_key,
                            model=prepared.endpoint.served_name, timeout_s=120)
        counts = report.counts()
        failed = [f"{r.group}/{r.name}: {r.reason}" for r in report.results if r.status == "fail"]
        return {"check": counts, "outcome": "check_failed" if failed else "ready", "detail": "; ".join(failed)[:500]}

    @staticmethod
    def _bench(prepared: Prepared) -> dict[str, Any]:
        from gptoss_deploy.bench.runner import BenchConfig, run_benchmark

        result = run_benchmark(BenchConfig(url=prepared.endpoint.base_url, api_key=prepared.endpoint.api_key,
                                           model=prepared.endpoint.served_name, num_prompts=8, input_len=128,
                                           output_len=64, max_concurrency=2, warmups=2))
        return {k: result[k] for k in ("output_throughput", "median_ttft_ms", "median_tpot_ms", "completed")}
