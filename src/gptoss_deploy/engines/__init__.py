"""Engines turn a Plan into a launch: an argv list and an environment (never a shell string).

Both engines have the same shape: `launch(plan, endpoint, ...) -> Launch`. Secrets never enter argv: vLLM gets
the API key through VLLM_API_KEY, llama.cpp through --api-key-file (a 0600 file); HF tokens only through env.
Binding to a non-loopback address without an API key is refused.
"""

from __future__ import annotations

import ipaddress
import os
import shlex
import tempfile
from pathlib import Path

from pydantic import BaseModel, Field

from gptoss_deploy.errors import InputError

SECRET_ENV = ("VLLM_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
SERVED_NAME_DEFAULT = "gpt-oss"


class Endpoint(BaseModel):
    """Where the server listens and what it answers to."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    served_name: str = SERVED_NAME_DEFAULT
    api_key: str | None = Field(None, repr=False)

    @property
    def headers(self) -> dict[str, str]:
        """Authorization header for requests to this endpoint."""
        return bearer(self.api_key)

    @property
    def base_url(self) -> str:
        """http://host:port as a client on this machine reaches it."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"


class Launch(BaseModel):
    """A ready-to-run engine command."""

    engine: str
    argv: list[str]
    env: dict[str, str] = Field(default_factory=dict, repr=False, description="variables set on top of os.environ")
    files: list[str] = Field(default_factory=list, description="files written for the launch (key files)")

    def masked_env(self) -> dict[str, str]:
        """The env with secrets replaced by '***' (for logs, --dry-run and artifacts)."""
        return {k: ("***" if k in SECRET_ENV else v) for k, v in self.env.items()}

    def remove_files(self) -> None:
        """Delete the files written for the launch (key files); safe to call more than once."""
        for path in self.files:
            Path(path).unlink(missing_ok=True)

    def describe(self) -> str:
        """The command as a person would read it, secrets masked."""
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(self.masked_env().items()))
        return (env + " " if env else "") + shlex.join(self.argv)


def bearer(api_key: str | None) -> dict[str, str]:
    """The Authorization header for a key (none without one)."""
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def require_auth_off_loopback(endpoint: Endpoint) -> None:
    """Refuse an open endpoint on a non-loopback address."""
    if not is_loopback(endpoint.host) and not endpoint.api_key:
        raise InputError(f"refusing to listen on {endpoint.host} without an API key: anyone who can reach it could "
                         "use the model", hint="set API_KEY (or --api-key-file), or bind to 127.0.0.1")


def hf_token_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """HF token variables to pass through (never printed: masked_env hides them)."""
    source = os.environ if environ is None else environ
    return {k: source[k] for k in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN") if source.get(k)}


def write_key_file(api_key: str, directory: Path | None = None) -> Path:
    """A 0600 file holding the API key (for llama-server --api-key-file)."""
    handle, name = tempfile.mkstemp(prefix="gptoss-key-", dir=directory)
    os.fchmod(handle, 0o600)
    with os.fdopen(handle, "w") as sink:
        sink.write(api_key + "\n")
    return Path(name)
