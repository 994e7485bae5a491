"""The package's architecture, checked by parsing its imports: cli → tools → run → engine/data →
io/errors, one way, no cycles."""

from __future__ import annotations

import ast
from pathlib import Path

import mlpbp

PACKAGE = Path(mlpbp.__file__).resolve().parent
# A module may import from its own room and from rooms of a lower rank only.
# playground (the web server) sits between tools and cli: only the cli imports it.
RANK = {
    "errors": 0,
    "io": 1,
    "results": 1,  # typed results and their JSON form
    "engine": 2,
    "data": 2,
    "datasets": 2,
    "run": 3,
    "tools": 4,
    "sklearn": 4,
    "playground": 5,
    "cli": 6,
}


def _modules() -> dict[str, Path]:
    return {
        ".".join(("mlpbp", *p.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__"): p
        for p in PACKAGE.rglob("*.py")
    }


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("mlpbp")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mlpbp"):
            assert node.level == 0, f"{path}: relative import"
            found |= {f"{node.module}.{a.name}" for a in node.names} | {node.module}
    return found


def _room(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None  # None: the top-level mlpbp/__init__ (the public API)


def test_every_module_lives_in_a_known_room():
    rooms = {_room(m) for m in _modules()} - {None, "__main__"}
    assert rooms <= set(RANK), rooms - set(RANK)


def test_imports_flow_one_way():
    modules = _modules()
    wrong = []
    for module, path in modules.items():
        room = _room(module)
        if room in (None, "__main__"):
            continue
        for target in _imports(path):
            other = _room(target)
            if other is None or other == room:
                continue
            if RANK[other] >= RANK[room]:
                wrong.append(f"{module} imports {target}")
    assert not wrong, wrong


def test_no_import_cycles():
    modules = _modules()
    graph = {m: {t for t in _imports(p) if t in modules and t != m} for m, p in modules.items()}
    for m in graph:  # a package's __init__ re-exports; importing it is importing its modules
        graph[m] = {t for t in graph[m] if not m.startswith(t + ".")}
    state: dict[str, int] = {}

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for t in graph[m]:
            if state.get(t) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*stack, m, t]))
            if t not in state:
                visit(t, [*stack, m])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [])


def test_the_network_never_asks_what_a_layer_is():
    source = (PACKAGE / "engine" / "network.py").read_text(encoding="utf-8")
    assert "isinstance" not in source
