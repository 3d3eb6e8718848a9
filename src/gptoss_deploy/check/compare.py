"""What an intermediary changes: the same checks against a server directly and through a proxy (LiteLLM, a gateway),
compared row by row. A row differs when its status or its reason changed (a reasoning field renamed, a chunk more
in a stream, an error wrapped in the proxy's own message)."""

from __future__ import annotations

from pydantic import BaseModel

from gptoss_deploy.check.report import CheckReport


class Difference(BaseModel):
    """One check whose outcome differs through the proxy."""

    group: str
    name: str
    direct: str
    proxied: str
    direct_reason: str
    proxied_reason: str


def differences(direct: CheckReport, proxied: CheckReport, groups_left_out: tuple[str, ...] = ("security",)) -> list[Difference]:
    """Rows present in both reports whose status or reason differ (the security rows left out by default: a proxy
    has routes of its own), plus the reasoning field when the proxy renamed it."""
    through = {(r.group, r.name): r for r in proxied.results}
    found = []
    if direct.reasoning_field != proxied.reasoning_field:
        found.append(Difference(group="chat", name="reasoning field name", direct=str(direct.reasoning_field),
                                proxied=str(proxied.reasoning_field), direct_reason="", proxied_reason=""))
    for row in direct.results:
        other = through.get((row.group, row.name))
        if row.group in groups_left_out or other is None:
            continue
        if other.status != row.status or other.reason != row.reason:
            found.append(Difference(group=row.group, name=row.name, direct=row.status, proxied=other.status,
                                    direct_reason=row.reason, proxied_reason=other.reason))
    return found
