"""Error types shown to users: each carries a message (what and why) and a hint (what to do).

Tree::

    GptossError                 exit 1: something failed
    ├── InputError              exit 2: the user's input is wrong (flag, file, name)
    │   ├── UnknownProfileError
    │   ├── ModelConfigError
    │   └── UnknownModelError
    ├── DataError               a packaged data file is broken (a bug in this tool)
    ├── EngineError             an engine could not be started, probed or built
    └── IntegrityError          a file failed its checksum (never used silently)

`cli.main` is the single boundary that turns these into a message on stderr and an exit code;
anything else is a bug and re-raises (with `--debug`) or prints a short bug notice.
"""

from __future__ import annotations


class GptossError(Exception):
    """Base class: a failure the user should read, with a hint on what to do next."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def to_dict(self) -> dict[str, str | int | None]:
        """The error as JSON-ready data (for `--json` output)."""
        return {
            "error": type(self).__name__,
            "message": self.message,
            "hint": self.hint,
            "exit_code": self.exit_code,
        }


class InputError(GptossError, ValueError):
    """The input (a flag, a file, a name) is wrong; fixing the input fixes the problem."""

    exit_code = 2


class UnknownProfileError(InputError):
    """A hardware profile or GPU name that the data files do not know."""


class UnknownModelError(InputError):
    """A model id that is neither in the catalog, a local directory, a GGUF file nor reachable."""


class ModelConfigError(InputError):
    """A model's config.json (or GGUF header) is missing, malformed or lacks a field."""


class DataError(GptossError):
    """A packaged data file is malformed: a bug in gpt-oss-deploy, not in the user's input."""


class EngineError(GptossError):
    """An engine (vLLM, llama.cpp) could not be built, started or probed."""


class IntegrityError(GptossError):
    """A file failed its integrity check (checksum mismatch); it is never used."""
