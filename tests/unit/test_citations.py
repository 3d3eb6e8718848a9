"""Every citation a plan can print must be one a user can open.

The packaged data files print their `source` strings to users. A citation is acceptable when it is a public URL, GitHub
shorthand that names the repository (`vllm-project/vllm#123`), a vendor document's name, or a `docs/...` path that
ships inside the package. Private notes (our fact base, our measurement notes, our tracker's "issue #N") are not.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml

DATA_DIR = Path(str(resources.files("gptoss_deploy") / "data"))
PACKAGE_DIR = DATA_DIR.parent

# Generated data (tools/vllm_surface.py): its only sources are the release tags it was read from.
NOT_YET_CHECKED = {"vllm_surface.yaml"}

# Private references that must not ship anywhere in a checked file (comments included).
PRIVATE = [
    (re.compile(r"gptoss-facts", re.IGNORECASE), "the private fact base"),
    (re.compile(r"measured-h100", re.IGNORECASE), "the private measurement notes"),
    (re.compile(r"shared/reference", re.IGNORECASE), "a private reference path"),
    (re.compile(r"\bissues?\s*#\s*\d+", re.IGNORECASE), "a tracker issue without its repository"),
]
# `#123` must follow `owner/repo` (GitHub shorthand); `https://…/issues/123` carries no `#`.
ISSUE_NUMBER = re.compile(r"#\d+")
REPO_BEFORE = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+$")
# A `docs/...` path standing on its own (not the tail of a URL or of another path).
DOCS_PATH = re.compile(r"(?<![\w./-])docs/[\w./-]*[\w/]")


def checked_files() -> list[Path]:
    return sorted(p for p in DATA_DIR.glob("*.yaml") if p.name not in NOT_YET_CHECKED)


def citations(node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(where, text) for every `source` value and every entry of a `sources` mapping."""
    if isinstance(node, dict):
        for key, value in node.items():
            where = f"{path}.{key}" if path else str(key)
            if key == "source" and isinstance(value, str):
                yield where, value
            elif key == "sources" and isinstance(value, dict):
                for name, text in value.items():
                    if isinstance(text, str):
                        yield f"{where}.{name}", text
            else:
                yield from citations(value, where)
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from citations(item, f"{path}[{index}]")


def bare_issue_numbers(text: str) -> list[str]:
    """`#N` not preceded by an `owner/repo` name."""
    return [m.group(0) for m in ISSUE_NUMBER.finditer(text) if not REPO_BEFORE.search(text[: m.start()])]


def missing_docs(text: str) -> list[str]:
    """`docs/...` paths that do not exist in the package."""
    return [m.group(0) for m in DOCS_PATH.finditer(text) if not (PACKAGE_DIR / m.group(0).rstrip("/")).exists()]


@pytest.mark.parametrize("path", checked_files(), ids=lambda p: p.name)
def test_no_private_reference_ships(path: Path) -> None:
    text = path.read_text()
    found = [f"{why}: {m.group(0)!r}" for pattern, why in PRIVATE for m in pattern.finditer(text)]
    assert not found, f"{path.name}: {found}"


@pytest.mark.parametrize("path", checked_files(), ids=lambda p: p.name)
def test_every_citation_can_be_opened(path: Path) -> None:
    problems = []
    for where, text in citations(yaml.safe_load(path.read_text())):
        problems += [f"{where}: {n} without owner/repo" for n in bare_issue_numbers(text)]
        problems += [f"{where}: {d} is not in the package" for d in missing_docs(text)]
    assert not problems, "\n".join(problems)


def test_the_checks_catch_what_they_should() -> None:
    assert bare_issue_numbers("vllm#46464; see #53013") == ["#46464", "#53013"]
    assert bare_issue_numbers("vllm-project/vllm#46464, ggml-org/llama.cpp#27720") == []
    assert bare_issue_numbers("https://github.com/vllm-project/vllm/issues/46464") == []
    assert missing_docs("docs/measured/h100-vllm-0.23.0.md") == []
    assert missing_docs("see docs/measured/nothing.md") == ["docs/measured/nothing.md"]
    assert missing_docs("https://github.com/vllm-project/vllm/blob/main/docs/design/x.md") == []
    assert all(p.search(t) for (p, _), t in zip(PRIVATE, ["gptoss-facts.md §3", "measured-h100.md",
                                                         "shared/reference/x", "issue #2"], strict=True))


def test_the_measurement_document_and_its_log_ship() -> None:
    measured = PACKAGE_DIR / "docs" / "measured"
    assert (measured / "h100-vllm-0.23.0.md").is_file()
    assert (measured / "vllm-0.23.0-h100-gpt-oss-20b-dummy.log").is_file()
