"""MkDocs hook: the reference pages, generated at build time from the code itself.

- ``reference/cli.md``: every command of the Typer app, walked through Click's own API
  (``typer.main.get_command(app)``), with its usage, help, arguments and options;
- ``reference/config.md``: every config key, from the JSON Schema ``mlpbp schema`` prints;
- ``reference/api.md``: the public Python API, one mkdocstrings block per documented name,
  resolved to the module that defines it today (so moving code between modules never breaks
  the page, while removing a documented name fails the strict build).

Nothing here is written into the source tree: the pages exist only inside the build.
"""

from __future__ import annotations

import importlib
import json
import logging
from pathlib import Path

from mkdocs.structure.files import File

log = logging.getLogger("mkdocs.plugins.mlpbp")

# The Python API page: (section, intro, dotted names users import). Names are public contracts
# (README and docs use them); where each is defined is looked up when the site is built.
API = [
    (
        "Networks",
        "The engine: a network is a graph of modules from `Input` to an output and a loss; every "
        "module has `forward`, `backward` and the R-operator passes behind Hessian-vector products. "
        "`MLP` is the chain of `Linear` and activation modules.",
        [
            "mlpbp.MLP",
            "mlpbp.engine.graph.Network",
            "mlpbp.engine.module.Input",
            "mlpbp.engine.module.Module",
            "mlpbp.Linear",
            "mlpbp.Activation",
            "mlpbp.SquareLoss",
            "mlpbp.CrossEntropyLoss",
        ],
    ),
    (
        "Optimizers and schedules",
        "First-order rules update parameters in place: θ := θ − α∇J for `SGD`; `Adam` and `AdamW` "
        "follow `torch.optim`.",
        ["mlpbp.engine.optim.Optimizer", "mlpbp.SGD", "mlpbp.Adam", "mlpbp.AdamW", "mlpbp.learning_rate_at"],
    ),
    (
        "Registries",
        "One registry per kind is the only list of allowed names: `mlpbp.ACTIVATIONS`, `LOSSES`, "
        "`OPTIMIZERS`, `SCHEDULES`, `INITS` and `DTYPES` are instances of `Registry`. See "
        "[Add an activation or a layer](../how-to/extend.md).",
        ["mlpbp.Registry", "mlpbp.ActivationFn"],
    ),
    (
        "Curvature",
        "Hessian and Gauss-Newton products over a whole table, and what they tell about the loss. "
        "See [Read the Hessian tools](../how-to/hessian.md).",
        [
            "mlpbp.engine.curvature.Curvature",
            "mlpbp.engine.curvature.extreme_eigenvalues",
            "mlpbp.engine.curvature.hutchinson",
            "mlpbp.engine.curvature.spectral_density",
        ],
    ),
    (
        "Training runs",
        "What `mlpbp train` does, as functions: read a config, prepare the data, train.",
        [
            "mlpbp.run.config.load_config",
            "mlpbp.run.prepare.prepare",
            "mlpbp.run.trainer.Trainer",
            "mlpbp.run.trainer.train",
        ],
    ),
    (
        "Saved models and tables",
        "A `model.npz` loaded for prediction and evaluation on raw rows, and the reader of every table.",
        ["mlpbp.run.model_file.load_model", "mlpbp.run.model_file.TrainedModel", "mlpbp.data.read_table"],
    ),
    ("Gradient checks", "What `mlpbp gradcheck` runs.", ["mlpbp.tools.gradcheck.check_network"]),
    (
        "scikit-learn estimators",
        "Needs `pip install 'mlpbp[sklearn]'`. See [Use with scikit-learn](../how-to/scikit-learn.md).",
        ["mlpbp.sklearn.MLPClassifier", "mlpbp.sklearn.MLPRegressor"],
    ),
    (
        "Errors",
        "Every error the library raises is a subclass of `MlpbpError`; the CLI maps `TrainingError` to "
        "exit 1, `Interrupted` to 130 and the others to 2.",
        [
            "mlpbp.MlpbpError",
            "mlpbp.ConfigError",
            "mlpbp.DataError",
            "mlpbp.ModelFileError",
            "mlpbp.ArgumentError",
            "mlpbp.OutputError",
            "mlpbp.ResourceError",
            "mlpbp.TrainingError",
            "mlpbp.Interrupted",
        ],
    ),
]


def on_config(config):
    # Snippets are included from the repository root (docs/samples/..., CHANGELOG.md), whatever
    # the working directory of the build.
    root = str(Path(config.config_file_path).resolve().parent)
    config.mdx_configs.setdefault("pymdownx.snippets", {})["base_path"] = [root]
    return config


def on_files(files, config):
    for path, text in (
        ("reference/cli.md", cli_page()),
        ("reference/config.md", config_page()),
        ("reference/api.md", api_page()),
    ):
        files.append(File.generated(config, path, content=text))
    return files


# ---------------------------------------------------------------------------------------------
# The command line


def _cell(text: str | None) -> str:
    """Text for one Markdown table cell: on one line, pipes escaped."""
    return " ".join((text or "").split()).replace("|", "\\|")


def _params_table(cmd, ctx) -> list[str]:
    args, opts = [], []
    for p in cmd.get_params(ctx):
        record = p.get_help_record(ctx)
        if record is None or getattr(p, "hidden", False):
            continue
        names, help_text = record
        if p.param_type_name == "argument":
            args.append(f"| `{p.metavar or p.name.upper()}` | {_cell(help_text)} |")
        else:
            opts.append(f"| `{names}` | {_cell(help_text)} |")
    lines = []
    if args:
        lines += ["**Arguments**", "", "| argument | description |", "|---|---|", *args, ""]
    if opts:
        lines += ["**Options**", "", "| option | description |", "|---|---|", *opts, ""]
    return lines


def _usage(path: str, cmd, ctx) -> str:
    pieces = ["[OPTIONS]"] if any(p.param_type_name == "option" for p in cmd.get_params(ctx)) else []
    for p in cmd.get_params(ctx):
        if p.param_type_name == "argument":
            name = p.metavar or p.name.upper()
            name = name if p.required else f"[{name}]"
            pieces.append(name + ("..." if p.nargs == -1 else ""))
    if hasattr(cmd, "list_commands"):
        pieces.append("COMMAND [ARGS]...")
    return " ".join([path, *pieces])


def commands():
    """(path, command, context) for the app and every command under it, in --help order."""
    import typer

    from mlpbp.cli import app

    root = typer.main.get_command(app)
    out = []

    def walk(cmd, ctx, path):
        out.append((path, cmd, ctx))
        if hasattr(cmd, "list_commands"):
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                if sub is not None and not sub.hidden:
                    walk(sub, sub.context_class(sub, info_name=name, parent=ctx), f"{path} {name}")

    walk(root, root.context_class(root, info_name="mlpbp"), "mlpbp")
    return out


def cli_page() -> str:
    lines = [
        "# Command line",
        "",
        "Generated from the Typer app when this site was built: the same text as `mlpbp COMMAND --help`.",
        "",
        "Exit codes: **0** success, **1** the work failed (training diverged, a gradient check failed), "
        "**2** bad input (one line on stderr naming the key, file, row or column), **130** interrupted. "
        "`MLPBP_DEBUG=1` shows a traceback instead of the one line for an unexpected error.",
        "",
    ]
    for path, cmd, ctx in commands():
        anchor = "mlpbp" if path == "mlpbp" else path.split(" ", 1)[1].replace(" ", "-")
        lines += [f"## `{path}` {{#{anchor}}}", "", "```text", _usage(path, cmd, ctx), "```", ""]
        lines += [(cmd.help or "").strip(), ""]
        if hasattr(cmd, "list_commands"):
            lines += ["**Commands**", "", "| command | what it does |", "|---|---|"]
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                if sub is not None and not sub.hidden:
                    summary = sub.get_short_help_str(limit=300)
                    lines.append(f"| [`{name}`](#{name}) | {_cell(summary)} |")
            lines.append("")
        lines += _params_table(cmd, ctx)
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# The config file


def schema() -> dict:
    """The JSON Schema exactly as `mlpbp schema` prints it."""
    from typer.testing import CliRunner

    from mlpbp.cli import app

    result = CliRunner().invoke(app, ["schema"])
    if result.exit_code != 0:
        raise RuntimeError(f"mlpbp schema failed (exit {result.exit_code}): {result.output}")
    return json.loads(result.stdout)


def _resolve(node: dict, defs: dict) -> dict:
    ref = node.get("$ref")
    return {**defs[ref.rsplit("/", 1)[1]], **{k: v for k, v in node.items() if k != "$ref"}} if ref else node


def _type(node: dict, defs: dict) -> str:
    """A short description of the values a key takes: types, allowed names and bounds."""
    node = _resolve(node, defs)
    if "anyOf" in node or "oneOf" in node:
        return " or ".join(dict.fromkeys(_type(n, defs) for n in node.get("anyOf", node.get("oneOf"))))
    if "enum" in node:
        return " | ".join(f"`{json.dumps(v)}`" for v in node["enum"])
    if "const" in node:
        return f"`{json.dumps(node['const'])}`"
    kind = node.get("type", "any")
    if kind == "array":
        inner = _type(node["items"], defs) if "items" in node else "any"
        return f"list of ({inner})" + (f", at least {node['minItems']}" if "minItems" in node else "")
    if kind == "object" and isinstance(node.get("additionalProperties"), dict):
        return f"mapping to ({_type(node['additionalProperties'], defs)})"
    bounds = [
        f"{sign} {node[key]}"
        for key, sign in (("minimum", "≥"), ("exclusiveMinimum", ">"), ("maximum", "≤"), ("exclusiveMaximum", "<"))
        if key in node
    ]
    if "minLength" in node and kind == "string":
        bounds.append("non-empty")
    if "pattern" in node:
        bounds.append(f"matching `{node['pattern']}`")
    return kind + (f" ({', '.join(bounds)})" if bounds else "")


def config_keys(s: dict) -> list[tuple[str, dict, str | None]]:
    """(dotted key, its schema, the section it sits in) for every key, sections first."""
    defs = s.get("$defs", {})
    keys = []
    for name, node in s["properties"].items():
        node = _resolve(node, defs)
        if "properties" in node:
            keys.append((name, node, None))
            keys += [(f"{name}.{k}", v, name) for k, v in node["properties"].items()]
        else:
            keys.append((name, node, None))
    return keys


def config_page() -> str:
    s = schema()
    defs = s.get("$defs", {})
    lines = [
        "# Config file",
        "",
        "Generated from the JSON Schema that `mlpbp schema` prints, when this site was built: every key "
        "`mlpbp train` accepts, with its values, default and meaning. Unknown keys are refused (with a "
        '"did you mean"), and so is a key of another optimizer than the one chosen. Any key can be set '
        "from the command line with `--set KEY=VALUE` (for example `--set train.learning_rate=0.1`).",
        "",
        "For editors: `mlpbp schema > mlpbp.schema.json` and, at the top of a config, "
        "`# yaml-language-server: $schema=mlpbp.schema.json` (VS Code's YAML extension).",
        "",
    ]
    top = [(k, n) for k, n, section in config_keys(s) if section is None and "properties" not in n]
    sections = [(k, n) for k, n, section in config_keys(s) if section is None and "properties" in n]
    if top:
        lines += ["## Top level", "", "| key | values | default | description |", "|---|---|---|---|"]
        lines += [_key_row(k, n, defs) for k, n in top] + [""]
    for name, node in sections:
        desc = s["properties"][name].get("description") or node.get("description", "")
        lines += [f"## `{name}` {{#{name}}}", "", desc, ""]
        lines += ["| key | values | default | description |", "|---|---|---|---|"]
        lines += [_key_row(f"{name}.{k}", v, defs) for k, v in node["properties"].items()] + [""]
    return "\n".join(lines) + "\n"


def _key_row(key: str, node: dict, defs: dict) -> str:
    default = f"`{json.dumps(node['default'])}`" if "default" in node else "required"
    return (
        f'| <span id="{key}"></span>`{key}` | {_cell(_type(node, defs))} | {_cell(default)} '
        f"| {_cell(node.get('description', ''))} |"
    )


# ---------------------------------------------------------------------------------------------
# The Python API


def defined_at(dotted: str) -> str:
    """Where a public name is defined now: mlpbp.MLP -> mlpbp.engine.network.MLP."""
    module, _, name = dotted.rpartition(".")
    obj = getattr(importlib.import_module(module), name)
    where = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    return f"{where}.{qualname}" if where and qualname else dotted


def api_page() -> str:
    lines = [
        "# Python API",
        "",
        "Generated from the docstrings when this site was built. The CLI is a thin layer over this API, "
        "which imports no CLI or Rich code. Each heading is the name to import.",
        "",
    ]
    for section, intro, names in API:
        lines += [f"## {section}", "", intro, ""]
        for name in names:
            lines += [
                f"::: {defined_at(name)}",
                "    options:",
                "      heading_level: 3",
                f'      heading: "{name}"',
                f'      toc_label: "{name.rsplit(".", 1)[1]}"',
                "",
            ]
    return "\n".join(lines) + "\n"
