"""The documentation site builds strictly, and its generated reference covers every command,
option and config key; the README stays a short front page with the set-up commands CI runs.

The expected names are read here from the app and from `mlpbp schema`'s output, not from the
docs hook that writes the pages, so a hook that dropped a command or a key would fail."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from html import unescape
from pathlib import Path

import pytest
import typer

from mlpbp.cli import app

ROOT = Path(__file__).resolve().parents[2]
SETUP_COMMANDS = ("pip install . && mlpbp train configs/digits.yaml", "pip install '.[test]' && pytest")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"), "-d", str(out)],
        cwd=out,  # not the repository: the build must not depend on the working directory
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def _text(html: str) -> str:
    return unescape(re.sub(r"<[^>]+>", "", html))


def _words(text: str) -> str:
    """Text as its words, without the Markdown the help is written in (escapes, `code`, *emphasis*)."""
    return " ".join(re.sub(r"\\(.)", r"\1", text).replace("`", "").replace("*", "").split())


def _sections(html: str) -> dict[str, str]:
    """The page cut at its h2 headings: {heading id: the text under it}."""
    parts = re.split(r'<h2 id="([^"]+)"', html)
    return {parts[i]: _text(parts[i + 1]) for i in range(1, len(parts), 2)}


def _commands():
    root = typer.main.get_command(app)
    ctx = root.context_class(root, info_name="mlpbp")
    for name in root.list_commands(ctx):
        cmd = root.get_command(ctx, name)
        yield name, cmd, cmd.context_class(cmd, info_name=name, parent=ctx)


@pytest.mark.slow
def test_every_command_and_option_is_in_the_cli_reference(site):
    sections = _sections((site / "reference" / "cli" / "index.html").read_text())
    names = [name for name, _, _ in _commands()]
    assert len(names) >= 11 and {"train", "predict", "evaluate", "hessian", "schema"} <= set(names)
    for name, cmd, ctx in _commands():
        assert name in sections, f"no section for `mlpbp {name}`"
        text = sections[name]
        assert f"mlpbp {name}" in text
        first_help_line = (cmd.help or "").strip().splitlines()[0]
        assert _words(first_help_line) in _words(text), name
        for param in cmd.get_params(ctx):
            for opt in param.opts:
                shown = opt if opt.startswith("-") else (param.metavar or param.name.upper())
                assert shown in text, f"`mlpbp {name}`: {shown} missing from the reference"


def _schema_keys(schema: dict) -> list[str]:
    defs = schema.get("$defs", {})
    keys = []
    for name, node in schema["properties"].items():
        keys.append(name)
        ref = node.get("$ref")
        if ref:
            keys += [f"{name}.{k}" for k in defs[ref.rsplit("/", 1)[1]].get("properties", {})]
    return keys


@pytest.mark.slow
def test_every_config_key_is_in_the_config_reference(site):
    out = subprocess.run(
        [sys.executable, "-m", "mlpbp", "schema"], capture_output=True, text=True, check=True, cwd=site
    ).stdout
    keys = _schema_keys(json.loads(out))
    assert {"seed", "data.path", "model.hidden", "train.learning_rate", "train.class_weight", "output.dir"} <= set(keys)
    html = (site / "reference" / "config" / "index.html").read_text()
    for key in keys:
        assert f'id="{key}"' in html, f"config key {key} has no entry in the config reference"


@pytest.mark.slow
def test_api_reference_renders_the_documented_names(site):
    text = _text((site / "reference" / "api" / "index.html").read_text())
    for name in ("mlpbp.MLP", "mlpbp.SGD", "mlpbp.engine.curvature.Curvature", "mlpbp.run.model_file.load_model"):
        assert name in text
    assert "train_step" in text and "hvp" in text  # members come from the docstrings


@pytest.mark.slow
def test_pages_include_the_generated_samples(site):
    """What a page shows is the sample file docs/samples.py wrote, not a copy pasted by hand."""
    sample = (ROOT / "docs" / "samples" / "evaluate-iris.txt").read_text()
    page = _text((site / "tutorials" / "evaluate-predict-export" / "index.html").read_text())
    for line in sample.splitlines()[:4]:
        assert line.strip() in page
    script = (ROOT / "docs" / "samples" / "swish.py").read_text()
    page = _text((site / "how-to" / "extend" / "index.html").read_text())
    assert "def swish_d2(z, a, out):" in script and "def swish_d2(z, a, out):" in page
    for html in site.rglob("*.html"):  # an include the snippets extension did not replace
        assert not re.search(r"-8\s*<\s*-", _text(html.read_text())), html


def test_readme_is_a_short_front_page_with_the_setup_commands():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    ci = (ROOT / ".ci" / "run").read_text()
    for command in SETUP_COMMANDS:
        assert command in readme
    assert SETUP_COMMANDS[1] in ci
    assert "mkdocs build --strict" in ci


def test_test_extra_brings_the_docs_extra():
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(dep.startswith("mkdocs") for dep in extras["docs"])
    test_extra = " ".join(extras["test"])
    assert re.search(r"mlpbp\[[^\]]*\bdocs\b", test_extra)


def test_readme_samples_are_the_generated_ones():
    """README.md's outputs are refilled by docs/samples.py from the files the site includes, so
    the front page and the site show the same real run."""
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"<!-- sample: (\S+) -->\n(.*?)\n<!-- /sample -->", readme, re.S)
    assert len(blocks) >= 3
    samples = ROOT / "docs" / "samples"
    for name, block in blocks:
        files = [name, name.replace(".py", ".out.txt")] if name.endswith(".py") else [f"{name}.txt"]
        for file in files:
            assert (samples / file).read_text().rstrip() in block, f"README's {name} differs from docs/samples/{file}"
