"""`mlpbp inspect`: what a model file holds."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mlpbp.cli.console import PIPE_WIDTH
from mlpbp.cli.render.metrics import metrics_table
from mlpbp.engine.graph import shape_label
from mlpbp.tools.model_info import ModelInfo

NOT_RECORDED = "[dim]not recorded[/] (an older model file)"


def _flops(n: int) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.3g} {unit}FLOP"
    return f"{n} FLOP"


def _join_short(items: list[str], limit: int = 12) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", … ({len(items)} in all)" if len(items) > limit else "")


def model_summary(out: Console, info: ModelInfo) -> None:
    say = lambda text: out.print(text, highlight=False, soft_wrap=True)  # noqa: E731
    say(f"[bold]{escape(info.path)}[/]  ({info.bytes:,} bytes, model format {info.format_version})")
    say(f"sha256  {info.sha256}")
    graph = any(r.inputs != [r.index - 1] for r in info.layers)
    shape = shape_label(info.widths, info.activation, len(info.layers), chain=not graph)
    say(f"{info.task}: {shape}, {info.params:,} parameters, {info.loss} loss, {info.dtype}")
    table = Table(title="layers", title_justify="left", box=None, pad_edge=False, header_style="bold")
    for col in ("#", "layer", *(("inputs",) if graph else ()), "output", "params", "FLOPs/row fwd", "FLOPs/row bwd"):
        table.add_column(col, justify="left" if col == "layer" else "right", no_wrap=True)
    for r in info.layers:
        shapes = ", ".join(f"{k} {'x'.join(map(str, s))}" for k, s in r.param_shapes.items())
        if r.kind == "linear":
            what = f"Linear {r.in_width}→{r.out} ({shapes})"
        elif r.kind == "activation":
            what = f"{r.activation}"
        else:
            what = escape(r.label) + (f" ({shapes})" if shapes else "")
        table.add_row(
            str(r.index),
            what,
            *((", ".join("input" if j == 0 else f"#{j}" for j in r.inputs),) if graph else ()),
            f"(n, {r.out})",
            f"{r.params:,}",
            f"{r.flops_forward:,}",
            f"{r.flops_backward:,}",
        )
    out.print()
    out.print(table)
    f = info.flops
    say(
        f"per row: forward {_flops(f.forward_per_row)}, training step {_flops(f.train_step_per_row)} "
        f"(forward + backward); the update adds {_flops(f.update_per_step)} per batch"
    )
    out.print()
    say(f"[bold]inputs[/]   {len(info.features)} features: {escape(_join_short(info.features))}")
    pre = info.preprocessing
    scaled = "standardised (mean, scale of the training split)" if pre.inputs.standardized else "as they are"
    say(f"[bold]scaling[/]  inputs {scaled}")
    if pre.targets is not None:
        say("         targets standardised; predictions are in the target's own units")
    if info.classes is not None:
        say(f"[bold]classes[/]  {len(info.classes)}: {escape(_join_short(info.classes))}")
    if isinstance(info.target, list):  # a multi-output regression: one target column per output
        say(f"[bold]targets[/]  {len(info.target)}: {escape(_join_short(info.target))}")
    elif info.target:
        say(f"[bold]target[/]   {escape(info.target)}")
    out.print()
    m = info.metrics
    if m is None:
        say(f"[bold]final metrics[/] {NOT_RECORDED}")
    else:
        on = "test" if m.get("evaluated_on") == "test" else "training (no test split)"
        kept = m.get("weights_from_epoch")
        of = (
            f"; the weights are epoch {kept}'s (the best validation loss)"
            if kept and kept != m.get("epochs_trained")
            else ""
        )
        say(f"[bold]final metrics[/] on the {on} split, after {m.get('epochs_trained', '?')} epochs{of}")
        out.print(metrics_table(m))
    w = info.written_by
    if w is None:
        say(f"[bold]written by[/] {NOT_RECORDED}")
    else:
        say(f"[bold]written by[/] mlpbp {w.get('mlpbp', '?')}, NumPy {w.get('numpy', '?')}")
    cfg = info.config
    if cfg:
        import yaml

        out.print()
        say("[bold]config[/] (as trained, every default filled in)")
        for key, value in cfg.items():
            flow = yaml.safe_dump(value, default_flow_style=True, width=PIPE_WIDTH, sort_keys=False).strip()
            say(f"  {key}: {escape(flow.removesuffix('...').strip())}")
