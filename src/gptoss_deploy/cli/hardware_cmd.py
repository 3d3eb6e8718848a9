"""`gptoss detect` and `gptoss profiles`: what this host has, and the named profiles to plan for."""

from __future__ import annotations

import argparse


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add the hardware commands."""
    detect = commands.add_parser("detect", parents=[common], help="show this host's GPUs, CPU and RAM",
                                 description="Detect NVIDIA (NVML), AMD (sysfs) GPUs, CPU and RAM. Example: gptoss detect --json")
    detect.set_defaults(handler=run_detect)
    profiles = commands.add_parser("profiles", parents=[common], help="list named hardware profiles",
                                   description="List the GPUs and hosts `--profile` accepts. Example: gptoss profiles")
    profiles.set_defaults(handler=run_profiles)


def run_detect(args: argparse.Namespace) -> int:
    """Print the detected host."""
    from gptoss_deploy.cli.output import console, emit_json
    from gptoss_deploy.hardware.detect import detect_host
    from gptoss_deploy.hardware.types import GIB

    host = detect_host()
    if args.json:
        emit_json("detect", host)
        return 0
    out = console()
    out.print(f"[bold]{host.describe()}[/bold]")
    for index, gpu in enumerate(host.gpus):
        cc = gpu.compute_capability or gpu.gfx_target or "?"
        out.print(f"  GPU{index}: {gpu.name} [{gpu.arch}, {cc}] {gpu.memory_bytes / GIB:.1f} GiB "
                  f"({gpu.memory_source})")
    cpu = host.cpu
    ram = f"{host.ram_bytes / GIB:.1f} GiB" if host.ram_bytes else "unknown"
    out.print(f"  CPU: {cpu.model}, {cpu.cores} threads, AVX-512 {'yes' if cpu.avx512 else 'no'}, "
              f"AMX {'yes' if cpu.amx else 'no'}; RAM {ram}")
    for note in host.notes:
        out.print(f"  note: {note}")
    return 0


def run_profiles(args: argparse.Namespace) -> int:
    """Print GPU and host profiles."""
    from gptoss_deploy import data
    from gptoss_deploy.cli.output import console, emit_json

    gpus = data.gpu_catalog()
    if args.json:
        emit_json("profiles", {"gpus": {k: v.model_dump() for k, v in gpus.gpus.items()},
                   "hosts": {k: v.model_dump() for k, v in gpus.hosts.items()}})
        return 0
    from rich.table import Table

    table = Table("profile", "GPU", "memory", "bandwidth", "arch", title="GPUs")
    for key, spec in gpus.gpus.items():
        table.add_row(key, spec.name, f"{spec.memory_mib / 1024:.1f} GiB", f"{spec.bandwidth_gbs} GB/s",
                      f"{spec.arch} {spec.compute_capability or spec.gfx_target or ''}")
    hosts = Table("profile", "GPUs", "RAM", title="Hosts")
    for key, host in gpus.hosts.items():
        hosts.add_row(key, f"{host.count}x {host.gpu}", f"{host.ram_gib} GiB" if host.ram_gib else "")
    out = console()
    out.print(table)
    out.print(hosts)
    out.print("Any GPU profile also works as N x GPU, e.g. --profile 3xh100, or --gpu L40S --gpus 4.")
    return 0
