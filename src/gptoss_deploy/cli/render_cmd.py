"""`gptoss render`: one plan -> docker, compose, systemd, Kubernetes, RunPod and monitoring artifacts."""

from __future__ import annotations

import argparse
from pathlib import Path

from gptoss_deploy.cli.args import port
from gptoss_deploy.cli.plan_cmd import add_plan_flags

EXAMPLES = """examples:
  gptoss render all --out deploy/ --profile 4xL40S --model gpt-oss-20b --tp 4
  gptoss render compose --out deploy/ --profile h100 --model gpt-oss-120b --monitoring
  gptoss render systemd --out /tmp/unit --profile strix-halo-128gb --api-key-file /etc/gptoss/api_key --public
  gptoss render kubernetes --out k8s/ --profile h200 --hf-token-file /etc/gptoss/hf_token

Secrets are never written: --api-key-file / --hf-token-file name files on the target host (mounted as secrets,
systemd credentials, Kubernetes Secrets). Existing files are kept unless --overwrite (then saved as .bak).
`gptoss serve` artifacts (systemd, image) carry the plan file (NAME.plan.json) and run exactly it.
"""


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add `render`."""
    from gptoss_deploy.render.output import ALL

    p = commands.add_parser("render", parents=[common], help="write deployment files from the plan",
                            description="Plan (as `gptoss plan` does), then write the deployment for TARGET from that "
                                        "plan: the engine flags inside are the plan's. Each file is validated with a "
                                        "real tool where one is installed.",
                            epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("target", choices=[*ALL, "all"])
    p.add_argument("--out", required=True, help="folder to write into")
    add_plan_flags(p)
    dep = p.add_argument_group("deployment")
    dep.add_argument("--port", type=port, default=8000, help="published port (default 8000)")
    dep.add_argument("--public", action="store_true", help="publish on all interfaces (needs --api-key-file)")
    dep.add_argument("--api-key-file", help="path ON THE TARGET HOST of the API key file (referenced, never read)")
    dep.add_argument("--hf-token-file", help="path on the target host of a Hugging Face token file (gated models)")
    dep.add_argument("--served-model-name", help="name clients send (default: the model's)")
    dep.add_argument("--image", help="container image instead of the one chosen for the GPU")
    dep.add_argument("--name", default="gptoss", help="service / container / unit name (default gptoss)")
    dep.add_argument("--proxy", metavar="DOMAIN", help="compose: add a Caddy TLS reverse proxy for DOMAIN")
    dep.add_argument("--monitoring", action="store_true", help="compose: add Prometheus + Grafana")
    p.add_argument("--gptoss-path", default="/usr/local/bin/gptoss", help="systemd: where gptoss is installed")
    p.add_argument("--overwrite", action="store_true", help="overwrite existing files (keeping .bak copies)")
    p.add_argument("--no-validate", action="store_true", help="skip validating the artifacts")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """`gptoss render TARGET --out DIR`: 0 written and valid, 1 a validation failed, 2 bad input."""
    from gptoss_deploy.cli.output import emit_json, message
    from gptoss_deploy.cli.plan_cmd import build_planned
    from gptoss_deploy.render.deployment import RenderOptions, check_options
    from gptoss_deploy.render.output import render, validate, write, write_rejected

    check_options(RenderOptions(name=args.name, image=args.image, api_key_file=args.api_key_file,
                                hf_token_file=args.hf_token_file),
                  {"proxy": args.proxy, "gptoss_path": args.gptoss_path})  # before any planning
    planned = build_planned(args)
    host, plan = planned.host, planned.plan
    options = RenderOptions(port=args.port, public=args.public, api_key_file=args.api_key_file,
                            hf_token_file=args.hf_token_file, served_name=args.served_model_name, image=args.image,
                            name=args.name)
    deployment, artifacts = render([args.target], plan, host, options,
                                   {"proxy": args.proxy, "monitoring": args.monitoring,
                                    "gptoss_path": args.gptoss_path})
    checks = [] if args.no_validate else validate(artifacts, deployment, plan)
    failed = [c for c in checks if c.failed]
    if failed:  # a set that failed is never moved into place: it is kept aside for inspection
        paths = [write_rejected(artifacts, Path(args.out)) / a.name for a in artifacts]
    else:
        paths = write(artifacts, Path(args.out), args.overwrite)
    if args.json:
        emit_json("render", {"deployment": deployment.model_dump(), "written": [str(p) for p in paths],
                   "validation": [c.model_dump() for c in checks]})
    else:
        for path in paths:
            print(path)
        for check in checks:
            message(f"{check.status.upper() if check.failed else check.status}: {check.artifact}: {check.tool}"
                    + (f" ({check.detail})" if check.detail else ""))
        if deployment.image_note:
            message(f"note: {deployment.image_note}")
        for note in deployment.notes:
            message(f"note: {note}")
    if failed and not args.json:
        message(f"error: {len(failed)} check(s) failed: nothing was written into {args.out}; the files are in "
                f"{Path(args.out) / '.gptoss-rejected'} for inspection (report the failure: it is a gptoss bug)")
    return 1 if failed else 0
