"""Human rendering of a Plan with rich: verdict, memory bar, flags, warnings, predicted log, --explain."""

from __future__ import annotations

import shlex

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from gptoss_deploy.hardware.types import GIB
from gptoss_deploy.plan.types import Parallelism, Plan, VllmMemory

VERDICT_STYLE = {"fits": "bold green", "fits with changes": "bold yellow", "does not fit": "bold red"}
SEVERITY_STYLE = {"refuse": "red", "warn": "yellow", "info": "cyan"}
BAR_WIDTH = 50
LABEL_STYLE = {"measured": "green", "derived": "cyan", "extrapolated": "yellow", "estimated": "magenta",
               "given": "white"}


def memory_bar(memory: VllmMemory) -> Text:
    """One bar of the per-GPU budget: weights | activations | graphs | KV | unused."""
    total = memory.visible_bytes
    parts = [("weights", memory.weights_bytes, "blue"),
             ("activations", memory.activation_bytes + memory.non_torch_bytes, "magenta"),
             ("graphs", memory.cudagraph_bytes, "cyan"), ("KV", max(memory.kv_bytes, 0), "green")]
    bar, legend = Text(), Text()
    used = 0
    for name, size, style in parts:
        cells = round(BAR_WIDTH * size / total) if total else 0
        used += cells
        bar.append("█" * cells, style=style)
        legend.append(f" {name} {size / GIB:.1f} GiB", style=style)
    bar.append("░" * max(BAR_WIDTH - used, 0), style="dim")
    legend.append(f"  of {total / GIB:.1f} GiB (util {memory.gpu_memory_utilization:g})", style="dim")
    return bar + Text("\n") + legend


def _command_line(plan: Plan) -> str:
    from gptoss_deploy.engines import registry

    if plan.engine is None:
        return ""
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(plan.env.items()))
    return (env + " " if env else "") + shlex.join(registry.get(plan.engine).display_command(plan))


def render_parallel(par: Parallelism, out: Console) -> None:
    """The layouts compared for the goal, the chosen one's load curve, and what every GPU does."""
    table = Table("layout", "GPUs", "peak out tok/s", "at users", "knee", "1-user tok/s", "1-user TTFT ms",
                  "full-length requests", "SLO", "Pareto", title=f"Layouts for goal '{par.goal}' ({par.input_tokens} in / "
                  f"{par.output_tokens} out per request; predicted \\[{par.label}])", title_justify="left")
    for o in par.options:
        name = " x ".join([f"TP{o.tp}"] + ([f"DP{o.dp}"] if o.dp > 1 else []) + ([f"PP{o.pp}"] if o.pp > 1 else []))
        if o.nodes > 1:
            name += f" on {o.nodes} nodes"
        table.add_row(Text(name + (" ✓" if o.chosen else ""), style="bold" if o.chosen else ""),
                      f"{o.gpus_used}" + (f" (+{o.idle_gpus} idle)" if o.idle_gpus else ""),
                      f"{o.peak_output_tokens_per_s:,.0f}", str(o.peak_concurrency), str(o.knee),
                      f"{o.single_user_tokens_per_s:,.0f}", f"{o.ttft_ms_single:,.0f}",
                      f"{o.requests_at_max_len * o.dp * max(o.nodes // max(o.pp, 1), 1):.1f}",
                      "meets" if o.meets_slo else "misses", "yes" if o.pareto else "no")
    out.print(table)
    curve = Table("users", "out tok/s", "per user tok/s", "per GPU tok/s", "TPOT ms", "TTFT ms", "bound",
                  title=f"Chosen layout under load (knee at {par.knee} users)", title_justify="left")
    for p in par.curve:
        curve.add_row(str(p.concurrency), f"{p.output_tokens_per_s:,.0f}", f"{p.per_user_tokens_per_s:,.0f}",
                      f"{p.per_gpu_tokens_per_s:,.0f}", f"{p.tpot_ms:,.1f}", f"{p.ttft_ms:,.0f}", p.bound)
    out.print(curve)
    out.print(f"  {escape(par.efficiency)}", soft_wrap=True)
    out.print("[bold]GPUs[/bold]: " + "; ".join(par.gpu_roles), soft_wrap=True)


def render_plan(plan: Plan, explain: bool = False, out: Console | None = None) -> None:
    """Print the plan for a person."""
    if out is None:
        from gptoss_deploy.cli.output import console

        out = console()
    out.print(Text(f"{plan.verdict.upper()}", style=VERDICT_STYLE[plan.verdict]),
              f" {plan.model} ({plan.model_quantization}, {plan.model_format}) on {plan.host}")
    for reason in plan.reasons:
        out.print(f"  • {reason}")
    for change in plan.changes:
        out.print(f"  [yellow]change[/yellow] {change.setting}: {change.requested} → {change.planned} ({change.reason})")
    if plan.memory is not None:
        out.print("\n[bold]Memory per GPU[/bold]")
        out.print(memory_bar(plan.memory))
    if plan.llamacpp is not None:
        ll = plan.llamacpp
        out.print(f"\n[bold]llama.cpp[/bold] {ll.n_parallel} slots x {ll.n_ctx // max(ll.n_parallel, 1):,} tokens "
                  f"(-c {ll.n_ctx:,} shared), GGUF {ll.model_bytes / GIB:.1f} GiB, KV {ll.kv_bytes / GIB:.2f} GiB "
                  f"+ SWA {ll.swa_bytes / GIB:.2f} GiB, compute {ll.compute_bytes / GIB:.1f} GiB; "
                  f"--n-cpu-moe {ll.n_cpu_moe} ({ll.cpu_expert_bytes / GIB:.1f} GiB of experts in RAM)")
    command = _command_line(plan)
    if command:
        out.print("\n[bold]Command[/bold]")
        out.print(command, soft_wrap=True)
    if plan.predicted_log:
        out.print("\n[bold]vLLM will log[/bold] (predicted)")
        for line in plan.predicted_log:
            out.print(f"  {line}")
    if plan.speed is not None:
        s = plan.speed
        out.print(f"\n[bold]Decode, one stream[/bold]: ceiling {s.ceiling_tokens_per_s:.0f} tok/s \\[derived] "
                  f"({s.bandwidth_gbs:.0f} GB/s ÷ {s.bytes_per_token / 1e9:.2f} GB/token), expected "
                  f"~{s.expected_tokens_per_s:.0f} tok/s \\[{s.label}] ({escape(s.basis)}; anchor: {escape(s.anchor)})")
    if plan.parallel is not None:
        render_parallel(plan.parallel, out)
    if plan.figures:
        table = Table("number", "value", "label", "how it is known", title="Where the numbers come from",
                      title_justify="left")
        for figure in plan.figures:
            basis = figure.basis if len(figure.basis) <= 90 else figure.basis[:87] + "..."
            table.add_row(figure.name, figure.value, Text(figure.label, style=LABEL_STYLE.get(figure.label, "")), basis)
        out.print(table)
    if plan.issues:
        table = Table("severity", "known issue", "fix", "source", title="Known issues that apply", title_justify="left")
        for issue in plan.issues:
            table.add_row(Text(issue.severity, style=SEVERITY_STYLE[issue.severity]), issue.title, issue.fix, issue.source)
        out.print(table)
    for warning in plan.warnings:
        out.print(f"[yellow]warning[/yellow] {warning}")
    if plan.alternatives:
        table = Table("alternative", "verdict", "detail", title="Alternatives", title_justify="left")
        for alt in plan.alternatives:
            table.add_row(alt.description, Text(alt.verdict, style=VERDICT_STYLE[alt.verdict]), alt.detail)
        out.print(table)
    if explain and plan.explain:
        table = Table("quantity", "formula", "inputs", "result", "label", title="How the numbers were computed",
                      title_justify="left")
        for item in plan.explain:
            inputs = ", ".join(f"{k}={v}" for k, v in item.inputs.items())
            table.add_row(item.name, item.formula, inputs, item.result, item.label)
        out.print(table)
        sources = [(f.name, f.source) for f in plan.figures if f.source]
        if sources:
            out.print("\n[bold]Sources[/bold]")
            for name, source in sources:
                out.print(f"  {name}: {source}", soft_wrap=True)
