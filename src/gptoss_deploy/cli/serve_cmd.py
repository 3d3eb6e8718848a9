"""`gptoss serve`: plan for this host, launch vLLM or llama-server, supervise it until stopped."""

from __future__ import annotations

import argparse
from collections.abc import Mapping

from gptoss_deploy.cli.args import (
    add_engine_knobs,
    add_engine_locations,
    add_host_flags,
    bounded,
    port,
    read_key_file,
    seconds,
)
from gptoss_deploy.errors import InputError

EXAMPLES = """examples:
  gptoss serve --model gpt-oss-20b                       # plan for this host, serve on 127.0.0.1:8000
  gptoss serve --model gpt-oss-120b --dry-run            # print the exact argv and env (secrets masked)
  API_KEY=... gptoss serve --host 0.0.0.0 --watchdog     # public: a key is required; canary + restarts
  MODEL=./gpt-oss-20b-mxfp4.gguf PORT=9000 gptoss serve  # the seed image's environment contract
  gptoss serve --model ./tiny -- --dtype bfloat16        # extra engine flags after --
  gptoss serve --plan plan.json                          # exactly a saved plan (gptoss plan --save plan.json)
  gptoss serve --plan plan.json --replan                 # plan it again for this GPU / engine release
  gptoss serve --model gpt-oss-120b --profile h100 --dry-run   # preview another machine

settings: flag > environment (MODEL, MAX_MODEL_LEN, TENSOR_PARALLEL_SIZE, GPU_MEMORY_UTILIZATION, QUANTIZATION,
KV_CACHE_DTYPE, MAX_NUM_SEQS, MAX_NUM_BATCHED_TOKENS, ASYNC_SCHEDULING, ENABLE_PREFIX_CACHING,
ENABLE_CHUNKED_PREFILL, ENABLE_AUTO_TOOL_CHOICE, TOOL_CALL_PARSER, HOST, PORT, API_KEY, LOG_LEVEL,
SHOW_LOADING_PROGRESS, VLLM_ATTENTION_BACKEND_OVERRIDE, SERVED_MODEL_NAME, ENGINE) > --config FILE > default.
HF_TOKEN / HUGGING_FACE_HUB_TOKEN are passed to the engine through its environment, never logged.
"""


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add `serve`."""
    p = commands.add_parser("serve", parents=[common], help="launch and supervise vLLM or llama-server",
                            description="Plan for this host, launch the engine in its own process group with a "
                                        "phase-aware progress display, wait until the model answers, compare what "
                                        "the engine logged with the plan, and supervise it until Ctrl-C/SIGTERM.",
                            epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", "-m", help="catalog id, Hub id, model directory or .gguf file (env MODEL)")
    add_engine_knobs(p)
    net = p.add_argument_group("endpoint")
    net.add_argument("--host", help="address to bind (env HOST; default 127.0.0.1)")
    net.add_argument("--port", type=port, help="port (env PORT; default 8000)")
    net.add_argument("--served-model-name", help="the model name clients send (default: --model)")
    net.add_argument("--api-key-file", help="file holding the API key (or env API_KEY); required off loopback")
    sup = p.add_argument_group("supervision")
    sup.add_argument("--detach", "-d", action="store_true",
                     help="run in the background (gptoss ps / logs / stop); returns once the model answers")
    sup.add_argument("--name", help="the server's name for ps / logs / stop (default: serve-PORT)")
    sup.add_argument("--log-file", help="engine log (default: ~/.cache/gptoss-deploy/logs/serve-<port>.log)")
    sup.add_argument("--ready-timeout", type=seconds, help="seconds to become ready (default: by model size)")
    sup.add_argument("--stall-timeout", type=seconds, default=600.0,
                     help="a hang: no log progress for this many seconds during startup (default 600)")
    sup.add_argument("--stop-grace", type=seconds, default=30.0, help="SIGTERM -> SIGKILL grace (s)")
    sup.add_argument("--watchdog", action="store_true", help="1-token canary every interval; restart on failure")
    sup.add_argument("--canary-interval", type=seconds, default=30.0)
    sup.add_argument("--canary-timeout", type=seconds, default=20.0,
                     help="the canary's wait with an empty queue; it grows by this much per request running or "
                          "waiting, up to --canary-interval")
    sup.add_argument("--wedge-after", type=seconds, default=120.0,
                     help="requests queued and no progress (generated tokens, decode steps) this long = wedged")
    sup.add_argument("--no-pull", action="store_true",
                     help="let the engine download a missing model itself (default: `gptoss pull` it first, with "
                          "progress and checks, so the start window does not include the download)")
    sup.add_argument("--quality-every", type=seconds, default=0.0,
                     help="with --watchdog: ask the quality canary (gptoss check --quality) this often and restart when "
                          "too many answers are wrong (default 0: never); requests it could not get answered never count")
    sup.add_argument("--max-restarts", type=bounded(1, 10_000, integer=True), default=5, help="within --restart-window, then give up")
    sup.add_argument("--restart-window", type=seconds, default=900.0)
    sup.add_argument("--no-progress", action="store_true", help="no progress display (env SHOW_LOADING_PROGRESS=0)")
    add_engine_locations(p)
    nodes = p.add_argument_group("a server across nodes (a plan with pipeline stages on several machines)")
    nodes.add_argument("--node-rank", type=bounded(0, 1023, integer=True),
                       help="this machine's rank: 0 = the head (serves the API), 1.. = workers")
    nodes.add_argument("--master-addr", help="the head's address (every node)")
    nodes.add_argument("--master-port", type=port, default=29501, help="vLLM's rendezvous port on the head (29501)")
    nodes.add_argument("--node-address", help="this machine's address that the others reach (vLLM's VLLM_HOST_IP; "
                                              "default on the head: --master-addr)")
    nodes.add_argument("--worker-address", action="append", default=[], metavar="ADDR",
                       help="on the head: each worker's address, by rank (repeat)")
    nodes.add_argument("--node-agent-port", type=port, default=29599,
                       help="port of each node's status agent (GET /gptoss/node), the same on every node")
    saved = p.add_argument_group("a saved plan")
    saved.add_argument("--plan", metavar="FILE", help="serve exactly this plan (`gptoss plan --save FILE`); the host "
                                                       "and the installed engine are checked against it")
    saved.add_argument("--replan", action="store_true", help="with --plan: plan again for this host and engine "
                                                              "(and the settings given), reporting what changed")
    add_host_flags(p, "preview another machine (with --dry-run)")
    p.add_argument("--config", help="YAML file of settings (also env GPTOSS_CONFIG)")
    p.add_argument("--dry-run", action="store_true", help="print the engine argv and env, start nothing")
    p.add_argument("--check", action="store_true", help="run `gptoss check` once the model answers")
    p.set_defaults(handler=run, extra_engine_args=[])


def settings_from(args: argparse.Namespace, config_file: bool = True, environ: Mapping[str, str] | None = None):
    """Flags + environment (+ config file) -> ServeSettings; shared by `serve` and `try` (which has no --host,
    --no-progress or --config: it binds the default host and shows no progress bar), and by render's resolver
    (with a container's environment instead of ours)."""
    import os
    from pathlib import Path

    from gptoss_deploy.serve.config import resolve_settings

    flags = {
        "model": args.model, "engine": args.engine, "max_model_len": args.max_model_len,
        "tensor_parallel_size": args.tensor_parallel_size, "gpu_memory_utilization": args.gpu_memory_utilization,
        "kv_cache_dtype": args.kv_cache_dtype, "max_num_seqs": args.max_num_seqs,
        "max_num_batched_tokens": args.max_num_batched_tokens, "host": getattr(args, "host", None), "port": args.port,
        "served_model_name": args.served_model_name, "enable_auto_tool_choice": False if args.no_tools else None,
        "show_loading_progress": False if getattr(args, "no_progress", True) else None,
        "api_key": read_key_file(args.api_key_file) if args.api_key_file else None,
    }
    environ = os.environ if environ is None else environ
    config = (getattr(args, "config", None) or environ.get("GPTOSS_CONFIG")) if config_file else None
    return resolve_settings(flags, environ, Path(config) if config else None)


def inputs_from(args: argparse.Namespace, require_engine: bool = True):
    """Engine locations, extra engine arguments, plan switches and the previewed host -> ServeInputs (for `serve`
    and `try`)."""
    from pathlib import Path

    from gptoss_deploy.cli.args import engine_locations, host_choice
    from gptoss_deploy.serve.service import ServeInputs

    plan_file = getattr(args, "plan", None)
    return ServeInputs(locations=engine_locations(args), extra_args=list(args.extra_engine_args),
                       kv_cache_memory_bytes=args.kv_cache_memory_bytes, enforce_eager=args.enforce_eager,
                       force=args.force, require_engine=require_engine, hardware=host_choice(args),
                       plan_file=Path(plan_file) if plan_file else None, replan=getattr(args, "replan", False),
                       node=node_role(args, Path(plan_file) if plan_file else None))


def node_role(args: argparse.Namespace, plan_file):
    """--node-rank and friends -> NodeRole (None without --node-rank); `prepare` sets the node count from the plan."""
    from gptoss_deploy.errors import InputError
    from gptoss_deploy.serve.nodes import NodeRole

    rank = getattr(args, "node_rank", None)
    if rank is None:
        if getattr(args, "master_addr", None) or getattr(args, "worker_address", None):
            raise InputError("--master-addr / --worker-address need --node-rank", hint="0 on the head, 1.. on workers")
        return None
    if plan_file is None:
        raise InputError("--node-rank serves a saved plan: pass --plan FILE (the same file on every node)",
                         hint="gptoss plan --nodes N ... --save plan.json")
    if not args.master_addr:
        raise InputError("--node-rank needs --master-addr (the head's address)", hint="e.g. --master-addr 10.0.0.1")
    return NodeRole(rank=int(rank), nnodes=0, master_addr=args.master_addr, master_port=args.master_port,
                    address=args.node_address or "", workers=tuple(args.worker_address),
                    agent_port=args.node_agent_port)


def _dry_run(args: argparse.Namespace, prepared) -> int:
    from gptoss_deploy.cli.output import emit_json, message

    launch = prepared.launch
    payload = {"engine": launch.engine, "argv": launch.argv, "env": launch.masked_env(),
               "engine_args": prepared.plan.engine_args, "plan_env": prepared.plan.env,
               "engine_version": prepared.engine_info.version if prepared.engine_info else None,
               "notes": prepared.notes, "endpoint": prepared.endpoint.base_url + "/v1",
               "served_model_name": prepared.endpoint.served_name}
    if args.json:
        emit_json("serve-dry-run", payload)
    else:
        print(launch.describe())
        for note in prepared.notes:
            message(f"note: {note}")
    return 0


def server_name(args: argparse.Namespace, port: int) -> str:
    """--name, else serve-PORT (the same name as the log, serve-PORT.log)."""
    from gptoss_deploy.serve.state import check_name

    return check_name(args.name) if args.name else f"serve-{port}"


def _register(args: argparse.Namespace, prepared, log_path):
    """Write this server's entry in the state folder (gptoss ps / logs / stop); refuse a name already running."""
    import os
    import time

    from gptoss_deploy.serve import state

    name = server_name(args, prepared.endpoint.port)
    other = state.running(name)
    if other is not None and other.pid != os.getpid():
        prepared.launch.remove_files()
        raise InputError(f"a server called {name!r} already runs (pid {other.pid}, {other.base_url})",
                         hint=f"gptoss stop {name}, or pick another --name / --port")
    entry = state.ServerState(name=name, pid=os.getpid(), engine=prepared.launch.engine, model=prepared.plan.model,
                              served_name=prepared.endpoint.served_name, base_url=prepared.endpoint.base_url,
                              log=str(log_path), console_log=os.environ.get("GPTOSS_CONSOLE_LOG"),
                              plan=args.plan if getattr(args, "plan", None) else None, started_at=time.time())
    state.write(entry)
    return entry


def _detach(args: argparse.Namespace, settings) -> int:
    """Start this same command without --detach in a new session, its output in the state folder; wait until it
    is ready (its entry says so) or exits (then show why)."""
    import os
    import subprocess
    import sys
    import time

    from gptoss_deploy.cli.output import message
    from gptoss_deploy.serve import state

    name = server_name(args, settings.port)
    other = state.running(name)
    if other is not None:
        raise InputError(f"a server called {name!r} already runs (pid {other.pid}, {other.base_url})",
                         hint=f"gptoss stop {name}, or pick another --name / --port")
    argv = [a for a in args.raw_argv if a not in ("--detach", "-d")]
    if "--name" not in argv:
        at = argv.index("--") if "--" in argv else len(argv)
        argv[at:at] = ["--name", name]
    console_log = state.state_dir() / f"{name}.out"
    console_log.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    env = dict(os.environ, GPTOSS_CONSOLE_LOG=str(console_log), SHOW_LOADING_PROGRESS="0")
    with console_log.open("wb") as sink:
        os.chmod(console_log, 0o600)
        child = subprocess.Popen([sys.executable, "-m", "gptoss_deploy.cli.main", *argv], stdin=subprocess.DEVNULL,
                                 stdout=sink, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    message(f"[serve] detached as {name} (pid {child.pid}); waiting until it answers — gptoss logs {name} -f")
    deadline = time.monotonic() + (args.ready_timeout or 7200.0)
    while time.monotonic() < deadline:
        code = child.poll()
        if code is not None:
            tail = console_log.read_text(errors="replace")[-2000:]
            message(tail.rstrip())
            message(f"[serve] {name} exited with code {code} before it was ready (its output: {console_log})")
            return code or 1
        entry = state.running(name)
        if entry is not None and entry.status == "ready":
            if args.json:
                from gptoss_deploy.cli.output import emit_json

                emit_json("server", entry)
            else:
                print(entry.base_url)
            message(f"[serve] {name} ready: {entry.base_url} ({entry.served_name}); gptoss ps, gptoss stop {name}")
            return 0
        time.sleep(0.5)
    message(f"[serve] {name} is not ready after {args.ready_timeout or 7200:g} s; it keeps starting in the "
            f"background (gptoss logs {name} -f, gptoss stop {name})")
    return 1


def _pull_first(args: argparse.Namespace, prepared) -> bool:
    """Pull the model from the Hub before the engine starts when the engine would download it (progress, disk
    check, resume, sha256: `gptoss pull`), so the start window no longer hides a download. True when the model is
    in the cache now."""
    import os

    from gptoss_deploy.models.pull import is_cached, pull

    repo = prepared.hub_repo
    if repo is None:
        return False
    if is_cached(repo):
        return True
    if args.no_pull or os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    from gptoss_deploy.cli.output import message, quiet
    from gptoss_deploy.cli.pull_cmd import RichProgress

    message(f"[serve] {repo} is not in the Hugging Face cache: pulling it first (gptoss pull)")
    display = None if (args.json or quiet()) else RichProgress()
    try:
        pull(repo, progress=display.hooks() if display else None)
    finally:
        if display is not None:
            display.stop()
    return True


def _print_ready(args: argparse.Namespace, supervisor, report) -> None:
    from gptoss_deploy.cli.output import console, emit_json, message

    if args.json:
        emit_json("serve-ready", report)
    else:
        print(f"endpoint: {report.base_url}/v1  model: {report.served_model_name}", flush=True)
    message(f"[serve] ready in {report.ready_seconds:.0f} s; log {report.log}")
    for phase in report.phases:
        message(f"  {phase.started_s:8.1f} s  {phase.phase}")
    if report.plan_vs_actual:
        from rich.table import Table

        table = Table(title="plan vs actual", title_justify="left")
        for column in ("quantity", "planned", "actual", "diff", "status"):
            table.add_column(column)
        for row in report.plan_vs_actual:
            diff = f"{row.relative_difference:+.2%}" if row.relative_difference is not None else ""
            table.add_row(row.quantity, row.planned, row.actual, diff, row.status)
        console(stderr=True).print(table)
        message(f"[serve] saved {supervisor.report_path()}")


def _check_once(endpoint) -> None:
    """`gptoss check` against the freshly started server; the result is reported, serving goes on."""
    from gptoss_deploy.check.runner import run_checks
    from gptoss_deploy.cli.check_cmd import render_report
    from gptoss_deploy.cli.output import message

    report = run_checks(endpoint.base_url, api_key=endpoint.api_key, model=endpoint.served_name)
    render_report(report)
    message("[serve] check: " + ("FAILED, see above; still serving" if report.failed else "passed"))


def run(args: argparse.Namespace) -> int:
    """`gptoss serve`: 0 after a clean stop, 1 when the engine failed or restarts ran out, 2 on bad input."""
    from pathlib import Path

    from gptoss_deploy.cli.output import message
    from gptoss_deploy.serve.progress import StartupProgress
    from gptoss_deploy.serve.service import prepare, require_port_free
    from gptoss_deploy.serve.supervisor import (
        SuperviseOptions,
        Supervisor,
        default_log_path,
        ready_timeout_for,
        stop_on_signals,
    )

    if args.canary_timeout > args.canary_interval:
        from gptoss_deploy.errors import InputError

        raise InputError("--canary-timeout must not exceed --canary-interval",
                         hint="a wedge is then caught within two intervals")
    if args.quality_every and not args.watchdog:
        from gptoss_deploy.errors import InputError

        raise InputError("--quality-every needs --watchdog", hint="add --watchdog (it restarts what the canary finds broken)")
    settings = settings_from(args)
    if args.detach and not args.dry_run:
        return _detach(args, settings)
    inputs = inputs_from(args, require_engine=not args.dry_run)
    prepared = prepare(settings, inputs)
    if args.dry_run:
        prepared.launch.remove_files()  # the key file is not needed when nothing starts
        return _dry_run(args, prepared)
    role = prepared.node
    worker = role is not None and not role.head
    try:  # until the supervisor owns the launch, a failure here must not leave its key file behind
        if not worker:
            require_port_free(settings.host, settings.port)
        for note in prepared.notes:
            message(f"note: {note}")
        pulled = _pull_first(args, prepared)
        log_path = Path(args.log_file) if args.log_file else default_log_path(settings.port)
        options = SuperviseOptions(
            ready_timeout_s=args.ready_timeout or ready_timeout_for(prepared.model.checkpoint_bytes,
                                                                    downloads=not pulled),
            stall_timeout_s=args.stall_timeout, stop_grace_s=args.stop_grace, watchdog=args.watchdog,
            canary_interval_s=args.canary_interval, canary_timeout_s=args.canary_timeout, wedge_s=args.wedge_after,
            quality_every_s=args.quality_every, max_restarts=args.max_restarts, restart_window_s=args.restart_window)
        supervisor = Supervisor(prepared.launch, prepared.plan, prepared.endpoint, log_path, options,
                                StartupProgress(enabled=settings.show_loading_progress and not worker),
                                stop_on_signals(), prepared.notes, prepared.download_probe, role=role)
    except BaseException:
        prepared.launch.remove_files()
        raise
    message(f"[serve] {prepared.launch.engine} {prepared.engine_info.version if prepared.engine_info else ''}: "
            f"{prepared.plan.model} as {prepared.endpoint.served_name}; log {log_path}")
    entry = None if worker else _register(args, prepared, log_path)
    try:
        report = supervisor.start()
        if entry is not None and supervisor.engine is not None:
            from gptoss_deploy.serve import state

            entry = entry.model_copy(update={"status": "ready", "engine_pgid": supervisor.engine.pid})
            state.write(entry)
        if role is not None and worker:
            message(f"[serve] node {role.rank} of {role.nnodes}: engine worker running; the API is on the head")
        else:
            _print_ready(args, supervisor, report)
        if args.check and not worker:
            _check_once(prepared.endpoint)
        code = supervisor.serve()
    except KeyboardInterrupt:
        message("[serve] interrupted; the engine was stopped")
        code = 130
    finally:
        left = supervisor.stop()
        if entry is not None:
            from gptoss_deploy.serve import state

            state.remove(entry.name, pid=entry.pid)
    if left:
        message(f"[serve] processes still alive after stop: {left}")
        return 1
    message("[serve] stopped")
    return code
