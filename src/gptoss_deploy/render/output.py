"""Render targets to a folder (never overwriting unless asked, then keeping a .bak) and validate each artifact
with a real tool where one is installed (systemd-analyze, bash -n, kubernetes-validate), else a parse."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel

from gptoss_deploy.errors import InputError
from gptoss_deploy.hardware.types import Host
from gptoss_deploy.plan.types import Plan
from gptoss_deploy.render.deployment import Deployment, RenderOptions, build, check_options
from gptoss_deploy.render.targets import TARGETS, Artifact, header

ALL = tuple(TARGETS)
MULTI_NODE = ("kubernetes", "bare", "monitoring")  # what runs one server across nodes; the rest start one machine


class Validation(BaseModel):
    """One artifact's check: passed, failed, or not run (the tool is missing here): never "ok" when skipped."""

    artifact: str
    tool: str
    status: Literal["ok", "failed", "skipped"]
    detail: str = ""

    @property
    def failed(self) -> bool:
        """The check ran and found a problem."""
        return self.status == "failed"


def _result(artifact: str, tool: str, ok: bool, detail: str = "") -> Validation:
    return Validation(artifact=artifact, tool=tool, status="ok" if ok else "failed", detail=detail)


def _skipped(artifact: str, tool: str, why: str) -> Validation:
    return Validation(artifact=artifact, tool=tool, status="skipped", detail=why)


def render(targets: list[str], plan: Plan, host: Host, options: RenderOptions,
           extra: dict[str, Any] | None = None) -> tuple[Deployment, list[Artifact]]:
    """The deployment and every artifact of `targets` ('all' = every target + an index README)."""
    unknown = [t for t in targets if t not in TARGETS and t != "all"]
    if unknown:
        raise InputError(f"unknown render target {unknown[0]!r}", hint=f"targets: {', '.join(ALL)}, all")
    check_options(options, extra)
    d = build(plan, host, options)
    if d.nodes > 1:
        single = [t for t in targets if t not in MULTI_NODE and t != "all"]
        if single:
            raise InputError(f"the plan spans {d.nodes} nodes; the {single[0]} target starts one machine",
                             hint="render kubernetes (a LeaderWorkerSet), bare (a script per node) or monitoring; "
                                  "or plan for one node")
    context = (extra or {}) | {"api_key_file": options.api_key_file, "hf_token_file": options.hf_token_file,
                               "gpu_key": host.gpu.key if host.gpu else None}
    names = (list(ALL) if d.nodes == 1 else list(MULTI_NODE)) if "all" in targets else targets
    artifacts: list[Artifact] = []
    for name in names:
        if name == "monitoring" and "compose" in names and context.get("monitoring"):
            continue  # compose already wrote the monitoring files
        artifacts += TARGETS[name](d, plan, context)
    if "all" in targets:
        artifacts.append(index_readme(d, names))
    seen: dict[str, Artifact] = {}
    for artifact in artifacts:
        seen.setdefault(artifact.name, artifact)
    return d, list(seen.values())


def index_readme(d: Deployment, names: list[str]) -> Artifact:
    """How to use each artifact."""
    lines = [header(d, ">"), "", f"# Deploying {d.served_name}", "",
             f"Image: `{d.image}`" + (f" ({d.image_note})" if d.image_note else ""), "",
             f"Engine command (exec form): `{' '.join(d.command)}`", ""]
    lines += [f"**Note:** {note}" for note in d.notes] + ([""] if d.notes else [])
    how = {"docker": "`./docker-run.sh` starts the container (set API_KEY_FILE / HF_TOKEN_FILE to the files).",
           "compose": "`docker compose up -d`; the healthcheck asks /health and that /v1/models lists the model.",
           "image": "`pip wheel -w dist/ <gpt-oss-deploy checkout>` then `docker build -t gptoss .`: an image whose "
                    f"entrypoint is `gptoss serve --plan` on `{d.name}.image.plan.json` (the plan, with the container's "
                    "paths); sshd only with PUBLIC_KEY/SSH_PUBLIC_KEY, password only with SSH_PASSWORD. vLLM plans only.",
           "quadlet": f"podman: copy `{d.name}.container` to /etc/containers/systemd/, `systemctl daemon-reload`, "
                      f"`systemctl start {d.name}`.",
           "nixos": "`imports = [ ./gptoss.nix ];` and `services.gptoss.enable = true;` (kernel parameters and udev "
                    "rules for AMD are in the module, commented where they are recommendations).",
           "systemd": f"copy `{d.name}.service` to /etc/systemd/system and `{d.name}.plan.json` to {d.plan_file}, "
                      f"`systemctl enable --now {d.name}` (no user to create: DynamicUser); `gptoss serve` signals "
                      "READY and feeds the watchdog.",
           "kubernetes": "create the Secrets named in `kubernetes.yaml`, then `kubectl apply -f kubernetes.yaml`.",
           "runpod": "see `runpod-README.md`: create the pod from `runpod.json` with a TCP port.",
           "bare": ("hosts without containers: `serve.sh` runs `gptoss serve --plan` on the plan file beside it (on every "
                    "node, behind a balancer, for replicas)" if d.nodes == 1 else
                    "hosts without containers: `node-head.sh` on the head, `node-worker.sh` on each worker (each runs "
                    "`gptoss serve --node-rank`; the head reports a lost node by rank)"),
           "monitoring": "point Prometheus at `monitoring/prometheus.yml` (alerts in `alerts.yml`); Grafana provisioning "
                         "in `monitoring/grafana/`."}
    lines += [f"- **{name}**: {how[name]}" for name in names]
    lines += ["", "Then check it like a client would: `gptoss check http://HOST:PORT --api-key-file KEY`."]
    return Artifact("README.md", "\n".join(lines) + "\n")


def write(artifacts: list[Artifact], out_dir: Path, force: bool) -> list[Path]:
    """Write the set all at once: every file goes into a staging folder inside `out_dir` first (fsynced), and only
    when all are written is each moved into place (a rename); a failure part-way leaves `out_dir` as it was. An
    existing file is an error unless `force`, and is then kept as FILE.bak (then FILE.bak.1, .2, ...: every
    earlier copy is kept)."""
    from gptoss_deploy.inputs import check_destination

    for artifact in artifacts:
        check_destination(out_dir / artifact.name, "render output")
    existing = [out_dir / a.name for a in artifacts if (out_dir / a.name).exists()]
    if existing and not force:
        raise InputError(f"{existing[0]} already exists" + (f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""),
                         hint="choose another --out, or pass --overwrite (the old files are kept as .bak)")
    staging = _stage(artifacts, out_dir)
    try:
        written = []
        for artifact in artifacts:
            path = out_dir / artifact.name
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists():
                shutil.copy2(path, _free_backup(path))
            os.replace(staging / artifact.name, path)
            written.append(path)
        return written
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_rejected(artifacts: list[Artifact], out_dir: Path) -> Path:
    """A set that failed validation, kept for inspection in OUT/.gptoss-rejected/ (never moved into place)."""
    folder = out_dir / ".gptoss-rejected"
    shutil.rmtree(folder, ignore_errors=True)
    staging = _stage(artifacts, out_dir)
    os.replace(staging, folder)
    return folder


def _stage(artifacts: list[Artifact], out_dir: Path) -> Path:
    """Every artifact written and fsynced into a fresh folder inside `out_dir` (same filesystem: renames are
    atomic); on failure the folder is removed and the error says what happened."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".gptoss-staging-", dir=out_dir))
    except OSError as exc:
        raise InputError(f"cannot write into {out_dir}: {exc.strerror}", hint="choose a writable --out") from None
    try:
        for artifact in artifacts:
            path = staging / artifact.name
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "w", encoding="utf-8") as sink:
                sink.write(artifact.text)
                sink.flush()
                os.fsync(sink.fileno())
            path.chmod(0o755 if artifact.executable else 0o644)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise InputError(f"writing the files into {out_dir} failed ({exc.strerror}); nothing was changed there",
                         hint="free disk space or choose another --out") from None
    return staging


def _free_backup(path: Path) -> Path:
    """FILE.bak, else the first free FILE.bak.N: an earlier backup is never overwritten."""
    candidate = path.with_name(path.name + ".bak")
    number = 1
    while candidate.exists():
        candidate = path.with_name(f"{path.name}.bak.{number}")
        number += 1
    return candidate


def validate(artifacts: list[Artifact], deployment: Deployment | None = None, plan: Plan | None = None) -> list[Validation]:
    """Check each artifact with the best tool available here, then (given the deployment and plan) resolve what
    each artifact makes its runtime start and check that against the plan (render/runtime.py)."""
    results = _tools(artifacts)
    if deployment is not None and plan is not None:
        results += resolved_checks(artifacts, deployment, plan)
    return results


def resolved_checks(artifacts: list[Artifact], deployment: Deployment, plan: Plan) -> list[Validation]:
    """The runtime-semantics checks: one result per artifact that starts something (and monitoring)."""
    from gptoss_deploy.render import runtime

    texts = {a.name: a.text for a in artifacts}
    return [_result(name, "resolved (runtime semantics)", not problems, "; ".join(problems))
            for name, problems in runtime.check(deployment, plan, texts)]


def _tools(artifacts: list[Artifact]) -> list[Validation]:
    results = []
    for artifact in artifacts:
        name = artifact.name
        if name.endswith(".service"):
            results.append(_systemd_verify(artifact))
        elif name == "Dockerfile":
            results.append(_dockerfile(artifact))
        elif name.endswith(".container"):
            results.append(_quadlet(artifact))
        elif name.endswith(".nix"):
            results.append(_nix(artifact))
        elif name.endswith(".sh"):
            results.append(_run(name, ["bash", "-n"], artifact.text, "bash -n"))
        elif name.endswith(".json"):
            results.append(_parse(name, "json", artifact.text, json.loads))
        elif name.endswith((".yml", ".yaml")):
            results.append(_parse(name, "yaml", artifact.text, lambda t: list(yaml.safe_load_all(t))))
            if name == "kubernetes.yaml":
                results.append(_kubernetes(artifact))
    return results


def _parse(name: str, tool: str, text: str, parse: Any) -> Validation:
    try:
        parse(text)
    except Exception as exc:
        return _result(name, tool, False, str(exc)[:300])
    return _result(name, tool, True)


def _run(name: str, argv: list[str], text: str, tool: str) -> Validation:
    with tempfile.NamedTemporaryFile("w", suffix=Path(name).suffix) as handle:
        handle.write(text)
        handle.flush()
        out = subprocess.run([*argv, handle.name], capture_output=True, text=True, timeout=60)
    return _result(name, tool, out.returncode == 0, (out.stderr or out.stdout).strip()[:500])


def _systemd_verify(artifact: Artifact) -> Validation:
    if shutil.which("systemd-analyze") is None:
        return _skipped(artifact.name, "systemd-analyze", "not installed (pip install 'gpt-oss-deploy[render]')")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / artifact.name
        path.write_text(artifact.text)
        out = subprocess.run(["systemd-analyze", "verify", "--man=no", str(path)], capture_output=True, text=True,
                             timeout=60)
    # verify also complains about the host (a missing ExecStart binary, unknown users): keep only the unit's own lines
    problems = [line for line in (out.stderr + out.stdout).splitlines()
                if artifact.name in line and "is not executable" not in line and "No such file" not in line]
    return _result(artifact.name, "systemd-analyze verify", not problems, "\n".join(problems))


def _with_pod_templates(docs: list[dict[str, Any]], problems: list[str]) -> list[dict[str, Any]]:
    """Core objects as they are; a LeaderWorkerSet (a CRD the core schemas lack) is checked for its required
    fields and its leader/worker pod templates are validated as core PodTemplates."""
    out = []
    for doc in docs:
        if doc.get("kind") != "LeaderWorkerSet":
            out.append(doc)
            continue
        template = doc.get("spec", {}).get("leaderWorkerTemplate", {})
        if not isinstance(template.get("size"), int) or template["size"] < 2:
            problems.append("LeaderWorkerSet: leaderWorkerTemplate.size must be an integer >= 2")
        for role in ("leaderTemplate", "workerTemplate"):
            if role not in template:
                problems.append(f"LeaderWorkerSet: {role} missing")
                continue
            out.append({"apiVersion": "v1", "kind": "PodTemplate",
                        "metadata": {"name": f"{doc['metadata']['name']}-{role.lower()}"}, "template": template[role]})
    return out


def _kubernetes(artifact: Artifact) -> Validation:
    try:
        import kubernetes_validate
    except ImportError:
        return _skipped(artifact.name, "kubernetes-validate", "not installed (pip install 'gpt-oss-deploy[render]')")
    problems: list[str] = []
    for doc in _with_pod_templates(list(yaml.safe_load_all(artifact.text)), problems):
        try:
            kubernetes_validate.validate(doc, desired_version="1.32", strict=True)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{doc.get('kind')}: {exc.message} at {'/'.join(map(str, exc.path))}")
        except Exception as exc:
            problems.append(f"{doc.get('kind')}: {exc}")
    return _result(artifact.name, "kubernetes-validate (k8s 1.32 schemas, strict)", not problems,
                      detail="; ".join(problems)[:800])


def _dockerfile(artifact: Artifact) -> Validation:
    """Parsed with dockerfile-parse: one FROM, exec-form ENTRYPOINT, a HEALTHCHECK, no secrets in ENV/ARG."""
    try:
        from dockerfile_parse import DockerfileParser
    except ImportError:
        return _skipped(artifact.name, "dockerfile-parse", "not installed (pip install 'gpt-oss-deploy[render]')")
    with tempfile.TemporaryDirectory() as tmp:
        parser = DockerfileParser(path=tmp)
        parser.content = artifact.text
        instructions = [i["instruction"] for i in parser.structure]
        entry = next((i["value"] for i in parser.structure if i["instruction"] == "ENTRYPOINT"), "")
        problems = []
        if instructions.count("FROM") != 1:
            problems.append(f"{instructions.count('FROM')} FROM instructions")
        if not entry.startswith("["):
            problems.append("ENTRYPOINT is not in exec form (signals would not reach the server)")
        if "HEALTHCHECK" not in instructions:
            problems.append("no HEALTHCHECK")
        secret_env = [k for k in parser.envs if any(w in k.upper() for w in ("KEY", "TOKEN", "PASSWORD"))]
        if secret_env:
            problems.append(f"secret-looking ENV: {secret_env}")
    return _result(artifact.name, "dockerfile-parse", not problems, "; ".join(problems))


def _quadlet(artifact: Artifact) -> Validation:
    """systemd-style INI with the [Container] keys quadlet needs (podman's generator is not installed here)."""
    import configparser

    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment, method-assign]  # keys are case-sensitive
    try:
        parser.read_string("\n".join(line for line in artifact.text.splitlines() if not line.startswith("#")))
    except configparser.Error as exc:
        return _result(artifact.name, "ini parse", False, str(exc)[:300])
    missing = [key for key in ("Image", "Exec", "PublishPort") if not parser.has_option("Container", key)]
    return _result(artifact.name, "ini parse + quadlet keys", not missing,
                      detail=f"missing {missing}" if missing else "")


def _nix(artifact: Artifact) -> Validation:
    """`nix-instantiate --parse` where Nix is installed (Debian: nix-bin)."""
    if shutil.which("nix-instantiate") is None:
        return _skipped(artifact.name, "nix-instantiate --parse", "not installed (apt-get install nix-bin)")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / artifact.name
        path.write_text(artifact.text)
        out = subprocess.run(["nix-instantiate", "--parse", str(path)], capture_output=True, text=True, timeout=60)
    return _result(artifact.name, "nix-instantiate --parse", out.returncode == 0,
                      detail=out.stderr.strip()[:500])
