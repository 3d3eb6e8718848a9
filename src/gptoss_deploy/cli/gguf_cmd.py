"""`gptoss gguf info|merge`: GGUF files and shard sets."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add `gguf` with `info` and `merge`."""
    p = commands.add_parser("gguf", parents=[common], help="describe or merge GGUF files",
                            description="Describe GGUF files and shard sets, or merge a split set.")
    sub = p.add_subparsers(dest="gguf_command", metavar="ACTION", required=True)
    info = sub.add_parser("info", parents=[common], help="architecture, tensor types, size, shard completeness")
    info.add_argument("path", help="a .gguf file (first shard for a set) or a folder")
    info.set_defaults(handler=run_info)
    merge = sub.add_parser("merge", parents=[common], help="merge a split set with llama-gguf-split --merge")
    merge.add_argument("first_shard", help="NAME-00001-of-0000N.gguf")
    merge.add_argument("output", help="the merged .gguf to write")
    merge.add_argument("--llama-gguf-split", help="path of llama-gguf-split (default: PATH, or beside llama-server)")
    merge.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    merge.set_defaults(handler=run_merge)


def run_info(args: argparse.Namespace) -> int:
    """`gptoss gguf info PATH`: 0, or 1 when a shard set is incomplete."""
    from rich.table import Table

    from gptoss_deploy.cli.output import console, emit_json
    from gptoss_deploy.models.gguf_tools import describe

    infos = describe(Path(args.path))
    if args.json:
        emit_json("gguf-info", [i.model_dump(exclude={"metadata"}) | {"complete": i.complete} for i in infos])
    else:
        table = Table(title_justify="left")
        for column in ("file", "architecture", "tensors", "types", "tensor GiB", "shards"):
            table.add_column(column, overflow="fold")
        for i in infos:
            types = ", ".join(f"{k} {v}" for k, v in sorted(i.tensor_types.items(), key=lambda kv: -kv[1]))
            shards = (f"{len(i.shards)}/{len(i.shards) + len(i.missing_shards)}"
                      + (f" MISSING {', '.join(i.missing_shards)}" if i.missing_shards else ""))
            table.add_row(Path(i.path).name, i.architecture, str(i.tensor_count), types, f"{i.tensor_bytes / 2**30:.2f}",
                          shards)
        console().print(table)
    return 0 if all(i.complete for i in infos) else 1


def run_merge(args: argparse.Namespace) -> int:
    """`gptoss gguf merge FIRST OUT`: 0 merged and verified; 2 bad input; 1 tool missing or failed."""
    from gptoss_deploy.cli.output import emit_json, message
    from gptoss_deploy.models.gguf_tools import merge

    report = merge(Path(args.first_shard), Path(args.output), args.llama_gguf_split, args.overwrite)
    if args.json:
        emit_json("gguf-merge", report)
    else:
        message(f"merged {len(report.shards)} shards into {report.output}: {report.tensor_count} tensors, "
                f"{report.tensor_bytes / 2**20:.1f} MiB of tensor data, identical to the set")
    return 0
