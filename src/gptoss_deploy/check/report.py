"""The check report: one row per check (pass / warn / fail / skip), versioned for --json."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

CHECK_SCHEMA_VERSION = 1
Status = Literal["pass", "warn", "fail", "skip"]


class CheckResult(BaseModel):
    """One check: its status, a one-line reason, and what was sent/received when it did not pass."""

    group: str
    name: str
    status: Status
    reason: str
    excerpt: str | None = None


class CheckReport(BaseModel):
    """Every check against one endpoint."""

    schema_version: int = CHECK_SCHEMA_VERSION
    url: str
    model: str
    engine: str | None = None
    engine_version: str | None = None
    reasoning_field: str | None = Field(None, description="reasoning_content or reasoning, as the server names it")
    results: list[CheckResult] = Field(default_factory=list)

    @property
    def failed(self) -> bool:
        """True when any check failed."""
        return any(r.status == "fail" for r in self.results)

    def counts(self) -> dict[str, int]:
        """How many checks ended in each status."""
        return {s: sum(r.status == s for r in self.results) for s in ("pass", "warn", "fail", "skip")}
