"""llama.cpp's llama-server: everything the tool knows about it (see engines/base.py for the list).

The argv is `llama-server -m FILE|-hf REPO <planned flags> --alias N --host H --port P [--api-key-file F]`,
built here from `LlamacppSettings`. The key reaches it through a 0600 --api-key-file, never argv. Planning
(GGUF memory, --n-cpu-moe) is in plan/llamacpp_memory.py.
"""

from __future__ import annotations

import re
import shutil
from typing import TYPE_CHECKING, Any, ClassVar

import httpx

from gptoss_deploy.engines.base import (
    AlertRule,
    Binding,
    Comparison,
    ContainerImage,
    Engine,
    Launch,
    Monitoring,
    Panel,
    Phase,
    exact_row,
    numeric_row,
    pattern,
)
from gptoss_deploy.engines.probe import EngineInfo, cached_probe, executable_key, long_flags, run_text, split_flags
from gptoss_deploy.errors import EngineError, InputError
from gptoss_deploy.hardware.types import MIB

if TYPE_CHECKING:
    from gptoss_deploy.hardware.types import Host
    from gptoss_deploy.models.spec import ModelSpec
    from gptoss_deploy.plan.types import LlamacppSettings, Plan, PlanRequest

SHORT_FORMS = {"-fa": "--flash-attn", "-c": "--ctx-size", "-np": "--parallel", "-ngl": "--n-gpu-layers",
               "-m": "--model", "-hf": "--hf-repo", "-ot": "--override-tensor", "-a": "--alias",
               "-lv": "--log-verbosity"}
# ghcr.io/ggml-org/llama.cpp server images, .devops/{cpu,cuda,rocm,vulkan}.Dockerfile (b11434), `server` target:
# ENV LLAMA_ARG_HOST=0.0.0.0, WORKDIR /app, HEALTHCHECK CMD ["curl", "-f", "http://localhost:8080/health"] (port
# 8080, llama-server's default: in these images the server listens on 8080 so that check holds), ENTRYPOINT
# ["/app/llama-server"]; curl, no Python; root. The release pipeline tags every image with its build too
# (`<tag>-b<N>`; .github/workflows/docker.yml build matrix and create_manifest_tags): artifacts pin that tag.
IMAGES = {"nvidia": ("ghcr.io/ggml-org/llama.cpp:server-cuda", ["linux/amd64", "linux/arm64"]),
          "amd": ("ghcr.io/ggml-org/llama.cpp:server-rocm", ["linux/amd64"]),
          "cpu": ("ghcr.io/ggml-org/llama.cpp:server", ["linux/amd64", "linux/arm64"]),
          "vulkan": ("ghcr.io/ggml-org/llama.cpp:server-vulkan", ["linux/amd64", "linux/arm64"])}
IMAGE_SOURCE = ("ggml-org/llama.cpp .devops/*.Dockerfile (server target: ENTRYPOINT /app/llama-server, "
                "LLAMA_ARG_HOST=0.0.0.0, HEALTHCHECK curl :8080/health) and .github/workflows/docker.yml, b11434")
# The build whose flags the plan's argv was checked against (data/engines: llama.cpp surface); images are pinned to it.
CHECKED_BUILD = "b11434"
# Metric families llama-server b11434 serves with --metrics (read off the lane's server; tests/engine checks again).
EXPORTED_METRICS = [
    "llamacpp:prompt_tokens", "llamacpp:prompt_seconds", "llamacpp:tokens_predicted",
    "llamacpp:tokens_predicted_seconds", "llamacpp:n_decode", "llamacpp:n_busy_slots_per_decode",
    "llamacpp:prompt_tokens_seconds", "llamacpp:predicted_tokens_seconds", "llamacpp:requests_processing",
    "llamacpp:requests_deferred", "llamacpp:n_tokens_max", "llamacpp:prompt_tokens_cached"]


def settings_of(plan: Plan) -> LlamacppSettings:
    """The plan's llama.cpp settings (InputError when the plan is for another engine)."""
    if plan.llamacpp is None:
        raise InputError(f"the plan's engine is {plan.engine or 'none'}, not llama.cpp",
                         hint="plan with --engine llamacpp, or launch with the plan's engine")
    return plan.llamacpp


def _flash_attn_takes_value(info: EngineInfo) -> bool:
    return re.search(r"--flash-attn \[?(on|FA)", info.help_text) is not None


def _cpu_moe_override(layers: int) -> list[str]:
    """--n-cpu-moe N for builds without it: keep the experts of the first N layers in RAM via -ot."""
    expression = "|".join(str(i) for i in range(layers))
    return ["-ot", rf"blk\.({expression})\.ffn_(up|down|gate)_exps\.=CPU"]


def _build(version_text: str) -> str | None:
    """b<N> from `llama-server --version` ("version: 11434 (abc)" or "build 11434")."""
    match = re.search(r"version: (\d+) \(|build (\d+)", version_text)
    build = next((g for g in (match.groups() if match else ()) if g and g != "0"), None)
    return f"b{build}" if build else None


def model_args(reference: str) -> list[str]:
    """`-hf REPO` for `hf:<repo>` (llama-server downloads it; builds with curl), else `-m FILE`."""
    return ["-hf", reference[3:]] if reference.startswith("hf:") else ["-m", reference]


class LlamacppEngine(Engine):
    """llama.cpp's llama-server."""

    name = "llamacpp"
    label = "llama.cpp"
    location_flag = "--llama-server"
    location_help = "llama-server binary (default: from PATH)"
    executable_name = "llama-server"
    lane_executable = "llama_server"
    fallback = "no vLLM path on this GPU/driver; slower but broad (GGUF, --n-cpu-moe offload computed by the planner)"
    key_file_flag = "--api-key-file"
    key_variable = "LLAMA_API_KEY"  # common/arg.cpp: --api-key .set_env("LLAMA_API_KEY")
    secret_flags = ("--api-key", "--api-key-file")
    # llama-server leaves /health and /models open under --api-key (shared/reference/reliability.md §2).
    security_routes = (("GET", "/health"), ("GET", "/v1/models"), ("GET", "/props"), ("GET", "/slots"),
                       ("GET", "/metrics"), ("POST", "/tokenize"), ("POST", "/v1/chat/completions"),
                       ("POST", "/completion"))
    counters: ClassVar[dict[str, str]] = {"llamacpp:tokens_predicted": "generation_tokens",
                                          "llamacpp:prompt_tokens": "prompt_tokens"}
    gauges: ClassVar[dict[str, str]] = {"llamacpp:requests_processing": "running",
                                        "llamacpp:requests_deferred": "waiting"}
    # tokens_predicted only grows when a request ends (server-context.cpp metrics_on_prediction); llama_decode()
    # calls grow every step (tools/server/server-task.cpp, b11434)
    progress_counter: ClassVar[str | None] = "llamacpp:n_decode"
    # Patterns from llama-server b11434 serving the lane's tiny model (tests/fixtures/logs).
    log_patterns = (
        pattern(r"llama_server: initializing|main: build = ", Phase.STARTING),
        pattern(r"load_model: loading model '(?P<model_path>[^']+)'", Phase.WEIGHTS),
        pattern(r"load_tensors:\s+(?P<weights_device>\S+) model buffer size =\s+(?P<weights_mib>[\d.]+) MiB",
                accumulate=True),
        pattern(r"llama_kv_cache: size =\s+(?P<kv_mib>[\d.]+) MiB \(\s*(?P<kv_cells>\d+) cells", Phase.KV_CACHE,
                accumulate=True),
        pattern(r"(?P<compute_device>\S+) compute buffer size =\s+(?P<compute_mib>[\d.]+) MiB", accumulate=True),
        pattern(r"n_slots = (?P<n_slots>\d+), n_ctx_slot = (?P<n_ctx_slot>\d+)", Phase.KV_CACHE),
        pattern(r"model loaded", Phase.API),
        pattern(r"listening on http|server is listening on", Phase.READY),
        pattern(r"couldn't bind HTTP server socket", Phase.FAILED, "port_in_use"),
        pattern(r"failed to open GGUF file|gguf_init_from_file: failed|failed to load model|error loading model",
                Phase.FAILED, "model_missing"),
        pattern(r"(?:cudaMalloc failed|out of memory|failed to allocate)", Phase.FAILED, "oom"),
    )

    # -- planning -------------------------------------------------------------------------------------------
    def can_serve(self, model: ModelSpec) -> str | None:
        """A GGUF file, or a model whose GGUF the catalog knows."""
        from gptoss_deploy.plan.llamacpp_memory import gguf_for

        return None if gguf_for(model) is not None else f"{model.id} has no GGUF for llama.cpp"

    def preference(self, host: Host, model: ModelSpec) -> tuple[int, str]:
        """First on CPU-only hosts and Strix Halo; the fallback elsewhere."""
        if not host.gpus:
            return 0, "no GPU: llama.cpp runs on the CPU"
        if host.gpu is not None and host.gpu.arch == "rdna3.5":
            return 0, "Strix Halo (gfx1151): llama.cpp is the stable engine (vLLM issues in the plan's notes)"
        return 2, "llama.cpp: the fallback when vLLM cannot serve"

    def plan(self, model: ModelSpec, host: Host, request: PlanRequest, installed_version: str | None,
             with_alternatives: bool) -> Plan:
        """The llama.cpp plan (plan/assembly.py, plan/llamacpp_memory.py)."""
        from gptoss_deploy.plan.assembly import llamacpp_plan

        return llamacpp_plan(model, host, request)

    def uses_gpu(self, plan: Plan) -> bool:
        """When layers are offloaded to a GPU."""
        return settings_of(plan).n_gpu_layers > 0

    def gpus_used(self, plan: Plan, host: Host) -> int:
        """Every GPU of the host when layers are offloaded (llama.cpp splits them), else none."""
        return len(host.gpus) if settings_of(plan).n_gpu_layers else 0

    def weights_bytes(self, plan: Plan) -> int:
        """The GGUF's tensor data."""
        return settings_of(plan).model_bytes

    def version_of(self, plan: Plan) -> str | None:
        """llama.cpp plans do not pin a build."""
        return None

    # -- the command ----------------------------------------------------------------------------------------
    def engine_args(self, plan: Plan) -> list[str]:
        """Context, slots, --jinja, flash attention, layers, CPU experts; -lv 4 logs the buffer sizes that
        plan-vs-actual reads (not prompts); --metrics serves the counters `gptoss bench` and monitoring read."""
        s = settings_of(plan)
        args = ["-c", str(s.n_ctx), "-np", str(s.n_parallel), "--jinja", "-fa", s.flash_attn]
        if s.n_gpu_layers:
            args += ["-ngl", str(s.n_gpu_layers)]
        if s.n_cpu_moe:
            args += ["--n-cpu-moe", str(s.n_cpu_moe)]
        if s.no_mmap:
            args.append("--no-mmap")
        return args + ["-lv", "4", "--metrics"]

    def engine_env(self, plan: Plan) -> dict[str, str]:
        """llama.cpp plans set no variables."""
        settings_of(plan)
        return {}

    def command(self, plan: Plan, binding: Binding) -> list[str]:
        """program -m FILE|-hf REPO <planned flags> --alias N --host H --port P [--api-key-file F]."""
        s = settings_of(plan)
        argv = [*binding.program, *model_args(binding.model or s.gguf), *self.engine_args(plan),
                "--alias", binding.served_name, "--host", binding.host, "--port", str(binding.port)]
        if binding.key_file:
            argv += ["--api-key-file", binding.key_file]
        return argv

    def display_command(self, plan: Plan) -> list[str]:
        """`llama-server -m FILE|-hf REPO <planned flags>`."""
        return ["llama-server", *model_args(settings_of(plan).gguf), *self.engine_args(plan)]

    def default_program(self, executable: str) -> list[str]:
        """The llama-server binary itself."""
        return [executable]

    def model_reference(self, plan: Plan) -> str:
        """The GGUF file, or hf:<repo> for a Hub GGUF."""
        return settings_of(plan).gguf

    # -- the install ----------------------------------------------------------------------------------------
    def locate(self, location: str | None) -> str:
        """--llama-server, else `llama-server` on PATH; a clear error when there is none."""
        found = shutil.which(location or "llama-server")
        if found is None:
            raise EngineError(f"llama-server not found ({location or 'not on PATH'})",
                              hint="build it (cmake --build build --target llama-server) or install llama.cpp, then "
                                   "pass --llama-server /path/to/llama-server")
        return found

    def installed_version(self, executable: str) -> str:
        """`llama-server --version`: b<build> (EngineError when it says none)."""
        version = _build(run_text([self.locate(executable), "--version"], timeout_s=30))
        if version is None:
            raise EngineError(f"{executable} --version names no build", hint="pass the llama-server binary")
        return version

    def probe(self, executable: str) -> EngineInfo:
        """Build number and --help of this llama-server (cached per file)."""
        path = self.locate(executable)

        def compute() -> EngineInfo:
            version = _build(run_text([path, "--version"], timeout_s=30))
            text = run_text([path, "--help"], timeout_s=30)
            if "--port" not in text:
                raise EngineError(f"{path} --help does not look like llama-server's", hint="pass the llama-server binary")
            return EngineInfo(engine="llamacpp", executable=path, version=version, flags=long_flags(text),
                              help_text=text)

        return cached_probe("llamacpp", executable_key(path), compute)

    def adapt(self, launch: Launch, info: EngineInfo) -> tuple[Launch, list[str]]:
        """-fa forms, --jinja, --n-cpu-moe; drop unknown flags; refuse a build without --api-key-file."""
        name = info.version or "this build"
        notes: list[str] = []
        kept: list[str] = [launch.argv[0]]
        for item in split_flags(launch.argv[1:]):
            flag = SHORT_FORMS.get(item[0], item[0])
            if not flag.startswith("--") or info.knows(flag):
                if flag == "--flash-attn" and len(item) > 1 and not _flash_attn_takes_value(info):
                    notes.append(f"llama-server {name} takes -fa as a switch: -fa {item[1]} -> "
                                 + ("-fa" if item[1] == "on" else "left out"))
                    item = ["-fa"] if item[1] == "on" else []
                kept += item
            elif flag in ("--model", "--hf-repo", "--port", "--host"):
                raise EngineError(f"llama-server {name} does not know {item[0]}", hint="use a current llama.cpp build")
            elif flag == "--api-key-file":
                raise EngineError(f"llama-server {name} has no --api-key-file, and the key must not go on the command "
                                  "line", hint="use a newer llama.cpp build, or serve on 127.0.0.1 without a key")
            elif flag == "--n-cpu-moe" and info.knows("--override-tensor"):
                kept += _cpu_moe_override(int(item[1]))
                notes.append(f"llama-server {name} has no --n-cpu-moe: the same placement through -ot")
            elif flag == "--jinja":
                notes.append(f"llama-server {name} has no --jinja: the gpt-oss chat template may not render; upgrade")
            else:
                notes.append(f"llama-server {name} does not know {item[0]}: left out")
        return launch.model_copy(update={"argv": kept}), notes

    # -- the running server ---------------------------------------------------------------------------------
    def identify(self, http: httpx.Client, base_url: str, headers: dict[str, str]) -> str | None:
        """llama-server answers GET /props with its generation settings and build."""
        try:
            reply = http.get(f"{base_url}/props", headers=headers, timeout=10)
            body = reply.json() if reply.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None
        if isinstance(body, dict) and ("default_generation_settings" in body or "build_info" in body):
            return str(body.get("build_info") or "")
        return None

    def tokenize_body(self, model: str, text: str) -> dict[str, Any]:
        """llama-server's /tokenize takes `content`."""
        return {"content": text}

    def detokenize_body(self, model: str, tokens: list[int]) -> dict[str, Any]:
        """llama-server's /detokenize takes `tokens`."""
        return {"tokens": tokens}

    def monitoring(self, job: str) -> Monitoring:
        """Panels and alerts on llama-server's --metrics names (tools/server; read off b11434's /metrics). It
        serves no KV-cache usage and no process start time: restarts show as counter resets."""
        return Monitoring(needs_key=True, exported=EXPORTED_METRICS, panels=[
            Panel(title="Output tokens/s", exprs=["rate(llamacpp:tokens_predicted_total[1m])"]),
            Panel(title="Prompt tokens/s", exprs=["rate(llamacpp:prompt_tokens_total[1m])"]),
            Panel(title="Processing / deferred requests", exprs=["llamacpp:requests_processing",
                                                                 "llamacpp:requests_deferred"],
                  legends=["processing", "deferred"]),
            Panel(title="Busy slots per decode", exprs=["llamacpp:n_busy_slots_per_decode"])], rules=[
            AlertRule(alert="GptossQueueBuilding", expr="llamacpp:requests_deferred > 0",
                      summary="requests wait for a free slot"),
            AlertRule(alert="GptossRestarting", expr=f'resets(llamacpp:n_decode_total{{job="{job}"}}[30m]) > 2',
                      for_="0m", summary="the engine restarted more than twice in 30 min (counters reset)")])

    # -- the log --------------------------------------------------------------------------------------------
    def plan_vs_actual(self, plan: Plan, facts: dict[str, str]) -> list[Comparison]:
        """Slots, context per slot, and the buffer sizes logged at verbosity 4."""
        from gptoss_deploy.plan.llamacpp_memory import context_cells

        s = settings_of(plan)
        slot_ctx = context_cells(s.n_ctx, max(s.n_parallel, 1))[1]
        return [
            exact_row("slots (-np)", str(s.n_parallel), facts.get("n_slots")),
            exact_row("context per slot", str(slot_ctx), facts.get("n_ctx_slot")),
            numeric_row("model buffers (MiB)", s.model_bytes / MIB, facts.get("weights_mib"), "{:.2f}"),
            numeric_row("KV cache, full + SWA (MiB)", (s.kv_bytes + s.swa_bytes) / MIB, facts.get("kv_mib"), "{:.2f}"),
            numeric_row("compute buffers (MiB)", s.compute_bytes / MIB, facts.get("compute_mib"), "{:.2f}"),
        ]

    # -- deployment -----------------------------------------------------------------------------------------
    def image(self, plan: Plan, host: Host) -> ContainerImage:
        """The ggml-org server image for the GPU vendor; Vulkan on Strix Halo."""
        gpu = host.gpu
        vendor: str = gpu.vendor if gpu is not None else "cpu"
        note = None
        if gpu is not None and gpu.gfx_target == "gfx1151":
            vendor = "vulkan"
            note = "Strix Halo: the Vulkan build avoids ROCm gfx1151 issues (vllm-project/vllm#32180, kyuz0/amd-strix-halo-vllm-toolboxes#73); server-rocm for ROCm >= 7"
        name, platforms = IMAGES[vendor]
        return ContainerImage(name=f"{name}-{CHECKED_BUILD}", entrypoint=["/app/llama-server"],
                              program=["/app/llama-server"], workdir="/app", port=8080,
                              env={"LLAMA_ARG_HOST": "0.0.0.0"}, healthcheck=["curl", "-f", "http://localhost:8080/health"],
                              platforms=platforms, has_python=False, has_curl=True, source=IMAGE_SOURCE, note=note)

    def nix_package(self, host: Host) -> tuple[str, str]:
        """nixpkgs' llama-cpp built for the GPU (Vulkan on Strix Halo)."""
        gpu = host.gpu
        if gpu is None:
            package = "pkgs.llama-cpp"
        elif gpu.vendor == "amd":
            rocm = gpu.gfx_target != "gfx1151"
            package = f"pkgs.llama-cpp.override {{ {'rocmSupport' if rocm else 'vulkanSupport'} = true; }}"
        else:
            package = "pkgs.llama-cpp.override { cudaSupport = true; }"
        return package, "llama.cpp (llama-server)"

    def with_settings(self, plan: Plan, values: dict[str, Any]) -> Plan:
        """Force the per-request context (max_model_len) and slots (max_num_seqs -> -np); -c is slots x context."""
        from gptoss_deploy.plan.llamacpp_memory import context_cells

        names = {"max_model_len": "n_ctx", "max_num_seqs": "n_parallel"}
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise InputError(f"llama.cpp plans have no setting {', '.join(unknown)}",
                             hint="llama.cpp takes max_model_len (context per slot) and max_num_seqs (-np)")
        s = settings_of(plan)
        slots = int(values.get("max_num_seqs", s.n_parallel))
        per_request = int(values.get("max_model_len", context_cells(s.n_ctx, max(s.n_parallel, 1))[1]))
        update = {"n_parallel": slots, "n_ctx": slots * per_request}
        return plan.model_copy(update={"llamacpp": s.model_copy(update=update)})

    def describe(self, plan: Plan) -> str:
        """Context, slots, layers and CPU experts."""
        s = settings_of(plan)
        return (f"llama.cpp {s.n_parallel} slots x {s.n_ctx // max(s.n_parallel, 1)} tokens (-c {s.n_ctx}), "
                f"-ngl {s.n_gpu_layers}, --n-cpu-moe {s.n_cpu_moe}")
