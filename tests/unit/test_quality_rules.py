"""The quality canary's rules (check/quality.py) and its background probe (serve/watchdog.QualityProbe)."""

from __future__ import annotations

import json
import time

import pytest

from gptoss_deploy import data
from gptoss_deploy.check.probes import ChoiceObservation, ToolCall
from gptoss_deploy.check.quality import QualityOutcome, final_text, judge_answer
from gptoss_deploy.check.report import CheckResult
from gptoss_deploy.serve.watchdog import QualityProbe

CANARY = data.quality_canary()
ITEMS = {item.id: item for item in CANARY.items}


def said(content: str) -> ChoiceObservation:
    return ChoiceObservation(finish_reason="stop", content=content)


def test_every_item_s_trained_answer_passes_its_own_rule() -> None:
    # the lane's tiny model is trained on `answer`: a rule that rejects it would fail every healthy lane
    for item in CANARY.items:
        if item.answer_arguments is not None:
            seen = ChoiceObservation(tool_calls=[ToolCall("call_1", str(item.expect.name),
                                                          json.dumps(item.answer_arguments))])
        else:
            assert item.answer is not None, item.id
            seen = said(item.answer)
        assert judge_answer(item, seen).status == "pass", item.id


def test_the_set_covers_what_the_issue_asks() -> None:
    kinds = {item.expect.kind for item in CANARY.items}
    assert {"number", "exact", "json", "tool_call"} <= kinds
    assert all(name in CANARY.tools for item in CANARY.items for name in item.tools)


@pytest.mark.parametrize(("item", "content", "status"), [
    ("add", "42", "pass"), ("add", "The answer is **42**.", "pass"), ("add", "41", "fail"), ("add", "forty", "fail"),
    ("add", "1,042", "fail"),
    ("copy", "QX7-ZEBRA-93", "pass"), ("copy", "`QX7-ZEBRA-93`.", "pass"), ("copy", "QX7-ZEBRA-39", "fail"),
    ("copy", "Sure: QX7-ZEBRA-93", "fail"),
    ("json", '{"capital_of_france": "Paris"}', "pass"), ("json", '```json\n{"capital_of_france": "Paris"}\n```', "pass"),
    ("json", '{"capital_of_france": "Lyon"}', "fail"), ("json", "Paris", "fail"),
    ("list", "Mercury, Venus, Earth", "pass"), ("list", "mercury,venus,earth.", "pass"), ("list", "Venus, Mercury, Earth", "fail"),
])
def test_rules(item: str, content: str, status: str) -> None:
    verdict = judge_answer(ITEMS[item], said(content))
    assert verdict.status == status, verdict.reason
    if status == "fail":
        assert "expected" in verdict.reason or "not JSON" in verdict.reason
        assert verdict.excerpt is not None  # what came back is shown


def test_tool_call_rule_names_what_was_wrong() -> None:
    item = ITEMS["tool"]
    good = ChoiceObservation(tool_calls=[ToolCall("c", "get_weather", '{"location": "Tokyo, Japan"}')])
    assert judge_answer(item, good).status == "pass"
    wrong_city = judge_answer(item, ChoiceObservation(tool_calls=[ToolCall("c", "get_weather", '{"location": "Paris"}')]))
    assert wrong_city.status == "fail" and "Tokyo" in wrong_city.reason and "Paris" in wrong_city.reason
    text = judge_answer(item, said("It is sunny."))
    assert text.status == "fail" and "expected a call to get_weather" in text.reason
    broken = judge_answer(item, ChoiceObservation(tool_calls=[ToolCall("c", "get_weather", '{"location": ')]))
    assert broken.status == "fail" and "not JSON" in broken.reason


def test_no_answer_is_not_a_wrong_answer() -> None:
    assert judge_answer(ITEMS["add"], ChoiceObservation(error="Request timed out.")).status == "skip"
    rejected = judge_answer(ITEMS["tool"], ChoiceObservation(error="400 tools unsupported", rejected=True))
    assert rejected.status == "fail"


def outcome(*statuses: str) -> QualityOutcome:
    result = QualityOutcome(threshold=0.8)
    result.results = [CheckResult(group="quality", name=f"i{n}", status=s, reason="r")  # type: ignore[arg-type]
                      for n, s in enumerate(statuses)]
    return result


def test_score_counts_wrong_answers_only() -> None:
    assert not outcome(*["pass"] * 6).failed and outcome(*["pass"] * 6).conclusive
    assert outcome(*["pass"] * 5, "fail").verdict().status == "pass"  # 5/6 = 83 % >= 80 %
    two_wrong = outcome(*["pass"] * 4, "fail", "fail")
    assert two_wrong.failed and two_wrong.verdict().status == "fail" and "wrong: i4" in two_wrong.summary()
    slow = outcome("pass", "pass", "skip", "skip", "skip", "skip")  # a full queue: unanswered, not wrong
    assert not slow.failed and not slow.conclusive and slow.verdict().status == "warn"
    assert "4 unanswered" in slow.summary()


def test_final_text() -> None:
    assert final_text("  `abc`. ") == "abc"
    assert final_text('```json\n{"a": 1}\n```') == '{"a": 1}'


def test_quality_probe_runs_when_due_and_drops_a_restarted_engine_s_outcome(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[float] = []

    def ask(self: QualityProbe) -> QualityOutcome:
        calls.append(time.monotonic())
        time.sleep(0.2)
        return outcome("fail", "fail", "fail")

    monkeypatch.setattr(QualityProbe, "_ask", ask)
    probe = QualityProbe(endpoint=None, every_s=0.05, timeout_s=1.0)
    try:
        assert probe.poll() is None  # not due yet
        time.sleep(0.06)
        assert probe.poll() is None and len(calls) == 0 or len(calls) <= 1  # submitted
        probe.restarted()  # the engine restarted while the run was in flight
        time.sleep(0.3)
        assert probe.poll() is None  # that run's outcome is dropped
        deadline = time.monotonic() + 5
        got = None
        while got is None and time.monotonic() < deadline:
            got = probe.poll()
            time.sleep(0.02)
        assert got is not None and got.failed
        assert len(calls) >= 2
    finally:
        probe.close()
