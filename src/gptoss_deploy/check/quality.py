"""The quality canary: are the answers right, not only well-formed?

A green /health and valid JSON say nothing about the numbers the kernels computed (vllm#49718: gpt-oss scored
0.000 on GSM8K on DGX Spark while every API check passed, fixed by #52148). A few prompts with answers a rule can
check (data/quality_canary.yaml: arithmetic, copying a string, following a format, a tool call with the right
argument) are asked at temperature 0; the result names each item that failed and how. A request that got no answer
(a timeout in a full queue) is *unanswered*, not wrong: the score counts wrong answers only, so the watchdog never
restarts a busy engine for being slow.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from gptoss_deploy import data
from gptoss_deploy.check import probes
from gptoss_deploy.check.judges import result
from gptoss_deploy.check.probes import ChoiceObservation, Target
from gptoss_deploy.check.report import CheckResult, Status
from gptoss_deploy.data.schema import CanaryItem, QualityCanary

NUMBER = re.compile(r"-?\d+(?:[.,]\d+)*")


@dataclass
class QualityOutcome:
    """The canary's verdict: items right, wrong and unanswered, and whether the share right meets the threshold."""

    threshold: float
    results: list[CheckResult] = field(default_factory=list)

    @property
    def right(self) -> int:
        """Items answered correctly."""
        return sum(r.status == "pass" for r in self.results)

    @property
    def wrong(self) -> list[CheckResult]:
        """Items answered, and wrongly."""
        return [r for r in self.results if r.status == "fail"]

    @property
    def answered(self) -> int:
        """Items the server answered (right or wrong)."""
        return self.right + len(self.wrong)

    @property
    def total(self) -> int:
        """Items asked."""
        return len(self.results)

    @property
    def failed(self) -> bool:
        """Too many wrong answers to reach the threshold, whatever the unanswered ones would have been."""
        return self.total > 0 and (self.total - len(self.wrong)) / self.total < self.threshold

    @property
    def conclusive(self) -> bool:
        """Enough answers to judge either way."""
        return self.failed or (self.total > 0 and self.right / self.total >= self.threshold)

    def summary(self) -> str:
        """'4/6 right (threshold 80 %); wrong: add (expected 42, got ...)'."""
        text = f"{self.right}/{self.total} right (threshold {self.threshold:.0%})"
        if self.wrong:
            text += "; wrong: " + "; ".join(f"{r.name} ({r.reason})" for r in self.wrong)
        unanswered = self.total - self.answered
        return text + (f"; {unanswered} unanswered" if unanswered else "")

    def verdict(self) -> CheckResult:
        """The summary as one check result."""
        status: Status = "fail" if self.failed else "pass" if self.conclusive else "warn"
        return result("quality", "quality score", status, self.summary())


def final_text(content: str) -> str:
    """The answer without surrounding whitespace, quotes, backticks or a final period."""
    text = content.strip()
    if text.startswith("```"):
        text = re.sub(r"^```[a-zA-Z]*\s*|\s*```$", "", text)
    while True:
        trimmed = text.strip().strip("`\"'*").rstrip(".").strip()
        if trimmed == text:
            return text
        text = trimmed


def judge_answer(item: CanaryItem, seen: ChoiceObservation) -> CheckResult:
    """One item's answer against its rule: pass (right), fail (answered wrongly), skip (no answer)."""
    name = item.id
    if seen.error is not None and not seen.rejected:
        return result("quality", name, "skip", f"no answer: {seen.error[:160]}")
    if seen.rejected:
        return result("quality", name, "fail", f"the server rejected the request: {seen.error[:160] if seen.error else ''}")
    expect = item.expect
    if expect.kind == "tool_call":
        return _judge_tool_call(item, seen)
    answer = final_text(seen.content)
    shown = {"content": seen.content[:300], "tool_calls": [c.name for c in seen.tool_calls]}
    if expect.kind == "number":
        numbers = NUMBER.findall(answer)
        got = numbers[-1].replace(",", "") if numbers else None
        ok = got is not None and float(got) == float(str(expect.value))
        return result("quality", name, "pass" if ok else "fail",
                      f"{item.skill}: {'got' if ok else f'expected {expect.value}, got'} {answer[:60]!r}", shown)
    if expect.kind == "exact":
        ok = answer == expect.value
        return result("quality", name, "pass" if ok else "fail",
                      f"{item.skill}: {'copied' if ok else f'expected {expect.value!r}, got'} {answer[:60]!r}", shown)
    if expect.kind == "json":
        try:
            parsed: Any = json.loads(answer)
        except ValueError:
            return result("quality", name, "fail", f"{item.skill}: not JSON: {answer[:60]!r}", shown)
        ok = parsed == expect.value
        return result("quality", name, "pass" if ok else "fail",
                      f"{item.skill}: {'got' if ok else f'expected {json.dumps(expect.value)}, got'} "
                      f"{json.dumps(parsed)[:80]}", shown)
    words = [w.strip().strip(".").lower() for w in answer.split(",")]
    expected = [str(w).lower() for w in expect.value or []]
    ok = words == expected
    wanted = ", ".join(map(str, expect.value or []))
    return result("quality", name, "pass" if ok else "fail",
                  f"{item.skill}: {'got' if ok else f'expected {wanted!r}, got'} {answer[:60]!r}", shown)


def _judge_tool_call(item: CanaryItem, seen: ChoiceObservation) -> CheckResult:
    expect = item.expect
    shown = {"content": seen.content[:300], "tool_calls": [(c.name, c.arguments[:200]) for c in seen.tool_calls]}
    call = next((c for c in seen.tool_calls if c.name == expect.name), None)
    if call is None:
        got = ", ".join(c.name for c in seen.tool_calls) or f"text {final_text(seen.content)[:60]!r}"
        return result("quality", item.id, "fail", f"{item.skill}: expected a call to {expect.name}, got {got}", shown)
    try:
        arguments = json.loads(call.arguments)
    except ValueError:
        return result("quality", item.id, "fail", f"{item.skill}: arguments are not JSON: {call.arguments[:80]!r}", shown)
    if not isinstance(arguments, dict):
        return result("quality", item.id, "fail", f"{item.skill}: arguments are not an object: {call.arguments[:80]!r}", shown)
    missing = {k: v for k, v in expect.arguments.items() if v.lower() not in str(arguments.get(k, "")).lower()}
    if missing:
        return result("quality", item.id, "fail", f"{item.skill}: expected {expect.name}({json.dumps(missing)}), got "
                                                  f"{expect.name}({json.dumps(arguments)[:80]})", shown)
    return result("quality", item.id, "pass", f"{item.skill}: {expect.name}({json.dumps(arguments)[:80]})")


def ask(target: Target, item: CanaryItem, canary: QualityCanary) -> ChoiceObservation:
    """The item as a chat request at temperature 0 (seed 0), with its tools and the canary's reasoning effort."""
    request: dict[str, Any] = {"messages": [{"role": "user", "content": item.prompt}], "seed": 0,
                               "reasoning_effort": canary.reasoning_effort}
    if item.tools:
        request["tools"] = [{"type": "function", "function": {"name": name, "description": canary.tools[name].description,
                                                               "parameters": canary.tools[name].parameters}}
                            for name in item.tools]
        request["tool_choice"] = "auto"
    return probes.choice(target, max_tokens=canary.max_tokens, **request)


def run_quality(target: Target, canary: QualityCanary | None = None) -> QualityOutcome:
    """Every canary item against the target, judged."""
    canary = canary or data.quality_canary()
    outcome = QualityOutcome(threshold=canary.threshold)
    for item in canary.items:
        outcome.results.append(judge_answer(item, ask(target, item, canary)))
    return outcome
