"""The package layout holds: imports point one way (cli -> tables -> engine -> evaluation / keypoints / model /
data -> core), no module imports one that imports it back, and no internal import hides inside a
function (such imports exist only to dodge a circle)."""
import ast
from pathlib import Path

import harness

ROOT = Path(harness.__file__).parent
# a stage may import stages of a lower rank only (or modules of its own stage)
RANK = {"core": 0, "config": 1, "data": 1, "model": 1, "keypoints": 2, "method": 2, "evaluation": 2, "engine": 3, "tables": 4,
        "cli": 5, "__init__": 6, "__main__": 6}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def internal_imports(path: Path, name: str, modules: set[str]):
    """(target module, inside a function?) for every import of a harness module in ``path``."""
    tree = ast.parse(path.read_text())
    in_function = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                   for n in ast.walk(f)}
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                stem = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(stem + ([node.module] if node.module else []))
            candidates = [f"{base}.{a.name}" for a in node.names] + [base]
        elif isinstance(node, ast.Import):
            candidates = [a.name for a in node.names]
        else:
            continue
        for candidate in candidates:
            while candidate and candidate not in modules:
                candidate = candidate.rpartition(".")[0]
            if candidate and candidate != name and candidate.startswith("harness"):
                yield candidate, id(node) in in_function
                break


def graph():
    paths = {module_name(p): p for p in ROOT.rglob("*.py")}
    return {name: list(internal_imports(path, name, set(paths))) for name, path in paths.items()}


def stage(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_no_import_circles():
    edges = {name: {target for target, _ in imports} for name, imports in graph().items()}
    state: dict[str, int] = {}

    def visit(node, path):
        state[node] = 1
        for nxt in edges.get(node, ()):
            if state.get(nxt) == 1:
                raise AssertionError("import circle: " + " -> ".join(path[path.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert len(edges) > 40  # the walk saw the whole package


def test_imports_point_down_the_stages_and_none_hides_in_a_function():
    wrong, hidden = [], []
    for name, imports in graph().items():
        for target, in_function in imports:
            if in_function:
                hidden.append(f"{name} -> {target}")
            if stage(target) != stage(name) and RANK[stage(target)] >= RANK[stage(name)]:
                wrong.append(f"{name} -> {target}")
    assert not wrong, f"imports against the stage order: {wrong}"
    assert not hidden, f"internal imports inside functions: {hidden}"
