"""The import layers of reconet_lib: every module imports only modules below it, so there is no import cycle.

The order below is the one ``docs/design.md`` draws (bottom first). Each import a module makes counts, at the top of
the file or inside a function, and importing a module of a sub-package (``reconet_lib.train.config``) also counts
as importing that sub-package's ``__init__``, which Python runs first. A new module must be given its place here.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "reconet_lib"

#: Bottom first: a module may import only modules listed before it. Groups as in docs/design.md.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundations", ("cpu_threads", "errors", "sizes", "files", "cpu_features", "precision", "memory", "config",
                     "images")),
    ("downloads", ("registry", "archive", "download", "resources", "hub")),
    ("flow and data", ("flow", "warp", "sintel", "photos", "synthetic", "pairs", "data", "estimate")),
    ("video I/O", ("frames", "codec", "frame_folders", "video", "pipeline", "video_html", "display",
                   "video_pairs")),
    ("model and losses", ("styles", "winograd", "pretrained", "network", "cost", "inference", "checkpoint",
                          "texture_net", "losses", "optimisation")),
    ("training", ("train.config", "train.log", "train.state", "train.processes", "train.sampling", "train.step",
                  "train.loop", "train.recipe", "train.tutorial", "train.command", "train")),
    ("using a model", ("export", "blend", "stylize", "openvino_backend", "stylize_command", "live", "metrics",
                       "style_metrics", "evaluate", "widgets")),
    ("entry points", ("__init__", "cli", "__main__")),
]

ORDER = [module for _, modules in LAYERS for module in modules]
RANK = {module: i for i, module in enumerate(ORDER)}


def module_name(path: Path) -> str:
    """``reconet_lib/train/loop.py`` -> ``train.loop``; ``reconet_lib/train/__init__.py`` -> ``train``."""
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def library_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _from_target(node: ast.ImportFrom, package: list[str]) -> str | None:
    """The module a ``from X import ...`` names, relative to reconet_lib ("" = the package root); None: not ours."""
    if node.level:
        base = package[: len(package) - node.level + 1]
        return ".".join(base + ([node.module] if node.module else []))
    if node.module == "reconet_lib":
        return ""
    if node.module and node.module.startswith("reconet_lib."):
        return node.module[len("reconet_lib."):]
    return None


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """The library modules ``name`` imports anywhere in its file, with the sub-packages those imports run."""
    package = name.split(".") if path.name == "__init__.py" and name != "__init__" else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and (stem := _from_target(node, package)) is not None:
            for alias in node.names:  # ``from . import images`` imports a module; ``from .errors import X`` a name
                candidate = f"{stem}.{alias.name}" if stem else alias.name
                found.add(candidate if candidate in known else (stem or "__init__"))
        elif isinstance(node, ast.Import):
            found.update(alias.name.partition(".")[2] or "__init__" for alias in node.names
                         if alias.name.split(".")[0] == "reconet_lib")
    for target in list(found):  # importing train.config runs train/__init__.py first
        parts = target.split(".")
        found.update(".".join(parts[:i]) for i in range(1, len(parts)))
    return {t for t in found if t in known and t != name and not name.startswith(t + ".")}


def import_graph() -> dict[str, set[str]]:
    modules = library_modules()
    return {name: imported_modules(name, path, set(modules)) for name, path in modules.items()}


def test_every_module_has_a_layer_and_every_listed_module_exists():
    modules = set(library_modules())
    assert sorted(modules - set(ORDER)) == [], "give the new module its place in LAYERS (and in docs/design.md)"
    assert sorted(set(ORDER) - modules) == [], "remove the deleted module from LAYERS (and docs/design.md)"
    assert len(ORDER) == len(set(ORDER))


def test_modules_import_only_modules_below_them():
    upward = sorted((name, target) for name, targets in import_graph().items() for target in targets
                    if RANK[target] > RANK[name])
    assert upward == [], "upward imports (module, imported): move the shared code down or the module up"


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_there_is_no_import_cycle():
    graph = import_graph()
    assert find_cycle(graph) is None, find_cycle(graph)


@pytest.mark.parametrize("graph, expected", [
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
    ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
])
def test_the_cycle_finder_finds_cycles_and_only_cycles(graph, expected):
    assert find_cycle(graph) == expected


def test_a_function_level_import_and_a_sub_package_count_as_imports(tmp_path):
    """The parser sees imports inside functions and the sub-package __init__ a submodule import runs."""
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from .train.config import TrainConfig\n    from . import cli\n")
    known = {"train", "train.config", "cli", "m"}
    assert imported_modules("m", source, known) == {"train", "train.config", "cli"}


# ----------------------------------------------------------------------------------------------------------------
# Imports sit at the top of a module; one inside a function says why on its line or the line above it
# ----------------------------------------------------------------------------------------------------------------

def _import_lines(lines: list[str], node: ast.stmt) -> list[int]:
    """0-based line numbers of the run of import lines that holds ``node`` (a group of imports explained once)."""
    def is_import(i: int) -> bool:
        return 0 <= i < len(lines) and lines[i].lstrip().startswith(("import ", "from "))

    first = last = node.lineno - 1
    while is_import(first - 1):
        first -= 1
    while is_import(last + 1):
        last += 1
    return list(range(first, last + 1))


def _imported(node: ast.stmt) -> str:
    """The module an import statement imports (``from . import x`` -> ``x``, ``from a.b import c`` -> ``a.b``)."""
    if isinstance(node, ast.Import):
        return node.names[0].name
    return node.module if node.module else node.names[0].name


def unexplained_function_imports(source: str) -> list[tuple[int, str]]:
    """``(line, module)`` of imports inside a function with no ``#`` comment on the group's lines or the line above."""
    lines = source.splitlines()
    found = set()
    for function in ast.walk(ast.parse(source)):
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(function):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                group = _import_lines(lines, node)
                above = lines[group[0] - 1] if group[0] > 0 else ""
                if not any("#" in lines[i] for i in group) and not above.lstrip().startswith("#"):
                    found.add((node.lineno, _imported(node)))
    return sorted(found)


def _unexplained_everywhere() -> dict[str, list[tuple[int, str]]]:
    return {str(path.relative_to(PACKAGE)): found for path in sorted(PACKAGE.rglob("*.py"))
            if (found := unexplained_function_imports(path.read_text()))}


def test_imports_inside_functions_say_why_they_are_not_at_the_top():
    unexplained = _unexplained_everywhere()
    assert {k: v for k, v in unexplained.items() if v} == {}, (
        "move these imports to the top of the module, or say on the line above why one must stay inside its "
        "function (an optional extra, a slow import few calls need)")


def test_the_import_check_finds_an_unexplained_import_and_accepts_an_explained_one():
    source = ("def f():\n    import json\n    return json\n\n\n"
              "def g():\n    # optional extra, only g needs it\n    import yaml\n    from os import path\n    return yaml\n\n\n"
              "def h():\n    import cv2  # slow to import\n    return cv2\n")
    assert unexplained_function_imports(source) == [(2, "json")]
