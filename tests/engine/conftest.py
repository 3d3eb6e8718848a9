"""Engine-lane fixtures: the lane is built (or reused from ~/.cache/gptoss-deploy/lane) once per session."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from gptoss_deploy.lane import Lane, ensure_lane
from gptoss_deploy.lane.server import LaneServer


@pytest.fixture(scope="session")
def lane() -> Lane:
    return ensure_lane(progress=lambda text: print(text, file=sys.stderr, flush=True))


@pytest.fixture(scope="session")
def vllm_server(lane: Lane) -> Iterator[LaneServer]:
    with LaneServer(lane) as server:
        yield server
