"""Startup progress by phase: a rich bar on a terminal, plain `[LOADING] ...` lines otherwise (containers, CI).

The percentage is a rough guide: each phase owns a span of the bar and fills it when the log shows its own
progress (checkpoint shards, CUDA graphs, downloaded bytes).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any

from gptoss_deploy.hardware.types import GIB
from gptoss_deploy.serve.logparse import LogState, Phase

PLAIN_EVERY_S = 15.0
SPANS: dict[Phase, tuple[int, int]] = {
    Phase.STARTING: (0, 5), Phase.DOWNLOAD: (5, 40), Phase.WEIGHTS: (40, 70), Phase.COMPILE: (70, 80),
    Phase.PROFILE: (80, 84), Phase.KV_CACHE: (84, 86), Phase.CUDA_GRAPHS: (86, 96), Phase.API: (96, 99),
    Phase.READY: (100, 100), Phase.FAILED: (0, 0),
}


@dataclass
class Snapshot:
    """What the supervisor knows at one moment of the startup."""

    state: LogState
    elapsed_s: float
    quiet_s: float
    downloaded_bytes: int | None = None
    download_total_bytes: int | None = None
    gpu_used_bytes: int | None = None


def phase_fraction(snap: Snapshot) -> tuple[float | None, str]:
    """(fraction of the current phase done or None, a detail such as '3/5 shards')."""
    facts, phase = snap.state.facts, snap.state.phase
    if phase is Phase.WEIGHTS and "shards_total" in facts:
        done, total = int(facts["shards_done"]), int(facts["shards_total"])
        return done / total, f"{done}/{total} shards"
    if phase is Phase.CUDA_GRAPHS and "graphs_total" in facts:
        done, total = int(facts["graphs_done"]), int(facts["graphs_total"])
        return done / total, f"{done}/{total} graphs"
    if snap.downloaded_bytes is not None and phase in (Phase.STARTING, Phase.DOWNLOAD):
        got = f"{snap.downloaded_bytes / GIB:.1f} GiB"
        if snap.download_total_bytes:
            return min(1.0, snap.downloaded_bytes / snap.download_total_bytes), \
                f"{got} of {snap.download_total_bytes / GIB:.1f} GiB downloaded"
        return None, f"{got} downloaded"
    return None, ""


def percent(snap: Snapshot) -> int:
    """Overall startup percentage."""
    low, high = SPANS[snap.state.phase]
    fraction, _ = phase_fraction(snap)
    return int(low + (high - low) * (fraction or 0.0))


def describe(snap: Snapshot) -> str:
    """'loading weights 3/5 shards, GPU 12.3 GiB'."""
    _, detail = phase_fraction(snap)
    parts = [snap.state.phase.value + (f" {detail}" if detail else "")]
    if snap.gpu_used_bytes is not None:
        parts.append(f"GPU {snap.gpu_used_bytes / GIB:.1f} GiB in use")
    if snap.quiet_s >= 60:
        parts.append(f"no new log line for {snap.quiet_s:.0f} s")
    return ", ".join(parts)


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}:{secs:02d}"


class StartupProgress:
    """Shows startup progress on stderr; `enabled=False` prints nothing but events."""

    def __init__(self, enabled: bool = True, tty: bool | None = None) -> None:
        self.enabled = enabled
        self.tty = sys.stderr.isatty() if tty is None else tty
        self._last_line = ("", 0.0)
        self._bar: Any = None  # a rich Progress, created on the first update
        self._task = None

    def update(self, snap: Snapshot) -> None:
        """Show the newest state (rate-limited in plain mode)."""
        if not self.enabled:
            return
        text = describe(snap)
        if self.tty:
            self._rich(snap, text)
            return
        phase = snap.state.phase.value
        now = time.monotonic()
        if phase != self._last_line[0] or now - self._last_line[1] >= PLAIN_EVERY_S:
            print(f"[LOADING] {_clock(snap.elapsed_s)} ({percent(snap)}%) - {text}", file=sys.stderr, flush=True)
            self._last_line = (phase, now)

    def _rich(self, snap: Snapshot, text: str) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        if self._bar is None:
            self._bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                 TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn(),
                                 console=Console(stderr=True), transient=True)
            self._bar.start()
            self._task = self._bar.add_task(text, total=100)
        self._bar.update(self._task, description=text, completed=percent(snap))

    def event(self, text: str) -> None:
        """A line that must be seen (restarts, failures, readiness)."""
        if self._bar is not None:
            self._bar.console.print(text)
        else:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        """Remove the bar."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
