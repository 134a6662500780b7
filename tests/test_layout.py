"""The package's structure (issue 11): no import circle among adamnb's modules, no module
importing another module's private (underscore) names, and every jit option built in one place.

Read from the source with :mod:`ast`, so that a circle dodged by an import inside a function
still shows (such imports are listed separately and must stay few and lazy by intent).
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "adamnb"


def module_name(path):
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def resolve(node, importer):
    """The absolute module an ImportFrom names (relative imports resolved)."""
    if node.level == 0:
        return node.module
    base = importer.split(".")
    is_package = MODULES[importer].name == "__init__.py"
    base = base[:len(base) - node.level + (1 if is_package else 0)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(name, top_level_only):
    """``[(imported module, [names], line)]`` of module ``name``: its imports of adamnb modules
    (a ``from package import submodule`` counts as importing the submodule)."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = []
    for node in nodes:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("adamnb"):
                    found.append((alias.name, [], node.lineno))
        elif isinstance(node, ast.ImportFrom):
            target = resolve(node, name)
            if not target or not target.startswith("adamnb"):
                continue
            names = [alias.name for alias in node.names]
            submodules = [f"{target}.{n}" for n in names if f"{target}.{n}" in MODULES]
            others = [n for n in names if f"{target}.{n}" not in MODULES]
            if others or not submodules:
                found.append((target, others, node.lineno))
            found.extend((sub, [], node.lineno) for sub in submodules)
    return found


def test_no_import_circle_among_module_level_imports():
    graph = {name: set() for name in MODULES}
    for name in MODULES:
        for target, _, _ in imports(name, top_level_only=True):
            if target in MODULES and target != name:
                graph[name].add(target)
    # A package importing its own submodules is how a package exposes them, not a circle;
    # a submodule importing its package's __init__ (or anything else) back is.
    state, cycles = {}, []

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycle = stack[stack.index(nxt):] + [nxt]
                if not all(b.startswith(a + ".") for a, b in zip(cycle, cycle[1:])):
                    cycles.append(" -> ".join(cycle))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, "import circles:\n" + "\n".join(cycles)


def test_no_module_imports_another_modules_private_names():
    offenders = []
    for name in MODULES:
        for target, names, line in imports(name, top_level_only=False):
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private and target != name:
                offenders.append(f"{name}:{line} imports {', '.join(private)} from {target}")
    assert not offenders, "\n".join(offenders)


def test_numba_jit_is_called_only_in_the_jit_module():
    # adamnb/backends/jit.py is the one place that builds jit options (cuda.jit included,
    # through backends.cuda); every other module asks it.
    allowed = {"adamnb.backends.jit", "adamnb.backends.cuda"}
    offenders = []
    for name, path in MODULES.items():
        if name in allowed:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in ("njit", "jit", "vectorize") \
                    and isinstance(node.value, ast.Name) and node.value.id == "numba":
                offenders.append(f"{name}:{node.lineno} numba.{node.attr}")
    assert not offenders, "\n".join(offenders)
