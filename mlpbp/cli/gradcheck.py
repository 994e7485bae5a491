"""`mlpbp gradcheck`: backprop against finite differences."""

from __future__ import annotations

from pathlib import Path

import typer

from mlpbp.cli.app import command, echo_json, out
from mlpbp.errors import ArgumentError
from mlpbp.tools import gradcheck_defaults as defaults


@command
def gradcheck(
    config: Path | None = typer.Argument(
        None,
        help="YAML run config: check its network (float64) on a small batch of its data. "
        "Without it: every activation x every loss on a small built-in network (3-4-4-3, batch 6).",
    ),
    eps: float = typer.Option(
        defaults.DEFAULT_EPS,
        "--eps",
        help="Central-difference step. In float64, 1e-6 balances "
        "truncation error (~eps^2) against round-off (~1e-16/eps): both ~1e-10.",
    ),
    rtol: float = typer.Option(
        defaults.DEFAULT_RTOL,
        "--rtol",
        help="Pass when max|analytical - numerical| over a tensor <= "
        "rtol x max(max|analytical|, max|numerical|, atol/rtol). Correct code gives ~1e-8; "
        "a wrong backward gives ~1e-2 or more.",
    ),
    atol: float = typer.Option(
        defaults.DEFAULT_ATOL,
        "--atol",
        help="Absolute floor for tensors whose gradient is ~0 "
        "(e.g. zero by symmetry): central differences leave ~2e-10 x |J| of round-off.",
    ),
    samples: int = typer.Option(
        defaults.DEFAULT_SAMPLES,
        "--samples",
        help=f"Entries checked per tensor of more than "
        f"{defaults.FULL_MAX} entries, drawn at random; smaller tensors are checked entry by entry.",
    ),
    seed: int = typer.Option(
        defaults.DEFAULT_SEED,
        "--seed",
        help="Seeds the batch rows, sampled entries, upstream gradients and HVP directions.",
    ),
    batch: int = typer.Option(defaults.DEFAULT_BATCH, "--batch", help="Rows of the config's data to check on."),
    overrides: list[str] | None = typer.Option(
        None, "--set", help="Override a config key, e.g. --set model.activation=tanh (repeatable)."
    ),
    as_json: bool = typer.Option(
        False,
        "--json",
        help='Print only {"ok": ..., "checks": [{"name", "shape", "max_abs_err", '
        '"max_rel_err", "ok", ...}]} on stdout.',
    ),
) -> None:
    """Check backprop against central finite differences: each parameter's gradient, each
    layer's input gradient, and Hessian-vector products (vs differences of gradients, and
    symmetry). Exit 0 if all pass, 1 if any fails, 2 for bad input."""
    import time

    from mlpbp.cli.render.gradcheck import gradcheck_report
    from mlpbp.run.config import load_config
    from mlpbp.tools import gradcheck as gradcheck_api

    start = time.perf_counter()
    if config is None:
        if overrides:
            raise ArgumentError("--set needs a CONFIG to override")
        report = gradcheck_api.check_builtin(eps, rtol, atol, samples, seed)
        title = (
            f"gradcheck: built-in network {'-'.join(map(str, gradcheck_api.BUILTIN_WIDTHS))}, batch "
            f"{gradcheck_api.BUILTIN_BATCH}, every activation x loss (eps {eps:g})"
        )
    else:
        cfg = load_config(config, overrides or ())
        report = gradcheck_api.check_config(cfg, eps, rtol, atol, samples, seed, batch)
        title = f"gradcheck: {config} (float64, batch of {batch}, eps {eps:g})"
    seconds = time.perf_counter() - start
    if as_json:
        echo_json(report.to_dict())
    else:
        gradcheck_report(out, report, title, grouped=config is None, seconds=seconds)
    raise typer.Exit(0 if report.ok else 1)
