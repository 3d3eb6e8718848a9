"""systemd's sd_notify protocol (READY=1, WATCHDOG=1, STATUS=..., STOPPING=1) without libsystemd.

Neither vLLM nor llama-server speaks it, so `gptoss serve` does: READY only once the model answers.
A no-op when NOTIFY_SOCKET is unset (not under systemd with Type=notify).
"""

from __future__ import annotations

import os
import socket


def notify(*fields: str) -> bool:
    """Send fields such as "READY=1" to $NOTIFY_SOCKET; True when sent."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto("\n".join(fields).encode(), address)
    except OSError:
        return False
    return True
