"""`gptoss vocab install`: prepare an air-gapped host for harmony (o200k_base.tiktoken, cl100k_base.tiktoken)."""

from __future__ import annotations

import argparse
from pathlib import Path

EXAMPLES = """examples:
  gptoss vocab install                                  # into ~/.cache/gptoss-deploy/vocab, from PyPI's quicktok wheel
  gptoss vocab install --dir /opt/harmony-vocab --wheel ./quicktok_v1-0.4.0-cp311-*.whl
  gptoss vocab install --tiktoken ./o200k_base.tiktoken  # verify and install an existing file
then: export TIKTOKEN_ENCODINGS_BASE=<dir>   (vLLM reads the vocab from there)
"""


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add `vocab install`."""
    vocab = commands.add_parser("vocab", parents=[common], help="offline harmony vocabulary",
                                description="Offline harmony vocabulary for air-gapped vLLM hosts.")
    actions = vocab.add_subparsers(dest="vocab_command", metavar="ACTION", required=True)
    install = actions.add_parser("install", parents=[common], help="build, verify and install the .tiktoken files",
                                 description="Rebuild o200k_base.tiktoken and cl100k_base.tiktoken from the "
                                             "quicktok-v1==0.4.0 wheel (or take an existing .tiktoken file), verify "
                                             "tiktoken's sha256 and install them.",
                                 epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    install.add_argument("--dir", type=Path, help="target folder (default ~/.cache/gptoss-deploy/vocab)")
    source = install.add_mutually_exclusive_group()
    source.add_argument("--wheel", type=Path, help="a downloaded quicktok_v1 wheel (no network needed)")
    source.add_argument("--tiktoken", type=Path, help="an existing o200k_base.tiktoken to verify and install")
    install.set_defaults(handler=run_install)


def run_install(args: argparse.Namespace) -> int:
    """Install the vocab and print where, with the env line to use."""
    from gptoss_deploy import vocab
    from gptoss_deploy.cli.output import emit_json, message

    result = vocab.install(args.dir, wheel=args.wheel, tiktoken_file=args.tiktoken)
    if args.json:
        emit_json("vocab", result)
    else:
        for encoding, digest in result.files.items():
            message(f"verified {encoding}.tiktoken sha256 {digest[:16]}…")
        print(f"export TIKTOKEN_ENCODINGS_BASE={result.directory}")
    return 0
