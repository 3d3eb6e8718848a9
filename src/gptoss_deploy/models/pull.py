"""`gptoss pull`: a model from the Hugging Face Hub into the local cache, before any engine starts.

Through the real `huggingface_hub` client (HF_ENDPOINT mirrors, HF_TOKEN, HF_HOME and HF_HUB_OFFLINE work as
everywhere else): the repository's file list with sizes and LFS sha256 first (`model_info(files_metadata=True)`),
then the size against the free disk of the cache, then each file (`hf_hub_download`, which resumes a partial
`.incomplete` blob), with progress read from the blobs on disk, then integrity: every file's size, and the sha256 of
every LFS file against the Hub's. A file that fails its check is deleted and the pull fails (never used). GGUF shard
sets (`-00001-of-00003.gguf`) must be complete. Offline, the cache is checked instead of downloaded.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from gptoss_deploy.errors import EngineError, InputError, IntegrityError

PULL_SCHEMA_VERSION = 1
HEADROOM_BYTES = 1 << 30  # keep 1 GiB free after the download
SHARD = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$")
DEFAULT_FILES = ("*.json", "*.safetensors", "*.jinja", "*.txt", "*.model", "*.tiktoken")


class RemoteFile(BaseModel):
    """One file of the repository, as the Hub lists it."""

    path: str
    size: int
    sha256: str | None = Field(None, description="the LFS object's sha256 (None for small git files)")


class PulledFile(BaseModel):
    """One file after the pull."""

    path: str
    size: int
    downloaded: bool = Field(description="False when it was already in the cache")
    verified: str = Field(description="sha256, size or none")


class PullReport(BaseModel):
    """What `gptoss pull` did (the `--json` output)."""

    schema_version: int = PULL_SCHEMA_VERSION
    repo_id: str
    revision: str
    endpoint: str
    snapshot: str
    total_bytes: int
    downloaded_bytes: int
    seconds: float
    files: list[PulledFile]


@dataclass
class Progress:
    """Callbacks the CLI draws with (all optional)."""

    start: Callable[[int, int], None] = lambda total, present: None         # bytes in total, already present
    file: Callable[[str, int], None] = lambda path, size: None              # a file starts
    advance: Callable[[int, int], None] = lambda file_bytes, all_bytes: None  # bytes so far: this file, all
    verify: Callable[[str], None] = lambda path: None
    note: Callable[[str], None] = lambda text: None


@dataclass
class PullPlan:
    """What a pull will fetch."""

    repo_id: str
    revision: str
    files: list[RemoteFile]
    present: dict[str, int] = field(default_factory=dict)  # path -> size of files already in the cache

    @property
    def total_bytes(self) -> int:
        """Bytes of every wanted file."""
        return sum(f.size for f in self.files)

    @property
    def missing_bytes(self) -> int:
        """Bytes still to download."""
        return sum(f.size for f in self.files if self.present.get(f.path) != f.size)


def hub_repo(name: str) -> str:
    """The Hub repository of a catalog id (`gpt-oss-20b` -> `openai/gpt-oss-20b`) or a repo id as given."""
    from gptoss_deploy.models import catalog

    spec = catalog.lookup(name)
    repo = spec.id if spec is not None else name
    if not re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", repo) or ".." in repo:
        raise InputError(f"{name!r} is not a Hub repository id or a catalog model",
                         hint="e.g. gpt-oss-20b, openai/gpt-oss-120b, ggml-org/gpt-oss-20b-GGUF")
    return repo


def wanted(files: list[RemoteFile], include: list[str]) -> list[RemoteFile]:
    """The files matching `include` (default: config, tokenizer, template and safetensors; every file of a GGUF
    repository would be every quantisation, so GGUF needs --include)."""
    patterns = include or list(DEFAULT_FILES)
    chosen = [f for f in files if any(fnmatch.fnmatch(f.path, p) or fnmatch.fnmatch(Path(f.path).name, p)
                                      for p in patterns)]
    if not chosen:
        kinds = sorted({Path(f.path).suffix or f.path for f in files})[:12]
        raise InputError(f"no file of the repository matches {', '.join(patterns)}",
                         hint=f"it holds {len(files)} files ({', '.join(kinds)}); pass --include PATTERN, e.g. "
                              "--include '*Q4_K_M*.gguf' for one GGUF quantisation")
    shard_sets: dict[str, set[int]] = {}
    totals: dict[str, int] = {}
    for f in chosen:
        match = SHARD.search(f.path)
        if match:
            stem = f.path[:match.start()]
            shard_sets.setdefault(stem, set()).add(int(match.group(1)))
            totals[stem] = int(match.group(2))
    for stem, have in shard_sets.items():
        missing = sorted(set(range(1, totals[stem] + 1)) - have)
        if missing:
            raise InputError(f"{stem}: the pattern selects {len(have)} of {totals[stem]} GGUF shards "
                             f"(missing {', '.join(f'{n:05d}' for n in missing[:5])})",
                             hint="widen --include to the whole shard set, e.g. '*Q4_K_M*'")
    return chosen


def hub_errors() -> tuple[type[BaseException], ...]:
    """What the Hub client raises for a network or HTTP failure (its transport is httpx2)."""
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError

    return (OSError, httpx2.HTTPError, HfHubHTTPError)


def _api() -> Any:
    from huggingface_hub import HfApi

    return HfApi()


def remote_plan(repo_id: str, revision: str | None, include: list[str]) -> PullPlan:
    """The repository's files (sizes, LFS sha256) at `revision` and which of them the cache already holds."""
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    try:
        info = _api().model_info(repo_id, revision=revision, files_metadata=True, timeout=30)
    except GatedRepoError as exc:
        raise InputError(f"{repo_id} is gated: {exc}", hint="accept its terms on the Hub and set HF_TOKEN") from None
    except RepositoryNotFoundError:
        raise InputError(f"{repo_id} does not exist on {endpoint()} (or needs a token)",
                         hint="check the id; private repositories need HF_TOKEN") from None
    except RevisionNotFoundError:
        raise InputError(f"{repo_id} has no revision {revision!r}", hint="use a branch, tag or commit that exists") from None
    except HfHubHTTPError as exc:
        raise EngineError(f"the Hub at {endpoint()} answered: {str(exc).splitlines()[0]}",
                          hint="retry; set HF_ENDPOINT for a mirror") from None
    except hub_errors() as exc:  # connection refused, DNS, timeouts
        raise EngineError(f"cannot reach the Hub at {endpoint()}: {type(exc).__name__}: {exc}",
                          hint="check the network, set HF_ENDPOINT for a mirror, or --offline for what is cached") from None
    files = [RemoteFile(path=s.rfilename, size=int(s.size or 0), sha256=(s.lfs.sha256 if s.lfs else None))
             for s in info.siblings or []]
    plan = PullPlan(repo_id=repo_id, revision=str(info.sha), files=wanted(files, include))
    plan.present = cached_sizes(plan)
    return plan


def endpoint() -> str:
    """The Hub endpoint in use (HF_ENDPOINT or the default)."""
    from huggingface_hub import constants

    return str(constants.ENDPOINT)


def cache_dir() -> Path:
    """The Hub cache (HF_HUB_CACHE / HF_HOME)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def repo_folder(repo_id: str) -> Path:
    """The repository's folder in the cache."""
    return cache_dir() / ("models--" + repo_id.replace("/", "--"))


def cached_sizes(plan: PullPlan) -> dict[str, int]:
    """Size of each wanted file already complete in the cache at the plan's revision."""
    from huggingface_hub import try_to_load_from_cache

    present = {}
    for f in plan.files:
        found = try_to_load_from_cache(plan.repo_id, f.path, revision=plan.revision)
        if isinstance(found, str) and os.path.exists(found):
            present[f.path] = os.path.getsize(found)
    return present


def check_disk(plan: PullPlan, target: Path | None = None) -> None:
    """Refuse (exit 2) when the missing bytes do not fit on the cache's disk with 1 GiB to spare."""
    where = target or cache_dir()
    probe = where
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    # a partial download already on disk counts as present
    partial = _partial_bytes(plan.repo_id)
    need = max(plan.missing_bytes - partial, 0)
    if need + HEADROOM_BYTES > free:
        raise InputError(f"{plan.repo_id} needs {_gib(need)} more on {probe} and only {_gib(free)} is free "
                         f"(with 1 GiB to spare)",
                         hint="free space there, or point HF_HOME (or HF_HUB_CACHE) at a larger disk")


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def _partial_bytes(repo_id: str) -> int:
    blobs = repo_folder(repo_id) / "blobs"
    try:
        return sum(p.stat().st_size for p in blobs.glob("*.incomplete"))
    except OSError:
        return 0


def _watch(repo_id: str, done_before: Callable[[], int], progress: Progress, stop: threading.Event) -> None:
    """Report the bytes on disk twice a second: the file being written (its .incomplete blob) and the total."""
    blobs = repo_folder(repo_id) / "blobs"
    while not stop.wait(0.5):
        current = _partial_bytes(repo_id) if blobs.exists() else 0
        progress.advance(current, done_before() + current)


def sha256_of(path: Path, chunk: int = 8 << 20) -> str:
    """The file's sha256."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def verify(path: Path, remote: RemoteFile) -> str:
    """Size, then the LFS sha256; IntegrityError (and the file removed from the cache) when either differs."""
    size = path.stat().st_size
    if size != remote.size:
        _discard(path)
        raise IntegrityError(f"{remote.path}: {size} bytes in the cache, the Hub lists {remote.size}; removed",
                             hint="run gptoss pull again to download it afresh")
    if remote.sha256 is None:
        return "size"
    got = sha256_of(path)
    if got != remote.sha256:
        _discard(path)
        raise IntegrityError(f"{remote.path}: sha256 {got[:16]}... does not match the Hub's {remote.sha256[:16]}...; "
                             "removed", hint="run gptoss pull again; if it repeats, the mirror (HF_ENDPOINT) serves "
                                             "corrupt data")
    return "sha256"


def _discard(path: Path) -> None:
    """Remove a cached file and the blob it links to."""
    target = path.resolve()
    for candidate in (path, target):
        try:
            candidate.unlink()
        except OSError:
            pass


def pull(repo_id: str, revision: str | None = None, include: list[str] | None = None, offline: bool = False,
         progress: Progress | None = None) -> PullReport:
    """Pull `repo_id` into the Hub cache (see the module docstring); offline: check the cache only."""
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    progress = progress or Progress()
    started = time.monotonic()
    if offline or os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return _offline(repo_id, revision, include or [], started)
    plan = remote_plan(repo_id, revision, include or [])
    check_disk(plan)
    present_total = sum(plan.present.get(f.path, 0) for f in plan.files if plan.present.get(f.path) == f.size)
    progress.start(plan.total_bytes, present_total)
    finished = [present_total]
    stop = threading.Event()
    watcher = threading.Thread(target=_watch, args=(repo_id, lambda: finished[0], progress, stop), daemon=True)
    watcher.start()
    pulled: list[PulledFile] = []
    downloaded = 0
    try:
        for remote in plan.files:
            already = plan.present.get(remote.path) == remote.size
            if not already:
                progress.file(remote.path, remote.size)
                try:
                    hf_hub_download(repo_id, remote.path, revision=plan.revision, etag_timeout=30)
                except hub_errors() as exc:
                    raise EngineError(f"{remote.path}: the download failed: {type(exc).__name__}: {exc}",
                                      hint="run gptoss pull again: it resumes from the bytes already on disk") from None
                finished[0] += remote.size
                downloaded += remote.size
            local = try_to_load_from_cache(repo_id, remote.path, revision=plan.revision)
            if not isinstance(local, str):
                raise EngineError(f"{remote.path} is not in the cache after its download", hint="run gptoss pull again")
            progress.verify(remote.path)
            pulled.append(PulledFile(path=remote.path, size=remote.size, downloaded=not already,
                                     verified=verify(Path(local), remote)))
    finally:
        stop.set()
        watcher.join(2)
    progress.advance(0, plan.total_bytes)
    _pin_ref(repo_id, revision or "main", plan.revision)
    return PullReport(repo_id=repo_id, revision=plan.revision, endpoint=endpoint(),
                      snapshot=str(repo_folder(repo_id) / "snapshots" / plan.revision), total_bytes=plan.total_bytes,
                      downloaded_bytes=downloaded, seconds=round(time.monotonic() - started, 2), files=pulled)


def _pin_ref(repo_id: str, ref: str, commit: str) -> None:
    """Point the cache's ref (main, a tag) at the commit pulled, as huggingface_hub does, so engines and offline
    lookups by name find this snapshot (every file was fetched by commit, never a moving branch)."""
    if ref == commit:
        return
    target = repo_folder(repo_id) / "refs" / ref
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(commit)


def _offline(repo_id: str, revision: str | None, include: list[str], started: float) -> PullReport:
    """Offline: the cached snapshot must hold every wanted file (sizes only: the Hub's hashes are not at hand)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        folder = Path(snapshot_download(repo_id, revision=revision, local_files_only=True))
    except LocalEntryNotFoundError:
        raise InputError(f"offline, and {repo_id} is not in the cache at {cache_dir()}",
                         hint="pull it once online (or copy the cache), or unset HF_HUB_OFFLINE") from None
    files = [RemoteFile(path=str(p.relative_to(folder)), size=p.stat().st_size)
             for p in sorted(folder.rglob("*")) if p.is_file()]
    chosen = wanted(files, include)
    return PullReport(repo_id=repo_id, revision=folder.name, endpoint="offline", snapshot=str(folder),
                      total_bytes=sum(f.size for f in chosen), downloaded_bytes=0,
                      seconds=round(time.monotonic() - started, 2),
                      files=[PulledFile(path=f.path, size=f.size, downloaded=False, verified="none") for f in chosen])


def is_cached(repo_id: str) -> bool:
    """Whether the cache holds a snapshot of the repository with its config and weights (no network)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        folder = Path(snapshot_download(repo_id, local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ValueError):
        return False
    return (folder / "config.json").exists() and any(folder.glob("*.safetensors"))
