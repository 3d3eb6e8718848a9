"""`gptoss completion bash|zsh|fish`: print a shell completion script generated from the parser."""

from __future__ import annotations

import argparse

EXAMPLES = """examples:
  source <(gptoss completion bash)                 # this shell; or save it to
  gptoss completion bash > ~/.local/share/bash-completion/completions/gptoss
  gptoss completion zsh > "${fpath[1]}/_gptoss"    # then restart zsh (compinit loads it)
  gptoss completion fish > ~/.config/fish/completions/gptoss.fish
Commands, flags, choices, --profile names, --model catalog ids, --gpu names and --provider ids complete; the names
are those of this release's data (generate the script again after an upgrade).
"""


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add `completion`."""
    from gptoss_deploy.cli.completion import SHELLS

    p = commands.add_parser("completion", parents=[common], help="print a shell completion script (bash, zsh, fish)",
                            description="Print a completion script for commands, flags, hardware profiles and model "
                                        "ids, generated from gptoss's own argument parser.",
                            epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("shell", choices=SHELLS, help="the shell to complete in")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Print the script (or {shell, script} as JSON)."""
    import sys

    from gptoss_deploy.cli.completion import script
    from gptoss_deploy.cli.main import build_parser

    text = script(args.shell, build_parser())
    if args.json:
        from gptoss_deploy.cli.output import emit_json

        emit_json("completion", {"shell": args.shell, "script": text})
    else:
        sys.stdout.write(text)
    return 0
