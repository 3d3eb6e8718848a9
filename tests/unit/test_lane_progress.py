"""The lane's progress lines: what a build log line says about how far a long step got."""

from __future__ import annotations

from gptoss_deploy.lane import _progress_line


def test_training_steps_carry_loss_and_time_left() -> None:
    assert _progress_line("t", "[tiny-model 43.6s] step 0/600 loss 12.2180") == "!step 0/600, loss 12.218"
    line = _progress_line("t", "[tiny-model 60.0s] step 150/600 loss 0.1443")
    assert line == "!step 150/600, loss 0.144, about 3 min left"


def test_cmake_percent_and_pip_lines() -> None:
    assert _progress_line("b", "[ 45%] Building CXX object src/llama.cpp.o") == "compiling, 45%"
    assert _progress_line("p", "Collecting torch==2.13.0").startswith("Collecting torch")
    assert _progress_line("p", "Requirement already satisfied: x") is None
