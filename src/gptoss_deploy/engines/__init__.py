"""Engines: everything the tool knows about each inference engine, behind one interface (engines/base.py).

`registry` holds the engines (vLLM and llama.cpp built in); callers ask it for an engine by plan or name and
never compare engine names themselves. The shared vocabulary (Endpoint, Binding, Launch, key helpers) is
re-exported here.
"""

from __future__ import annotations

from gptoss_deploy.engines.base import (
                                        SERVED_NAME_DEFAULT,
                                        Binding,
                                        Endpoint,
                                        Engine,
                                        Launch,
                                        bearer,
                                        hf_token_env,
                                        is_loopback,
                                        require_auth_off_loopback,
                                        write_key_file,
)

__all__ = ["SERVED_NAME_DEFAULT", "Binding", "Endpoint", "Engine", "Launch", "bearer", "hf_token_env", "is_loopback",
           "require_auth_off_loopback", "write_key_file"]
