"""What each artifact really starts, resolved with its runtime's rules, and checked against the plan.

Parsing an artifact says nothing about whether it comes up. Here every target is resolved the way its runtime
reads it: the image's real ENTRYPOINT/CMD/HEALTHCHECK (engines' image tables), `docker run`'s options (the script
is executed with a recording `docker`), compose's entrypoint/command rules and `$` interpolation, Kubernetes'
command/args and `$(VAR)` expansion, quadlet's Exec=/Environment=/HealthCmd= (podman's --health-cmd: a JSON array
is exec form, anything else `/bin/sh -c`), RunPod's dockerArgs appended to the ENTRYPOINT, a Dockerfile's
ENTRYPOINT/CMD/HEALTHCHECK with `gptoss serve --plan` replayed on its settings, and systemd's ExecStart with its
Environment=, specifiers, credentials and sandbox (DynamicUser, State/CacheDirectory, ProtectHome/ProtectSystem).

`check` then compares the result with the deployment: the process is the planned command; the health check runs
(Python compiles, the port is the container's, the key is carried where the route needs it and the runtime gives
it); GPUs, shared memory and volumes match what the process uses; the image is pinned and built for the host;
monitoring queries only what the engine exports, as its titles say."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

import yaml
from pydantic import BaseModel, Field

from gptoss_deploy.engines import Binding, registry
from gptoss_deploy.plan.types import Plan
from gptoss_deploy.render.deployment import HF_CACHE, SECRETS_DIR, Deployment

KEY_PLACEHOLDER = "<api-key>"
TOKEN_PLACEHOLDER = "<hf-token>"


class Resolved(BaseModel):
    """The process one artifact makes its runtime start, and what surrounds it."""

    target: str
    artifact: str
    image: str | None = None
    argv: list[str] = Field(description="the process the runtime starts")
    engine_argv: list[str] = Field(default_factory=list, description="the engine command (for `gptoss serve` "
                                                                     "artifacts: what serve builds from the plan file)")
    env: dict[str, str] = Field(default_factory=dict, description="secrets appear as <api-key> / <hf-token>")
    key_ways: list[list[str]] = Field(default_factory=list, description="alternative ways the artifact documents for "
                                                                        "giving the key (each: files / variables)")
    process_only: list[str] = Field(default_factory=list, description="variables only the engine process gets (set "
                                                                      "by its wrapper; a health check does not see them)")
    user: str = "root"
    health: list[str] | None = Field(None, description="the health check the runtime runs, exec form")
    health_from: str = "none"  # artifact | image | none
    http_probes: list[tuple[str, str, int | str]] = Field(default_factory=list, description="(kind, path, port)")
    gpus: int | None = Field(None, description="GPUs requested (None: the runtime has no such request)")
    gpu_flags: list[int] = Field(default_factory=list, description="GPU counts told to the process (ray --num-gpus)")
    shm_gib: float | None = None
    volumes: dict[str, tuple[str, bool]] = Field(default_factory=dict,
                                                 description="container path -> (source, persistent)")
    files: dict[str, str] = Field(default_factory=dict, description="container path -> source (secrets, host files)")
    writable: list[str] = Field(default_factory=list, description="systemd: where the unit may write")
    protected: list[str] = Field(default_factory=list, description="systemd: paths the unit cannot see")
    writes: dict[str, str] = Field(default_factory=dict, description="systemd: what the process writes -> path")
    reads: dict[str, str] = Field(default_factory=dict, description="systemd: what the process reads -> path")
    notes: list[str] = Field(default_factory=list)


class ResolveError(Exception):
    """An artifact that cannot be resolved (an option or form the resolver does not know is an error, not a guess)."""


# -- word splitting ------------------------------------------------------------------------------------------------
_C_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "f": "\f", "v": "\v", "\\": "\\", '"': '"',
              "'": "'", "s": " "}


def systemd_split(text: str) -> list[str]:
    """Words as systemd splits ExecStart=/Exec=/Environment= values: whitespace-separated, '…' and "…" quoting,
    C escapes (\\n, \\xHH, \\uHHHH …) unescaped."""
    words: list[str] = []
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            break
        word, quote, started = [], None, False
        while i < n:
            c = text[i]
            if quote is None and c.isspace():
                break
            if c in "'\"" and quote is None:
                quote, started = c, True
            elif c == quote:
                quote = None
            elif c == "\\" and i + 1 < n:
                i += 1
                e = text[i]
                if e in _C_ESCAPES:
                    word.append(_C_ESCAPES[e])
                elif e in "xuU":
                    width = {"x": 2, "u": 4, "U": 8}[e]
                    word.append(chr(int(text[i + 1:i + 1 + width], 16)))
                    i += width
                else:
                    raise ResolveError(f"unknown escape \\{e} in {text!r}")
            else:
                word.append(c)
            i += 1
        if quote is not None:
            raise ResolveError(f"unterminated quote in {text!r}")
        if word or started:
            words.append("".join(word))
    return words


def shell_command(script: str) -> list[str] | None:
    """The exec form of `/bin/sh -c script` when the script is one simple command (else None: a real shell)."""
    lexer = shlex.shlex(script, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        tokens = list(lexer)
    except ValueError:
        return None
    if any(t and all(c in "();<>|&" for c in t) for t in tokens) or "$" in script or "`" in script:
        return None
    return tokens


def last_exec(script: str) -> tuple[list[str], dict[str, str]] | None:
    """The command a `sh -c '… && [VAR="$(cat FILE)"] exec CMD'` script ends in (our multi-node scripts), exec form,
    and the variables read from files for it (VAR -> FILE)."""
    match = re.search(r'(?:^|&&\s*)((?:\w+="\$\(cat [^)]+\)"\s+)*)exec\s+([^&|;]*)$', script.strip())
    if match is None:
        return None
    files = dict(re.findall(r'(\w+)="\$\(cat ([^)]+)\)"', match.group(1)))
    return shlex.split(match.group(2)), files


def _unwrap_key_env(argv: list[str], env: dict[str, str], files: dict[str, str],
                    process_only: list[str]) -> list[str]:
    """Our key wrapper `/bin/sh -c 'VAR="$(cat FILE)" exec "$@"' engine ARGS…` -> ARGS, with VAR set from FILE for
    the engine process only."""
    if len(argv) >= 4 and argv[0] in ("/bin/sh", "sh") and argv[1] == "-c":
        match = re.fullmatch(r'(\w+)="\$\(cat ([^)]+)\)" exec "\$@"', argv[2])
        if match is None:
            raise ResolveError(f"the entrypoint is a shell script the resolver does not know: {argv[2]!r}")
        variable, path = match.groups()
        env[variable] = files.get(path, f"<missing file {path}>")
        process_only.append(variable)
        return argv[4:]
    return argv


def _device_gpus(devices: list[str]) -> int | None:
    """GPUs a device list gives: one per CDI nvidia.com/gpu=N or /dev/nvidiaN; AMD's /dev/kfd + /dev/dri give every
    GPU (-1: all; HIP_VISIBLE_DEVICES narrows it)."""
    if any(dev.split(":")[0] in ("/dev/kfd", "/dev/dri") for dev in devices):
        return -1
    count = sum(1 for dev in devices if re.search(r"nvidia\.com/gpu=(\d+|all)|/dev/nvidia\d", dev))
    if any(dev.endswith("nvidia.com/gpu=all") for dev in devices):
        return -1
    return count or None


def _secret_value(source: str) -> str:
    return TOKEN_PLACEHOLDER if "token" in source else KEY_PLACEHOLDER


def _gib(size: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?", size.strip().lower())
    if match is None:
        raise ResolveError(f"size {size!r} not understood")
    value, unit = float(match.group(1)), match.group(2)
    return value * {"": 1 / 2**30, "k": 1 / 2**20, "m": 1 / 2**10, "g": 1, "t": 2**10}[unit]


# -- docker run ----------------------------------------------------------------------------------------------------
_DOCKER_VALUE_OPTIONS = {"--secret", "--cidfile", "--cgroups", "--sdnotify", "--pull", "--name", "--restart", "--gpus", "--device", "--group-add", "--shm-size", "--security-opt",
                         "--stop-timeout", "--publish", "-p", "--volume", "-v", "--env", "-e", "--health-cmd",
                         "--health-interval", "--health-timeout", "--health-retries", "--health-start-period",
                         "--entrypoint", "--user", "-u", "--workdir", "-w", "--network", "--label", "--tmpfs",
                         "--ipc", "--ulimit", "--cap-add", "--cap-drop", "--runtime"}
_DOCKER_FLAGS = {"--replace", "--detach", "-d", "--rm", "--init", "--read-only", "--privileged", "--no-healthcheck", "-it", "-i",
                 "-t"}


def parse_docker_run(argv: list[str], env: dict[str, str], podman: bool = False) -> tuple[dict[str, list[str]], str,
                                                                                            list[str]]:
    """`docker run` argv -> (options, image, args). docker's --health-cmd is always CMD-SHELL; podman's is exec form
    when it is a JSON array."""
    if argv[:1] != ["run"]:
        raise ResolveError(f"expected `docker run`, got `docker {' '.join(argv[:1])}`")
    options: dict[str, list[str]] = {}
    i = 1
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("-"):
            return options, arg, argv[i + 1:]
        name, _, inline = arg.partition("=")
        if name in _DOCKER_FLAGS:
            options.setdefault(name, []).append("")
        elif name in _DOCKER_VALUE_OPTIONS:
            if not inline:
                i += 1
                inline = argv[i]
            options.setdefault({"-p": "--publish", "-v": "--volume", "-e": "--env", "-u": "--user",
                                "-w": "--workdir"}.get(name, name), []).append(inline)
        else:
            raise ResolveError(f"docker run option {name} is not known to the resolver")
        i += 1
    raise ResolveError("docker run without an image")


def _health_option(text: str, podman: bool) -> list[str]:
    if podman and text.startswith("["):
        value = json.loads(text)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ResolveError(f"--health-cmd JSON is not a list of strings: {text!r}")
        return value
    return ["/bin/sh", "-c", text]


def _image_defaults(d: Deployment, image: str) -> tuple[list[str], list[str], list[str] | None, dict[str, str]]:
    """ENTRYPOINT, CMD, HEALTHCHECK and ENV of `image` (the engine image's table; the same for an --image override,
    which is assumed to keep the engine image's layout)."""
    spec = d.image_spec
    if image != spec.name:
        raise ResolveError(f"image {image} is not the deployment's image {spec.name}")
    return list(spec.entrypoint), list(spec.cmd), spec.healthcheck, dict(spec.env)


def _run_options(d: Deployment, target: str, artifact: str, options: dict[str, list[str]], image: str,
                 args: list[str], env: dict[str, str], files: dict[str, str], podman: bool) -> Resolved:
    entrypoint, cmd, image_health, image_env = _image_defaults(d, image)
    if "--entrypoint" in options:
        entrypoint, cmd = [options["--entrypoint"][-1]], []
    argv = entrypoint + (args or cmd)
    container_env = dict(image_env)
    for item in options.get("--env", []):
        key, eq, value = item.partition("=")
        container_env[key] = value if eq else env.get(key, "")
    for spec in options.get("--secret", []):  # podman: NAME[,type=mount|env][,target=...]
        name, *opts = spec.split(",")
        settings = dict(opt.split("=", 1) for opt in opts)
        if settings.get("type", "mount") == "env":
            container_env[settings.get("target", name)] = _secret_value(name)
        else:
            target = settings.get("target", name)
            files[target if target.startswith("/") else f"/run/secrets/{target}"] = _secret_value(name)
    volumes: dict[str, tuple[str, bool]] = {}
    for spec in options.get("--volume", []):
        parts = spec.split(":")
        source, inside = parts[0], parts[1]
        if source in files:
            files[inside] = files[source]
        elif source.startswith(("/", ".")):
            files[inside] = source
        else:
            volumes[inside] = (source, True)  # a named volume outlives the container
    health: list[str] | None = image_health
    health_from = "image" if image_health else "none"
    if "--health-cmd" in options:
        health, health_from = _health_option(options["--health-cmd"][-1], podman), "artifact"
    if "--no-healthcheck" in options:
        health, health_from = None, "none"
    gpus = None
    if "--gpus" in options:
        value = options["--gpus"][-1]
        gpus = -1 if value == "all" else int(value.removeprefix("count="))
    elif "--device" in options:
        gpus = _device_gpus(options["--device"])
    shm = _gib(options["--shm-size"][-1]) if "--shm-size" in options else 64 / 1024
    return Resolved(target=target, artifact=artifact, image=image, argv=argv, env=container_env,
                    user=(options.get("--user") or ["root"])[-1], health=health, health_from=health_from,
                    gpus=gpus, shm_gib=shm, volumes=volumes, files=files)


def resolve_docker(d: Deployment, text: str, artifact: str = "docker-run.sh") -> Resolved:
    """Run the script with a `docker` that records its argv and environment, then read `docker run` as docker
    does (the image's ENTRYPOINT unless --entrypoint; --health-cmd through /bin/sh -c)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "docker").write_text('#!/bin/sh\nprintf "%s\\0" "$@" > "$RECORD_ARGV"\nenv -0 > "$RECORD_ENV"\n')
        (root / "docker").chmod(0o755)
        (root / "script.sh").write_text(text)
        key, token = root / "api_key", root / "hf_token"
        key.write_text(KEY_PLACEHOLDER)
        token.write_text(TOKEN_PLACEHOLDER)
        env = {"PATH": f"{root}:/usr/bin:/bin", "RECORD_ARGV": str(root / "argv"), "RECORD_ENV": str(root / "env"),
               "API_KEY_FILE": str(key), "HF_TOKEN_FILE": str(token), "HOME": tmp}
        out = subprocess.run(["bash", str(root / "script.sh")], env=env, capture_output=True, text=True, timeout=30)
        if out.returncode != 0 or not (root / "argv").exists():
            raise ResolveError(f"{artifact} did not reach `docker run` (exit {out.returncode}): {out.stderr.strip()[:300]}")
        argv = (root / "argv").read_text().split("\0")[:-1]
        seen = dict(item.partition("=")[::2] for item in (root / "env").read_text().split("\0") if "=" in item)
        options, image, args = parse_docker_run(argv, seen)
        files = {str(key): KEY_PLACEHOLDER, str(token): TOKEN_PLACEHOLDER}
        resolved = _run_options(d, "docker", artifact, options, image, args, seen, files, podman=False)
    resolved.files = {inside: source for inside, source in resolved.files.items() if inside.startswith("/")
                      and not inside.startswith(tmp)}
    return resolved


# -- compose -------------------------------------------------------------------------------------------------------
def compose_interpolate(value: Any, env: dict[str, str], unset: list[str]) -> Any:
    """Compose's interpolation on every string: $$ -> $, ${VAR} / $VAR from the environment (unset -> '')."""
    if isinstance(value, str):
        def substitute(match: re.Match[str]) -> str:
            if match.group(0) == "$$":
                return "$"
            name = match.group(1) or match.group(2)
            if name not in env:
                unset.append(name)
            return env.get(name, "")
        return re.sub(r"\$\$|\$\{(\w+)[^}]*\}|\$(\w+)", substitute, value)
    if isinstance(value, list):
        return [compose_interpolate(v, env, unset) for v in value]
    if isinstance(value, dict):
        return {k: compose_interpolate(v, env, unset) for k, v in value.items()}
    return value


def _as_list(value: Any) -> list[str]:
    return shlex.split(value) if isinstance(value, str) else list(value or [])


def resolve_compose(d: Deployment, text: str, artifact: str = "docker-compose.yml") -> Resolved:
    """The engine service as compose starts it: entrypoint replaces the image's (and drops its CMD), command
    replaces CMD; healthcheck CMD / CMD-SHELL / NONE, else the image's; deploy GPU reservations; secrets at
    /run/secrets/NAME."""
    unset: list[str] = []
    doc = compose_interpolate(yaml.safe_load(text), {}, unset)
    service = doc["services"][d.name]
    image = service["image"]
    entrypoint, cmd, image_health, image_env = _image_defaults(d, image)
    if "entrypoint" in service:
        entrypoint, cmd = _as_list(service["entrypoint"]), []
    if "command" in service:
        cmd = _as_list(service["command"])
    env = image_env | {str(k): str(v) for k, v in (service.get("environment") or {}).items()}
    files = {f"{SECRETS_DIR}/{name}": _secret_value(name) for name in service.get("secrets", [])}
    for name in service.get("secrets", []):
        if name not in doc.get("secrets", {}):
            raise ResolveError(f"secret {name} is not declared at the top level")
    process_only: list[str] = []
    argv = _unwrap_key_env(entrypoint + cmd, env, files, process_only)
    volumes: dict[str, tuple[str, bool]] = {}
    for spec in service.get("volumes", []):
        source, inside = spec.split(":")[:2]
        if source.startswith(("/", ".")):
            files[inside] = source
        elif source not in (doc.get("volumes") or {}):
            raise ResolveError(f"volume {source} is not declared at the top level")
        else:
            volumes[inside] = (source, True)
    health, health_from = image_health, "image" if image_health else "none"
    test = (service.get("healthcheck") or {}).get("test")
    if test:
        test = _as_list(test) if isinstance(test, list) else ["CMD-SHELL", test]
        if test[0] == "CMD":
            health, health_from = test[1:], "artifact"
        elif test[0] == "CMD-SHELL":
            health, health_from = ["/bin/sh", "-c", " ".join(test[1:])], "artifact"
        elif test[0] == "NONE":
            health, health_from = None, "none"
    devices = (((service.get("deploy") or {}).get("resources") or {}).get("reservations") or {}).get("devices") or []
    gpus = None
    for device in devices:
        count = device.get("count", device.get("device_ids") and len(device["device_ids"]))
        gpus = (gpus or 0) + (-1 if count == "all" else int(count or 0))
    if "devices" in service:
        gpus = _device_gpus(service["devices"])
    shm = _gib(str(service["shm_size"])) if "shm_size" in service else 64 / 1024
    notes = [f"unset variables interpolated as empty: {sorted(set(unset))}"] if unset else []
    return Resolved(target="compose", artifact=artifact, image=image, argv=argv, env=env, process_only=process_only,
                    user=service.get("user", "root"), health=health, health_from=health_from, gpus=gpus,
                    shm_gib=shm, volumes=volumes, files=files, notes=notes)


# -- kubernetes ----------------------------------------------------------------------------------------------------
def k8s_expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion in command/args/env ($$ escapes; an unknown variable stays as written)."""
    return re.sub(r"\$\$|\$\((\w+)\)", lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), value)


def _k8s_container(d: Deployment, target: str, artifact: str, pod: dict[str, Any], pvcs: dict[str, list[str]],
                   role: str) -> Resolved:
    container = pod["containers"][0]
    image = container["image"]
    entrypoint, cmd, _image_health, image_env = _image_defaults(d, image)
    env = dict(image_env)
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = k8s_expand(str(item["value"]), env)
        elif "fieldRef" in item.get("valueFrom", {}):
            env[item["name"]] = f"<{item['valueFrom']['fieldRef']['fieldPath']}>"  # the downward API, per pod
        else:
            ref = item.get("valueFrom", {}).get("secretKeyRef", {})
            env[item["name"]] = _secret_value(ref.get("key", ""))
    if "command" in container:
        entrypoint, cmd = [k8s_expand(a, env) for a in container["command"]], []
    if "args" in container:
        cmd = [k8s_expand(a, env) for a in container["args"]]
    argv = entrypoint + cmd
    volumes_by_name = {v["name"]: v for v in pod.get("volumes", [])}
    volumes: dict[str, tuple[str, bool]] = {}
    files: dict[str, str] = {}
    shm = 64 / 1024
    for mount in container.get("volumeMounts", []):
        volume = volumes_by_name.get(mount["name"])
        if volume is None:
            raise ResolveError(f"volumeMount {mount['name']} names no volume")
        inside = mount["mountPath"]
        if "persistentVolumeClaim" in volume:
            claim = volume["persistentVolumeClaim"]["claimName"]
            if claim not in pvcs:
                raise ResolveError(f"claim {claim} is not in the manifest")
            volumes[inside] = (f"pvc/{claim} ({', '.join(pvcs[claim])})", True)
        elif "emptyDir" in volume:
            if inside == "/dev/shm":
                shm = _gib(str(volume["emptyDir"].get("sizeLimit", "64Mi")).replace("Gi", "g").replace("Mi", "m"))
            else:
                volumes[inside] = ("emptyDir", False)
        elif "secret" in volume:
            files[inside] = _secret_value(mount.get("subPath", volume["secret"]["secretName"]))
        elif "hostPath" in volume:
            files[inside] = volume["hostPath"]["path"]
    health: list[str] | None = None
    probes: list[tuple[str, str, int | str]] = []
    ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        probe = container.get(kind)
        if not probe:
            continue
        if "exec" in probe:
            health = list(probe["exec"]["command"])
        elif "httpGet" in probe:
            port = probe["httpGet"]["port"]
            probes.append((kind, probe["httpGet"]["path"], ports.get(port, port) if isinstance(port, str) else port))
    limits = (container.get("resources") or {}).get("limits") or {}
    gpus = sum(int(v) for k, v in limits.items() if k.endswith("/gpu")) if limits else None
    gpu_flags = [int(n) for n in re.findall(r"--num-gpus[= ](\d+)", " ".join(argv))]
    process_only: list[str] = []
    if argv[:2] in (["sh", "-c"], ["/bin/sh", "-c"]) and len(argv) == 3:
        tail = last_exec(argv[2])
        if tail is None:
            raise ResolveError(f"{role}: the shell script does not end in `exec COMMAND`")
        argv, read = tail
        for variable, path in read.items():
            env[variable] = files.get(path, f"<missing file {path}>")
            process_only.append(variable)
    else:
        argv = _unwrap_key_env(argv, env, files, process_only)
    return Resolved(target=target, artifact=f"{artifact} ({role})", image=image, argv=argv, env=env,
                    process_only=process_only, health=health,
                    health_from="artifact" if health else "none", http_probes=probes, gpus=gpus, gpu_flags=gpu_flags,
                    shm_gib=shm, volumes=volumes, files=files,
                    user=str((container.get("securityContext") or {}).get("runAsUser", "root")))


def resolve_kubernetes(d: Deployment, text: str, artifact: str = "kubernetes.yaml") -> list[Resolved]:
    """The Deployment's container (command replaces ENTRYPOINT, args replace CMD, $(VAR) expanded), or the
    LeaderWorkerSet's leader and worker; probes; GPU limits; PVC-backed volumes."""
    docs = [doc for doc in yaml.safe_load_all(text) if doc]
    pvcs = {doc["metadata"]["name"]: doc["spec"]["accessModes"] for doc in docs
            if doc["kind"] == "PersistentVolumeClaim"}
    out = []
    for doc in docs:
        if doc["kind"] == "Deployment":
            out.append(_k8s_container(d, "kubernetes", artifact, doc["spec"]["template"]["spec"], pvcs, "Deployment"))
        elif doc["kind"] == "LeaderWorkerSet":
            template = doc["spec"]["leaderWorkerTemplate"]
            out.append(_k8s_container(d, "kubernetes", artifact, template["leaderTemplate"]["spec"], pvcs, "leader"))
            worker = _k8s_container(d, "kubernetes", artifact, template["workerTemplate"]["spec"], pvcs, "worker")
            worker.notes.append("worker: joins the leader (vLLM --headless, or a Ray cluster); serves no HTTP")
            out.append(worker)
    if not out:
        raise ResolveError("no Deployment or LeaderWorkerSet in the manifest")
    return out


# -- quadlet -------------------------------------------------------------------------------------------------------
def unit_sections(text: str) -> dict[str, list[tuple[str, str]]]:
    """A systemd-style unit: section -> [(key, value)] in order (repeated keys kept), continuation lines joined."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    pending = ""
    for raw in text.splitlines():
        line = pending + raw
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", ";")):
            continue
        if stripped.startswith("[") and stripped.endswith("]"):
            current = stripped[1:-1]
            sections.setdefault(current, [])
            continue
        if current is None or "=" not in stripped:
            raise ResolveError(f"line outside a section or without '=': {stripped!r}")
        key, _, value = stripped.partition("=")
        sections[current].append((key.strip(), value.strip()))
    return sections


def _values(section: list[tuple[str, str]], key: str) -> list[str]:
    return [v for k, v in section if k == key]


QUADLET_OPTIONS = {"ContainerName": "--name", "PublishPort": "--publish", "Volume": "--volume", "AddDevice": "--device",
                   "ShmSize": "--shm-size", "Secret": "--secret", "HealthInterval": "--health-interval",
                   "HealthStartPeriod": "--health-start-period", "HealthTimeout": "--health-timeout",
                   "HealthRetries": "--health-retries", "GroupAdd": "--group-add", "User": "--user",
                   "Entrypoint": "--entrypoint"}
QUADLET_IGNORED = {"Image", "Exec", "Environment", "HealthCmd", "NoNewPrivileges", "Notify"}


def quadlet_podman_run(text: str) -> list[str]:
    """The `podman run` argv quadlet generates for a .container unit (podman-systemd.unit(5)): Exec= words (systemd
    splitting) after the image, Environment= words as --env KEY=VALUE, HealthCmd= passed to --health-cmd as written,
    Notify=healthy as --sdnotify=healthy. An unknown key is an error."""
    container = unit_sections(text).get("Container")
    if container is None:
        raise ResolveError("no [Container] section")
    argv = ["run", "--replace", "--rm", "--cgroups=split", "--detach"]
    for key, value in container:
        if key in QUADLET_OPTIONS:
            argv += [QUADLET_OPTIONS[key], value]
        elif key == "Environment":
            for word in systemd_split(value):
                argv += ["--env", word]
        elif key == "HealthCmd":
            argv += ["--health-cmd", value]
        elif key == "NoNewPrivileges" and value.lower() in ("yes", "true", "1"):
            argv += ["--security-opt", "no-new-privileges"]
        elif key == "Notify":
            argv += ["--sdnotify", "healthy" if value == "healthy" else "container"]
        elif key not in QUADLET_IGNORED:
            raise ResolveError(f"quadlet key {key}= is not known to the resolver")
    images = _values(container, "Image")
    if len(images) != 1:
        raise ResolveError(f"{len(images)} Image= lines")
    exec_words = [w for value in _values(container, "Exec") for w in systemd_split(value)]
    if any("%" in w for w in exec_words):
        raise ResolveError("Exec= has a '%': systemd would expand it as a specifier in the generated unit")
    return argv + [images[0], *exec_words]


def resolve_quadlet(d: Deployment, text: str, artifact: str) -> Resolved:
    """The `podman run` quadlet generates, read with podman's rules (a JSON-array --health-cmd is exec form)."""
    options, image, args = parse_docker_run(quadlet_podman_run(text), {})
    resolved = _run_options(d, "quadlet", artifact, options, image, args, {}, {}, podman=True)
    if "healthy" in options.get("--sdnotify", []):
        resolved.notes.append("Notify=healthy: the unit is started once the health check passes (podman >= 5.0)")
    return resolved


# -- runpod --------------------------------------------------------------------------------------------------------
def resolve_runpod(d: Deployment, text: str, artifact: str = "runpod.json") -> Resolved:
    """RunPod appends dockerArgs to the image's ENTRYPOINT; env as given ({{ RUNPOD_SECRET_x }} filled by RunPod);
    the network volume at volumeMountPath survives restarts. RunPod runs no HEALTHCHECK."""
    pod = json.loads(text)
    entrypoint, cmd, _health, image_env = _image_defaults(d, pod["imageName"])
    args = shlex.split(pod.get("dockerArgs") or "")
    env = image_env | {k: (_secret_value(v) if "RUNPOD_SECRET" in v else v) for k, v in pod.get("env", {}).items()}
    return Resolved(target="runpod", artifact=artifact, image=pod["imageName"], argv=entrypoint + (args or cmd),
                    env=env, gpus=int(pod.get("gpuCount", 0)), health=None, health_from="none",
                    volumes={pod["volumeMountPath"]: ("network volume", True)},
                    notes=["RunPod runs no health check: check it with `gptoss check` (runpod-README.md)",
                           "RunPod sizes /dev/shm itself: runpod-README.md says how much the engine needs"])


# -- gptoss serve artifacts (image, systemd) ------------------------------------------------------------------------
def serve_engine_argv(serve_argv: list[str], env: dict[str, str], plan_text: str, files: dict[str, str]) -> tuple[
        list[str], Plan, str]:
    """What `gptoss serve ARGS` builds from a plan file with the process's environment: the engine command (program
    left out), the plan it read, and the served name. The real serve parser and settings code do the work."""
    from gptoss_deploy.cli.main import build_parser
    from gptoss_deploy.cli.serve_cmd import settings_from
    from gptoss_deploy.planning import load_plan
    from gptoss_deploy.serve.service import served_name

    with tempfile.TemporaryDirectory() as tmp:
        plan_path = Path(tmp) / "plan.json"
        plan_path.write_text(plan_text)
        argv = list(serve_argv)
        key_index = argv.index("--api-key-file") if "--api-key-file" in argv else None
        if key_index is not None:  # the key file is the container's / the credential's: read the placeholder
            key_path = Path(tmp) / "api_key"
            key_path.write_text(files.get(argv[key_index + 1], KEY_PLACEHOLDER))
            argv[key_index + 1] = str(key_path)
        argv[argv.index("--plan") + 1] = str(plan_path)
        args = build_parser().parse_args(argv)
        settings = settings_from(args, config_file=False, environ=env)
        plan = load_plan(plan_path)
    engine = registry.for_plan(plan)
    name = served_name(settings, plan.model)
    command = engine.command(plan, Binding(program=["<engine>"], model=engine.model_reference(plan),
                                           host=settings.host, port=settings.port, served_name=name))
    return command[1:], plan, name


def resolve_image(d: Deployment, artifacts: dict[str, str]) -> Resolved:
    """The built image: ENTRYPOINT gptoss-entrypoint (sshd if asked, the key file flag when the secret is mounted,
    then `exec gptoss serve "$@"`), CMD the plan flags, HEALTHCHECK as written, ENV from the Dockerfile over the
    base image's."""
    from dockerfile_parse import DockerfileParser

    with tempfile.TemporaryDirectory() as tmp:
        parser = DockerfileParser(path=tmp)
        parser.content = artifacts["Dockerfile"]
        structure = parser.structure
        base = parser.baseimage
        dockerfile_env = dict(parser.envs)
    _entry, _cmd, image_health, image_env = _image_defaults(d, base)
    env = image_env | dockerfile_env

    def exec_form(instruction: str) -> list[str] | None:
        values = [i["value"] for i in structure if i["instruction"] == instruction]
        if not values:
            return None
        value = values[-1]
        if not value.startswith("["):
            return ["/bin/sh", "-c", value]
        return list(json.loads(value))

    entrypoint, cmd = exec_form("ENTRYPOINT") or [], exec_form("CMD") or []
    if entrypoint != ["/usr/local/bin/gptoss-entrypoint"] or "exec gptoss serve \"$@\"" not in artifacts["entrypoint.sh"]:
        raise ResolveError("the image's ENTRYPOINT is not the rendered gptoss-entrypoint")
    health, health_from = image_health, "image" if image_health else "none"
    checks = [i["value"] for i in structure if i["instruction"] == "HEALTHCHECK"]
    if checks:
        match = re.search(r"\bCMD\s+(.*)$", checks[-1], re.S)
        if match is None:
            raise ResolveError(f"HEALTHCHECK without CMD: {checks[-1]!r}")
        text = match.group(1).strip()
        health = list(json.loads(text)) if text.startswith("[") else ["/bin/sh", "-c", text]
        health_from = "artifact"
    files = {f"{SECRETS_DIR}/api_key": KEY_PLACEHOLDER} if d.api_key else {}
    serve_argv = ["serve"] + (["--api-key-file", f"{SECRETS_DIR}/api_key"] if d.api_key else []) + cmd
    plan_file = serve_argv[serve_argv.index("--plan") + 1]
    copies = [i["value"].split() for i in structure if i["instruction"] == "COPY"]
    plan_name = next((c[-2] for c in copies if c[-1] == plan_file), None)
    if plan_name is None or plan_name not in artifacts:
        raise ResolveError(f"the Dockerfile copies no rendered plan file to {plan_file}, which CMD serves")
    engine_argv, plan, name = serve_engine_argv(serve_argv, env, artifacts[plan_name], files)
    resolved = Resolved(target="image", artifact="Dockerfile", image=base, argv=["gptoss", *serve_argv], env=env,
                        engine_argv=engine_argv, health=health, health_from=health_from, files=files,
                        key_ways=[[f"{SECRETS_DIR}/api_key"], ["API_KEY"]] if d.api_key else [],
                        user=(exec_form("USER") or ["root"])[-1])
    resolved.notes.append(f"serves {plan.model} as {name!r}")
    resolved.env["<served-name>"] = name
    return resolved


SPECIFIERS = {"%%": "%"}


def resolve_systemd(d: Deployment, artifacts: dict[str, str], unit_name: str) -> Resolved:
    """ExecStart= with %d as the credentials folder, Environment= (KEY=VALUE words), the sandbox: DynamicUser (no
    home: HOME must be set), State/Cache/Logs/RuntimeDirectory=, ReadWritePaths=, ProtectSystem=strict (read-only
    elsewhere), ProtectHome=yes (/home, /root, /run/user invisible), PrivateTmp."""
    sections = unit_sections(artifacts[unit_name])
    service = sections.get("Service", [])
    credentials = "/run/credentials/" + unit_name
    exec_start = _values(service, "ExecStart")
    if len(exec_start) != 1:
        raise ResolveError(f"{len(exec_start)} ExecStart= lines")
    words = []
    for word in systemd_split(exec_start[0].lstrip("-@:+!")):
        for spec in re.findall(r"%.", word):
            if spec not in ("%d", "%%"):
                raise ResolveError(f"ExecStart= uses the specifier {spec}, which the resolver does not expand")
        words.append(word.replace("%d", credentials).replace("%%", "%"))
    env: dict[str, str] = {}
    for value in _values(service, "Environment"):
        for word in systemd_split(value):
            key, _, val = word.partition("=")
            env[key] = val
    files = {f"{credentials}/{v.split(':')[0]}": _secret_value(v.split(":")[0]) for v in _values(service, "LoadCredential")}
    dynamic = (_values(service, "DynamicUser") or ["no"])[-1] in ("yes", "true", "1")
    user = (_values(service, "User") or ["<dynamic>" if dynamic else "root"])[-1]
    writable = [f"/var/lib/{v}" for value in _values(service, "StateDirectory") for v in value.split()]
    writable += [f"/var/cache/{v}" for value in _values(service, "CacheDirectory") for v in value.split()]
    writable += [f"/var/log/{v}" for value in _values(service, "LogsDirectory") for v in value.split()]
    writable += [f"/run/{v}" for value in _values(service, "RuntimeDirectory") for v in value.split()]
    writable += [p.lstrip("-") for value in _values(service, "ReadWritePaths") for p in value.split()]
    protect_system = (_values(service, "ProtectSystem") or ["strict" if dynamic else "no"])[-1]
    if protect_system in ("no", "false"):
        writable.append("/")
    elif protect_system != "strict":  # yes / full: only /usr, /boot, /efi (and /etc for full) are read-only
        writable += ["/var", "/opt", "/srv", "/home", "/root", "/tmp"] + ([] if protect_system == "full" else ["/etc"])
    if (_values(service, "PrivateTmp") or ["yes" if dynamic else "no"])[-1] in ("yes", "true", "1") or dynamic:
        writable += ["/tmp", "/var/tmp"]
    writable.append("/dev/shm")
    protect_home = (_values(service, "ProtectHome") or ["read-only" if dynamic else "no"])[-1]
    protected = ["/home", "/root", "/run/user"] if protect_home in ("yes", "true", "tmpfs") else []
    if protect_home == "read-only":
        writable = [w for w in writable if not _under(w, ["/home", "/root", "/run/user"])]
    serve_argv = words[1:]
    if serve_argv[:1] != ["serve"] or "--plan" not in serve_argv:
        raise ResolveError(f"ExecStart does not run `gptoss serve --plan`: {exec_start[0]}")
    plan_name = PurePosixPath(serve_argv[serve_argv.index("--plan") + 1]).name
    if plan_name not in artifacts:
        raise ResolveError(f"ExecStart serves {plan_name}, which was not rendered beside the unit")
    engine_argv, plan, name = serve_engine_argv(serve_argv, env, artifacts[plan_name], files)
    home = env.get("HOME", "/" if dynamic else "/root")
    cache_root = env.get("XDG_CACHE_HOME", f"{home}/.cache")
    writes = {"HOME (gptoss's cache, logs)": home, "Hugging Face cache (HF_HOME)": env.get("HF_HOME", f"{cache_root}/huggingface"),
              "vLLM / torch compile caches (XDG_CACHE_HOME)": cache_root}
    if "--log-file" in serve_argv:
        writes["log file"] = str(PurePosixPath(serve_argv[serve_argv.index("--log-file") + 1]).parent)
    reads = {"gptoss": words[0], "plan file": serve_argv[serve_argv.index("--plan") + 1]}
    if plan.model.startswith("/"):
        reads["model"] = plan.model
    vocab = plan.env.get("TIKTOKEN_ENCODINGS_BASE")
    if vocab:
        reads["harmony vocab"] = vocab
    resolved = Resolved(target="systemd", artifact=unit_name, argv=words, engine_argv=engine_argv, env=env, user=user,
                        files=files, writable=writable, protected=protected, writes=writes, reads=reads,
                        health=None, health_from="none")
    resolved.env["<served-name>"] = name
    resolved.notes.append("health: Type=notify + WatchdogSec (gptoss serve sends READY=1 once the model answers and "
                          "WATCHDOG=1 while a 1-token canary succeeds)")
    return resolved


def _under(path: str, roots: Iterable[str]) -> bool:
    p = PurePosixPath(path)
    return any(p == PurePosixPath(r) or PurePosixPath(r) in p.parents for r in roots)


# -- every artifact ------------------------------------------------------------------------------------------------
def resolve_all(d: Deployment, artifacts: dict[str, str]) -> list[Resolved]:
    """Every artifact that starts something, resolved (NixOS: not resolvable without Nix; monitoring: checked on
    its own)."""
    out: list[Resolved] = []
    if "docker-run.sh" in artifacts:
        out.append(resolve_docker(d, artifacts["docker-run.sh"]))
    if "docker-compose.yml" in artifacts:
        out.append(resolve_compose(d, artifacts["docker-compose.yml"]))
    if "kubernetes.yaml" in artifacts:
        out += resolve_kubernetes(d, artifacts["kubernetes.yaml"])
    for name in artifacts:
        if name.endswith(".container"):
            out.append(resolve_quadlet(d, artifacts[name], name))
        elif name.endswith(".service"):
            out.append(resolve_systemd(d, artifacts, name))
    if "runpod.json" in artifacts:
        out.append(resolve_runpod(d, artifacts["runpod.json"]))
    if "Dockerfile" in artifacts:
        out.append(resolve_image(d, artifacts))
    return out


# -- checks --------------------------------------------------------------------------------------------------------
def _without_program(command: list[str], program: list[str]) -> list[str]:
    return command[len(program):] if command[:len(program)] == program else command


def _health_problems(r: Resolved, d: Deployment) -> list[str]:
    if r.target in ("runpod", "systemd") or r.artifact.endswith("(worker)"):
        return []  # no container health check on RunPod; systemd uses notify + watchdog; Ray workers serve no HTTP
    if r.health is None and not r.http_probes:
        return ["no health check: the runtime cannot tell a loading or stuck engine from a serving one"]
    problems = []
    for kind, path, port in r.http_probes:
        if port != d.container_port:
            problems.append(f"{kind} probes port {port}, the engine listens on {d.container_port}")
        if path != registry.get(d.engine).health_path:
            problems.append(f"{kind} probes {path}, the engine's health route is {registry.get(d.engine).health_path}")
    health = r.health
    if health is None:
        return problems
    if health[:2] in (["/bin/sh", "-c"], ["sh", "-c"]):
        simple = shell_command(health[2])
        if simple is None:
            problems.append(f"the health check is a shell script the resolver cannot read: {health[2]!r}")
            return problems
        health = simple
    text = " ".join(health)
    if health[:2] == ["python3", "-c"] or health[:2] == ["python", "-c"]:
        if len(health) != 3:
            problems.append(f"python -c takes one program; the health check passes {len(health) - 2} words")
        else:
            try:
                compile(health[2], "<health>", "exec")
            except SyntaxError as exc:
                problems.append(f"the health check's Python does not compile: {exc.msg} ({health[2][:60]!r}...)")
        if not d.image_has_python:
            problems.append(f"the health check runs python3, which {d.image} does not have")
    elif health[0] == "curl" and not d.image_spec.has_curl:
        problems.append(f"the health check runs curl, which {d.image} does not have")
    ports = {int(p) for p in re.findall(r"(?:127\.0\.0\.1|localhost):(\d+)", text)}
    if ports != {d.container_port}:
        problems.append(f"the health check ({r.health_from}'s) probes port(s) {sorted(ports)}, the engine listens on "
                        f"{d.container_port}")
    if d.api_key and "/v1/" in text:
        read = [source for source in (f"{SECRETS_DIR}/api_key", "API_KEY", d.key_env or "-") if f"'{source}'" in text]
        given = [s for s in r.files if r.files[s] == KEY_PLACEHOLDER] + [
            k for k, v in r.env.items() if v == KEY_PLACEHOLDER and k not in r.process_only]
        for way in r.key_ways or [given]:
            if not set(way) & set(read):
                problems.append("the health check asks a route that needs the API key but "
                                + (f"reads it from {read}" if read else "sends none")
                                + (f", and the key is given as {way}" if way else ", and the runtime gives it none"))
    name = r.env.get("<served-name>", d.served_name)
    if "/v1/models" in text and f"'{name}'" not in text:
        problems.append(f"the health check waits for a model name the server does not serve ({name!r})")
    return problems


def _key_problems(r: Resolved, d: Deployment) -> list[str]:
    if not d.api_key or r.target in ("image", "systemd") or r.artifact.endswith("(worker)"):
        return []  # serve passes the key itself; Ray workers serve no HTTP
    engine = registry.get(d.engine)
    if d.key_env and r.env.get(d.key_env) == KEY_PLACEHOLDER:
        return []
    if engine.key_variable and r.env.get(engine.key_variable) == KEY_PLACEHOLDER:
        return []
    if engine.key_file_flag and engine.key_file_flag in r.argv:
        path = r.argv[r.argv.index(engine.key_file_flag) + 1]
        return [] if r.files.get(path) == KEY_PLACEHOLDER else [f"{engine.key_file_flag} {path}: no key is mounted there"]
    return ["an API key was asked for, but the engine is given none: the endpoint would be open"]


def check_resolved(r: Resolved, d: Deployment, plan: Plan) -> list[str]:
    """Why the resolved artifact does not run the plan as planned (empty: it does)."""
    problems: list[str] = []
    if r.target in ("image", "systemd"):
        expected = _without_program(d.command, d.program)
        if r.target == "systemd":
            expected = registry.for_plan(plan).command(plan, Binding(
                program=["<engine>"], model=registry.for_plan(plan).model_reference(plan), host=d.bind,
                port=d.host_port, served_name=d.served_name))[1:]
        if r.engine_argv != expected:
            problems.append(f"`gptoss serve` would start `{shlex.join(r.engine_argv)}`, the plan's command is "
                            f"`{shlex.join(expected)}`")
    elif r.artifact.endswith("(worker)") and d.node_args:
        expected = [*d.command, *d.node_args["worker"]]
        if r.argv != expected:
            problems.append(f"the worker runs `{shlex.join(r.argv)}`, not the plan's command as a headless node: "
                            f"`{shlex.join(expected)}`")
        if "VLLM_HOST_IP" not in r.env:
            problems.append("the worker does not advertise its own address (VLLM_HOST_IP): the head cannot reach it")
    elif r.artifact.endswith("(worker)"):
        if r.argv[:2] != ["ray", "start"] or "--block" not in r.argv:
            problems.append(f"the worker runs `{shlex.join(r.argv)}`, not a Ray worker that stays in the foreground")
    elif r.artifact.endswith("(leader)") and d.node_args:
        expected = [*d.command, *d.node_args["leader"]]
        if r.argv != expected:
            problems.append(f"the leader runs `{shlex.join(r.argv)}`, the plan's head node runs `{shlex.join(expected)}`")
    elif r.target == "runpod":
        from gptoss_deploy.render.targets import runpod_command

        expected = runpod_command(d, plan)[0]
        if r.argv != expected:
            problems.append(f"RunPod starts `{shlex.join(r.argv)}`, the plan's command is `{shlex.join(expected)}`")
    elif r.argv != d.command:
        problems.append(f"the runtime starts `{shlex.join(r.argv)}`, the plan's command is `{shlex.join(d.command)}`")
    problems += _health_problems(r, d) + _key_problems(r, d)
    if r.image is not None and r.target != "image":
        problems += image_problems(d, plan, r.image)
    if d.vendor != "cpu" and r.gpus == -1:
        visible = r.env.get("HIP_VISIBLE_DEVICES") or r.env.get("CUDA_VISIBLE_DEVICES")
        seen = len(visible.split(",")) if visible else d.gpus_per_node
        if seen != d.gpu_count:
            problems.append(f"every GPU ({d.gpus_per_node}) is given and {seen} are visible; the engine uses "
                            f"{d.gpu_count}")
    elif d.vendor != "cpu" and r.gpus is not None and r.gpus != d.gpu_count:
        problems.append(f"the manifest requests {r.gpus} GPU(s), the engine uses {d.gpu_count}")
    if d.vendor == "nvidia" and d.gpu_count and r.gpus is None and r.target not in ("systemd", "image"):
        problems.append(f"no GPU is requested; the engine uses {d.gpu_count}")
    for flag in r.gpu_flags:
        if r.gpus is not None and flag != r.gpus:
            problems.append(f"Ray is told --num-gpus={flag}, the pod is given {r.gpus}")
    if r.shm_gib is not None and r.target not in ("systemd", "runpod", "image") and r.shm_gib < d.shm_size_gib:
        problems.append(f"shared memory {r.shm_gib:g} GiB, the engine needs {d.shm_size_gib} GiB (NCCL, vLLM's "
                        "message queues)")
    if r.target not in ("systemd", "image") and not r.artifact.endswith("(worker)"):
        cache = r.volumes.get(HF_CACHE)
        if cache is None or not cache[1]:
            problems.append(f"{HF_CACHE} is not on a volume that survives a restart: every start downloads again")
        elif d.nodes > 1 and "ReadWriteMany" not in cache[0]:
            problems.append(f"{d.nodes} pods share the weights' cache, but its claim is not ReadWriteMany")
        for host_path, inside in d.mounts.items():
            if r.target == "runpod":
                continue
            if r.files.get(inside) != host_path:
                problems.append(f"{host_path} (the plan reads it) is not mounted at {inside}")
    if r.target == "systemd":
        for what, path in r.writes.items():
            if not path.startswith("/") or not _under(path, r.writable):
                problems.append(f"{what} is {path}, which the unit's sandbox does not let it write")
        for what, path in r.reads.items():
            if _under(path, r.protected):
                problems.append(f"the {what} ({path}) is under a home folder, which ProtectHome hides from the unit")
    return problems


def image_problems(d: Deployment, plan: Plan, image: str) -> list[str]:
    """An image that is not pinned to the planned release, or is not published for the host's platform."""
    problems = []
    engine = registry.for_plan(plan)
    tag = image.rpartition(":")[2] if ":" in image.rpartition("/")[2] else "latest"
    version = engine.version_of(plan)
    if tag == "latest" or "@sha256:" not in image and not re.search(r"\d", tag):
        problems.append(f"image {image} is not pinned (a moving tag)")
    elif version is not None and version not in tag and "@sha256:" not in image:
        problems.append(f"image {image} is not the planned {engine.label} {version}")
    arch = {"x86_64": "linux/amd64", "amd64": "linux/amd64", "aarch64": "linux/arm64", "arm64": "linux/arm64"}
    host = plan.hardware
    platform = arch.get(host.cpu.arch) if host is not None and host.cpu.arch else None
    if image == d.image_spec.name and platform and platform not in d.image_spec.platforms:
        problems.append(f"image {image} is published for {', '.join(d.image_spec.platforms)}, the host is {platform}")
    return problems


# -- monitoring ----------------------------------------------------------------------------------------------------
PROMQL_WORDS = {"by", "without", "and", "or", "unless", "on", "ignoring", "group_left", "group_right", "bool",
                "offset", "le", "inf", "nan"}
SUFFIXES = ("_total", "_bucket", "_sum", "_count", "_created")


def metric_family(name: str) -> str:
    """A series name's family (vllm:foo_total -> vllm:foo)."""
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression reads (functions, keywords, labels, durations and numbers left out)."""
    text = re.sub(r'"[^"]*"', "", expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        word = match.group(0)
        after = text[match.end():].lstrip()
        if after.startswith("(") or word.lower() in PROMQL_WORDS:
            continue
        names.add(word)
    return names


def monitoring_problems(d: Deployment, artifacts: dict[str, str]) -> list[str]:
    """Panels and alerts that read metrics the engine does not export, or show something other than their title."""
    spec = registry.get(d.engine).monitoring(d.name)
    exported = {metric_family(m) for m in spec.exported} | {"up"}
    problems = []
    alerts = yaml.safe_load(artifacts["monitoring/alerts.yml"])
    for rule in alerts["groups"][0]["rules"]:
        missing = {n for n in metric_names(rule["expr"]) if metric_family(n) not in exported}
        if missing:
            problems.append(f"alert {rule['alert']} reads {sorted(missing)}, which {d.engine} does not export")
    dashboard = json.loads(artifacts["monitoring/grafana/dashboards/gptoss.json"])
    for panel in dashboard["panels"]:
        title, exprs = panel["title"], [t["expr"] for t in panel["targets"]]
        for expr in exprs:
            missing = {n for n in metric_names(expr) if metric_family(n) not in exported}
            if missing:
                problems.append(f"panel {title!r} reads {sorted(missing)}, which {d.engine} does not export")
        if " / " in title and len(exprs) < 2:
            problems.append(f"panel {title!r} names {title.count(' / ') + 1} series but has {len(exprs)} query")
        for q, label in (("0.5", "p50"), ("0.99", "p99"), ("0.9", "p90"), ("0.95", "p95")):
            if label in title and not any(f"histogram_quantile({q}," in e for e in exprs):
                problems.append(f"panel {title!r} says {label} but no query is the {q} quantile")
        if "/s" in title and not all("rate(" in e for e in exprs):
            problems.append(f"panel {title!r} is a rate, but a query is not")
    prometheus = yaml.safe_load(artifacts["monitoring/prometheus.yml"])
    scrape = prometheus["scrape_configs"][0]
    if d.api_key and spec.needs_key and "authorization" not in scrape:
        problems.append("/metrics needs the API key, but the scrape sends none")
    return problems


def check(d: Deployment, plan: Plan, artifacts: dict[str, str]) -> list[tuple[str, list[str]]]:
    """(artifact, problems) for every artifact that runs something, and for the monitoring files."""
    results: list[tuple[str, list[str]]] = []
    try:
        resolved = resolve_all(d, artifacts)
    except ResolveError as exc:
        return [("(resolve)", [str(exc)])]
    for r in resolved:
        results.append((r.artifact, check_resolved(r, d, plan)))
    if "monitoring/alerts.yml" in artifacts:
        results.append(("monitoring/", monitoring_problems(d, artifacts)))
    return results

