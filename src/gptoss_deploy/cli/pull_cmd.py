"""`gptoss pull MODEL`: download a model from the Hugging Face Hub with a size check, progress, resume and integrity."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

EXAMPLES = """examples:
  gptoss pull gpt-oss-20b                         # openai/gpt-oss-20b into the Hugging Face cache
  gptoss pull openai/gpt-oss-120b --revision main
  gptoss pull ggml-org/gpt-oss-20b-GGUF --include '*mxfp4*.gguf'   # one GGUF file or shard set
  HF_ENDPOINT=https://hf-mirror.example gptoss pull gpt-oss-20b   # a mirror
  gptoss pull gpt-oss-20b --offline               # is it complete in the cache? (no network)

The size is checked against the cache disk first (HF_HOME / HF_HUB_CACHE); an interrupted pull resumes; every
file's size and every large (LFS) file's sha256 are checked against the Hub's; a file that fails is removed.
exit codes: 0 pulled, 1 the download or an integrity check failed, 2 bad input (unknown repository, no space,
a pattern that selects nothing or an incomplete shard set).
"""


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add `pull`."""
    p = commands.add_parser("pull", parents=[common], help="download a model with progress, resume and checks",
                            description="Download a model from the Hugging Face Hub into its cache before serving: "
                                        "disk space first, progress per file and in total, resume, sizes and sha256.",
                            epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="a catalog id (gpt-oss-20b, gpt-oss-120b) or a Hub repository (owner/name)")
    p.add_argument("--revision", help="branch, tag or commit (default: main)")
    p.add_argument("--include", action="append", default=[], metavar="PATTERN",
                   help="only files matching this glob (repeatable; default: config, tokenizer, template, "
                        "safetensors); GGUF repositories need one, e.g. '*Q4_K_M*'")
    p.add_argument("--offline", action="store_true", help="check the cache only (also HF_HUB_OFFLINE=1)")
    p.set_defaults(handler=run)


if TYPE_CHECKING:
    from rich.progress import TaskID


class RichProgress:
    """A rich progress display on stderr: the current file and the total, in bytes with rate and ETA."""

    def __init__(self) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        from gptoss_deploy.cli.output import console

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                            TimeRemainingColumn(), console=console(stderr=True), transient=False)
        self.total_task: TaskID | None = None
        self.file_task: TaskID | None = None

    def hooks(self):
        """The callbacks models.pull reports through."""
        from gptoss_deploy.models.pull import Progress

        return Progress(start=self.start, file=self.file, advance=self.advance, verify=self.verify)

    def start(self, total: int, present: int) -> None:
        """Show the total bar (present bytes already counted)."""
        self.bar.start()
        self.total_task = self.bar.add_task("total", total=total, completed=present)

    def file(self, path: str, size: int) -> None:
        """A new file bar."""
        if self.file_task is not None:
            self.bar.remove_task(self.file_task)
        self.file_task = self.bar.add_task(path[-40:], total=size)

    def advance(self, file_bytes: int, all_bytes: int) -> None:
        """Bytes so far."""
        if self.file_task is not None and file_bytes:
            self.bar.update(self.file_task, completed=file_bytes)
        if self.total_task is not None:
            self.bar.update(self.total_task, completed=all_bytes)

    def verify(self, path: str) -> None:
        """Checking a file."""
        if self.file_task is not None:
            self.bar.update(self.file_task, description=f"verify {path[-33:]}")

    def stop(self) -> None:
        """End the display."""
        self.bar.stop()


def run(args: argparse.Namespace) -> int:
    """`gptoss pull MODEL`."""
    from gptoss_deploy.cli.output import emit_json, message, quiet
    from gptoss_deploy.models.pull import hub_repo, pull

    repo = hub_repo(args.model)
    display = None if (args.json or quiet()) else RichProgress()
    try:
        report = pull(repo, revision=args.revision, include=args.include, offline=args.offline,
                      progress=display.hooks() if display else None)
    finally:
        if display is not None:
            display.stop()
    if args.json:
        emit_json("pull", report)
        return 0
    fetched = sum(f.downloaded for f in report.files)
    message(f"{repo}@{report.revision[:12]}: {len(report.files)} files, {report.total_bytes / 2**30:.2f} GiB "
            f"({fetched} downloaded, {report.downloaded_bytes / 2**20:.1f} MiB in {report.seconds:.1f} s); "
            f"checked: {sum(f.verified == 'sha256' for f in report.files)} sha256, "
            f"{sum(f.verified == 'size' for f in report.files)} sizes")
    print(report.snapshot)
    return 0
