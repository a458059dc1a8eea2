"""The package's import graph: no cycle, and no package importing one above it.

Each package (or top-level module) has a layer; it may import its own modules and those of lower
layers, never a higher layer or another package of its own layer. Imports inside functions
count too: they are dependencies all the same, only deferred (e.g. to keep `--help` fast).
"""

import ast
from pathlib import Path

import pytest

import glassformer

ROOT = Path(glassformer.__file__).parent

LAYERS = [  # lowest first
    {"errors", "atomic"},
    {"typed"},
    {"config"},
    {"tokenizers"},
    {"data"},
    {"model"},
    {"generate", "classify", "embed"},
    {"train"},
    {"inspect", "interop"},
    {"finetune"},
    {"serve"},
    {"cli"},
    {"__main__", "__init__"},  # `python -m glassformer`; glassformer.from_pretrained
]
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p) for p in ROOT.rglob("*.py")}


def imports(path: Path) -> set[str]:
    """The glassformer modules `path` imports, anywhere in the file: `from package import
    module` names the module, `from module import name` the module."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("glassformer.")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("glassformer"):
            found |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES
                      else node.module for a in node.names}
    return found


GRAPH = {module_name(p): imports(p) for p in sorted(ROOT.rglob("*.py"))}


def package(module: str) -> str:
    """glassformer.model.gpt -> model; glassformer -> __init__."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_package_has_a_layer():
    assert {package(m) for m in GRAPH} <= set(LAYER), \
        f"add the new package to LAYERS: {sorted({package(m) for m in GRAPH} - set(LAYER))}"


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_no_module_imports_a_higher_or_sideways_package(module):
    mine = package(module)
    wrong = sorted(t for t in GRAPH[module] if package(t) != mine
                   and LAYER.get(package(t), -1) >= LAYER[mine])
    assert not wrong, (f"{module} (layer {LAYER[mine]}, {mine}) imports {wrong}: a package may "
                       "import only lower layers (tests/test_layers.py LAYERS)")


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of `graph` (module -> the modules it imports), or None."""
    state, path = {}, []

    def visit(module):
        state[module] = "open"
        path.append(module)
        for target in sorted(graph[module]):  # importing a package runs its __init__.py
            if state.get(target) == "open":
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module)):
            return cycle
    return None


def test_the_module_graph_has_no_cycle():
    cycle = find_cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_check_sees_a_reach_up(tmp_path):
    """The walker finds imports inside functions and `from glassformer import x` forms."""
    source = tmp_path / "m.py"
    source.write_text("from glassformer import config as C\n\n"
                      "def f():\n    from glassformer.interop.hf import save_pretrained\n")
    assert imports(source) == {"glassformer.config", "glassformer.interop.hf"}


def test_the_cycle_check_finds_a_cycle():
    """glassformer.model -> glassformer.interop.hf -> glassformer.model, as before this test."""
    graph = {m: set(targets) for m, targets in GRAPH.items()}
    graph["glassformer.model"].add("glassformer.interop.hf")
    cycle = find_cycle(graph)
    assert cycle[0] == cycle[-1] and {"glassformer.model", "glassformer.interop.hf"} <= set(cycle)
