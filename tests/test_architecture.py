"""The package's layering, checked on the source: no package imports a higher layer, no import
cycle between modules, no module (nor test) imports another module's private (``_``) name, the
TGD core imports nothing else of tgd, the library imports nothing of the reproduction
(``tgd.repro``) and the reproduction only the library's public names.

Library layers, lowest first (docs/architecture.md): data -> evaluation -> models -> targeting
-> losses -> training -> inference -> workflows -> integrations -> commands -> cli. The
reproduction stands on the whole library, with layers of its own: sim -> studies/datasets ->
rois/quality/statistics/hypotheses -> experiments -> report -> commands. Imports inside
functions count: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "tgd"
TESTS = Path(__file__).resolve().parent

LAYERS = {
    "data": 0, "evaluation": 1, "models": 2, "targeting": 3, "losses": 4, "training": 5,
    "inference": 6, "workflows": 7, "integrations": 8, "commands": 9, "cli": 10, "repro": 11,
}
REPRO_LAYERS = {
    "sim": 0, "studies": 1, "datasets": 1, "rois": 2, "quality": 2, "statistics": 2,
    "hypotheses": 2, "experiments": 3, "report": 4, "commands": 5, "__main__": 6,
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, me: str | None = None) -> list[tuple[str, list[str], int]]:
    """(imported module, names imported from it, line) for every import in ``path`` (the module
    ``me``, by default named from its place under src/)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    me = me or _module_name(path)
    package = me if path.name == "__init__.py" else me.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join([*base, mod] if mod else base)
            out.append((mod, [a.name for a in node.names], node.lineno))
    return [(m, names, line) for m, names, line in out if m == "tgd" or m.startswith("tgd.")]


MODULES = {_module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def _layer(module: str) -> int | tuple[int, int] | None:
    """A library module's layer, or ``(repro layer, sub-layer)`` for the reproduction's."""
    parts = module.split(".")
    if len(parts) < 2:
        return None
    if parts[1] == "repro":
        return (LAYERS["repro"], REPRO_LAYERS[parts[2]]) if len(parts) > 2 else None
    return LAYERS.get(parts[1])


def _above(theirs, mine) -> bool:
    def key(x):
        return x if isinstance(x, tuple) else (x, -1)

    return key(theirs) > key(mine)


def test_every_package_has_a_layer():
    top = {m.split(".")[1] for m in MODULES if m.count(".") >= 1}
    assert top <= set(LAYERS), f"packages without a layer: {sorted(top - set(LAYERS))}"
    repro = {m.split(".")[2] for m in MODULES if m.startswith("tgd.repro.")}
    assert repro <= set(REPRO_LAYERS), f"without a layer: {sorted(repro - set(REPRO_LAYERS))}"


def upward_imports(module: str, path: Path) -> list:
    mine = _layer(module)
    if mine is None:  # the package facade tgd/__init__.py re-exports the public API
        return []
    return [(m, line) for m, _, line in _imports(path, module)
            if (theirs := _layer(m)) is not None and _above(theirs, mine)]


def private_imports(module: str, path: Path) -> list:
    bad = []
    for m, names, line in _imports(path, module):
        if m == module:
            continue
        private_module = any(p.startswith("_") and not p.startswith("__") for p in m.split("."))
        private_names = [n for n in names if n.startswith("_") and not n.startswith("__")]
        same_package = m.rsplit(".", 1)[0] == module.rsplit(".", 1)[0]
        if private_names or (private_module and not same_package):
            bad.append((m, private_names, line))
    return bad


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_upward_import(module):
    bad = upward_imports(module, MODULES[module])
    assert not bad, f"{module} imports higher layers: {bad}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_private_cross_import(module):
    bad = private_imports(module, MODULES[module])
    assert not bad, f"{module} imports private names: {bad}"


def _graph() -> dict[str, set[str]]:
    g = {}
    for module, path in MODULES.items():
        deps = set()
        for m, names, _ in _imports(path):
            for candidate in [f"{m}.{n}" for n in names] + [m]:
                if candidate in MODULES and candidate != module:
                    deps.add(candidate)
                    break
        g[module] = deps
    return g


def test_no_import_cycle():
    g = _graph()
    # a package's __init__ importing its own submodules is how it exports them: not a cycle
    for module in g:
        if MODULES[module].name == "__init__.py":
            g[module] = {d for d in g[module] if not d.startswith(module + ".")}
    graphlib.TopologicalSorter(g).prepare()  # raises CycleError naming the cycle


def test_targeting_imports_only_itself():
    """The TGD core (KSE, tracing, plans, attach) runs on any torch model: it needs no other
    part of tgd."""
    for module, path in MODULES.items():
        if module.startswith("tgd.targeting"):
            outside = [m for m, _, _ in _imports(path) if not m.startswith("tgd.targeting")]
            assert not outside, f"{module} imports {outside}"


@pytest.mark.parametrize("path", sorted(TESTS.rglob("*.py")), ids=lambda p: p.name)
def test_tests_use_only_public_names(path):
    bad = [(m, names) for m, names, _ in _imports(path, "tests.x")
           if any(n.startswith("_") and not n.startswith("__") for n in names)]
    assert not bad, f"{path.name} imports private names: {bad}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if not m.startswith("tgd.repro")))
def test_library_imports_nothing_of_the_reproduction(module):
    bad = [(m, line) for m, _, line in _imports(MODULES[module], module)
           if m == "tgd.repro" or m.startswith("tgd.repro.")]
    assert not bad, f"{module} (library) imports the reproduction: {bad}"


def test_checker_sees_planted_violations(tmp_path):
    """An upward import inside a function, a private name and a relative import are all found
    (so the tests above can fail)."""
    planted = tmp_path / "planted.py"
    planted.write_text("def f():\n    from tgd.commands import train\n"
                       "from tgd.targeting.attach import _hidden\n"
                       "from ..workflows import online\n")
    up = upward_imports("tgd.data.planted", planted)
    assert sorted(m for m, _ in up) == ["tgd.commands", "tgd.targeting.attach", "tgd.workflows"]
    assert private_imports("tgd.data.planted", planted) == [
        ("tgd.targeting.attach", ["_hidden"], 3)]
    assert upward_imports("tgd.commands.planted", planted) == []
    # the reproduction: a private library name is caught, an experiment may not import the report
    repro = tmp_path / "repro_planted.py"
    repro.write_text("from tgd.training.loop import _step\nfrom tgd.repro.report import writer\n"
                     "from tgd.training import train\n")
    assert private_imports("tgd.repro.experiments.planted", repro) == [
        ("tgd.training.loop", ["_step"], 1)]
    assert [m for m, _ in upward_imports("tgd.repro.experiments.planted", repro)] == [
        "tgd.repro.report"]
    assert upward_imports("tgd.repro.report.planted", repro) == []
