"""Everything doctor looks at, read once from the machine (never changed)."""

from __future__ import annotations

import grp
import json
import os
import shutil
import socket
import stat
from pathlib import Path

from pydantic import BaseModel, Field

from gptoss_deploy.hardware.types import Host

SECRET_ENV = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
PLAIN_ENV = ("HSA_OVERRIDE_GFX_VERSION", "TIKTOKEN_ENCODINGS_BASE", "HF_HOME", "HF_HUB_OFFLINE")


class DeviceNode(BaseModel):
    """A /dev node: present, mode, group, and whether this user may read and write it."""

    exists: bool
    mode: str | None = None
    group: str | None = None
    usable: bool = False


class HostFacts(BaseModel):
    """Readings doctor judges."""

    host: Host
    driver: str | None = None
    cuda: str | None = None  # the newest CUDA the driver supports (NVML)
    rocm: str | None = None
    kernel: str | None = None
    mem_total_bytes: int | None = None
    mem_available_bytes: int | None = None
    devices: dict[str, DeviceNode] = Field(default_factory=dict)
    secrets_present: dict[str, bool] = Field(default_factory=dict)  # names only, never values
    env: dict[str, str] = Field(default_factory=dict)
    cache_dir: str = ""
    disk_free_bytes: int | None = None
    shm_bytes: int | None = None
    port: int = 8000
    port_free: bool = True
    vocab_installed: bool = False
    vllm_version: str | None = None
    llama_server: str | None = None
    docker: bool = False
    docker_server: str | None = None  # the daemon's version when `docker info` got an answer from it
    docker_error: str | None = None  # why it did not (daemon down, socket permission), when docker is installed
    nvidia_ctk: bool = False
    cdi_specs: list[str] = Field(default_factory=list)
    docker_runtimes: list[str] = Field(default_factory=list)


def device_node(path: Path) -> DeviceNode:
    """What a device node looks like to this user."""
    try:
        info = path.stat()
    except OSError:
        return DeviceNode(exists=False)
    try:
        group = grp.getgrgid(info.st_gid).gr_name
    except KeyError:
        group = str(info.st_gid)
    return DeviceNode(exists=True, mode=oct(stat.S_IMODE(info.st_mode)), group=group,
                      usable=os.access(path, os.R_OK | os.W_OK))


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _hf_cache() -> Path:
    home = os.environ.get("HF_HOME")
    return Path(home) / "hub" if home else Path.home() / ".cache" / "huggingface" / "hub"


def _vllm_version() -> str | None:
    from gptoss_deploy.engines.vllm import find_python, installed_version
    from gptoss_deploy.errors import EngineError

    try:
        return installed_version(find_python(None))
    except (EngineError, OSError):
        return None


DOCKER_INFO_TIMEOUT_S = 10.0


def docker_server(docker: str | None) -> tuple[str | None, str | None]:
    """(the daemon's version, None) when `docker info` gets an answer from the daemon (through docker's own
    DOCKER_HOST and context), else (None, why); (None, None) without a docker binary. Reads only."""
    import subprocess

    if docker is None:
        return None, None
    try:
        done = subprocess.run([docker, "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True,
                              timeout=DOCKER_INFO_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return None, f"`docker info` got no answer within {DOCKER_INFO_TIMEOUT_S:g} s"
    except OSError as exc:
        return None, f"`docker info` could not run: {exc.strerror or exc}"
    version = done.stdout.strip()
    if done.returncode == 0 and version and "<no value>" not in version:
        return version, None
    lines = [line.strip() for line in (done.stderr or done.stdout).splitlines() if line.strip()]
    return None, (lines[-1] if lines else f"`docker info` exited with {done.returncode}")[:300]


def gather(port: int = 8000, root: Path = Path("/")) -> HostFacts:
    """Read the machine (sysfs/proc under `root`, NVML, /dev, disks, env names); changes nothing."""
    from gptoss_deploy.hardware.cpu import read_meminfo
    from gptoss_deploy.hardware.detect import detect_host
    from gptoss_deploy.hardware.nvidia import read_nvml
    from gptoss_deploy.vocab import is_installed

    host = detect_host(root)
    _, nvml = read_nvml() if root == Path("/") else ([], {})
    meminfo = read_meminfo(root)
    rocm_file = root / "opt/rocm/.info/version"
    kernel_file = root / "proc/sys/kernel/osrelease"
    cache = _hf_cache()
    devices = {p: device_node(root / p.lstrip("/")) for p in ("/dev/kfd", "/dev/dri/renderD128", "/dev/nvidiactl")}
    try:
        shm = os.statvfs(root / "dev/shm")
        shm_bytes: int | None = shm.f_frsize * shm.f_blocks
    except OSError:
        shm_bytes = None
    runtimes: list[str] = []
    try:
        runtimes = sorted(json.loads((root / "etc/docker/daemon.json").read_text()).get("runtimes", {}))
    except (OSError, ValueError, AttributeError):
        pass
    docker = shutil.which("docker")
    server, docker_error = docker_server(docker) if root == Path("/") else (None, None)
    cdi = [str(p) for d in ("etc/cdi", "var/run/cdi") for p in sorted((root / d).glob("*.yaml"))
           if (root / d).is_dir()]
    return HostFacts(
        host=host, driver=nvml.get("driver"), cuda=nvml.get("cuda"),
        rocm=rocm_file.read_text().strip() if rocm_file.exists() else None,
        kernel=kernel_file.read_text().strip() if kernel_file.exists() else None,
        mem_total_bytes=meminfo.get("MemTotal"), mem_available_bytes=meminfo.get("MemAvailable"),
        devices=devices, secrets_present={name: bool(os.environ.get(name)) for name in SECRET_ENV}
        | {"HF token file": (Path(os.environ.get("HF_HOME", Path.home() / ".cache/huggingface")) / "token").exists()},
        env={name: os.environ[name] for name in PLAIN_ENV if name in os.environ},
        cache_dir=str(cache), disk_free_bytes=shutil.disk_usage(_nearest_existing(cache)).free,
        shm_bytes=shm_bytes, port=port, port_free=_port_free(port), vocab_installed=is_installed(),
        vllm_version=_vllm_version(), llama_server=shutil.which("llama-server"), docker=bool(docker),
        docker_server=server, docker_error=docker_error,
        nvidia_ctk=bool(shutil.which("nvidia-ctk")), cdi_specs=cdi, docker_runtimes=runtimes)
