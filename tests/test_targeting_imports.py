"""The targeting package's imports: no cycle, nothing from a higher layer, no private names.

Every import statement counts, also one inside a function or under ``TYPE_CHECKING``.
"""

import ast
import graphlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "tgd" / "targeting"


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """``[(module, [imported names])]`` of every absolute ``tgd`` import in a file."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out.extend((a.name, []) for a in node.names)
    return [(m, names) for m, names in out if m == "tgd" or m.startswith("tgd.")]


def _module(path: Path) -> str:
    return "tgd.targeting" + ("" if path.stem == "__init__" else f".{path.stem}")


def test_targeting_modules_import_no_cycle():
    graph = {}
    for path in PACKAGE.glob("*.py"):
        if path.stem == "__init__":
            continue  # the package re-exports its modules; none of them imports it
        deps = set()
        for module, names in _imports(path):
            if module == "tgd.targeting":
                deps.update(f"tgd.targeting.{n}" for n in names)
            elif module.startswith("tgd.targeting."):
                deps.add(module)
        graph[_module(path)] = deps - {_module(path)}
    graphlib.TopologicalSorter(graph).prepare()  # raises CycleError naming the cycle


def test_targeting_imports_only_itself():
    for path in PACKAGE.glob("*.py"):
        for module, _ in _imports(path):
            assert module.startswith("tgd.targeting"), f"{path.name} imports {module}"


@pytest.mark.parametrize(
    "path",
    [*PACKAGE.glob("*.py"), *(ROOT / "tests").rglob("*.py")],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_no_private_names_of_targeting_imported(path):
    for module, names in _imports(path):
        if not module.startswith("tgd.targeting") or module == _module(path):
            continue
        private = [n for n in names if n.startswith("_")]
        assert not private, f"{path.name} imports private {private} from {module}"
