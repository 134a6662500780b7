"""Sphinx extension: write the API reference from the package itself, at every build.

One page per public module of :mod:`adamnb` (every module found by walking the package whose
dotted name has no component starting with "_"), written under ``docs/api/`` (ignored by git)
before Sphinx reads its sources, so the reference follows the code after any merge and nothing in
it is copied by hand.

Each object is documented once, on the page of its *home*: the public module that defines it, or
for an object defined in a private module (``adamnb.optimize._minimize``) the public package
above it (``adamnb.optimize``). A module's members are its ``__all__`` (else its public names
defined there). A name that a package re-exports from elsewhere (``adamnb.Adam``) is listed on
that package's page with a link to its home, where autodoc and numpydoc render the docstring.
"""

import ast
import importlib
import inspect
import pkgutil
import types
from pathlib import Path

PACKAGE = "adamnb"
FOLDER = "api"
#: Values whose repr is longer than this are not printed under their name (FUNCTIONS, RULES, ...).
SHORT_VALUE = 70


def all_modules():
    """Dotted names of every module of the package, private ones included."""
    package = importlib.import_module(PACKAGE)
    return [PACKAGE, *(info.name for info in
                       pkgutil.walk_packages(package.__path__, PACKAGE + "."))]


def public_modules():
    """Dotted names of the package's public modules, the package first, then sorted."""
    public = sorted(name for name in all_modules()[1:]
                    if not any(part.startswith("_") for part in name.split(".")))
    return [PACKAGE, *public]


def home_of(module_name):
    """The public module a module belongs to: ``a.b._c.d`` -> ``a.b``."""
    parts = module_name.split(".")
    for index, part in enumerate(parts):
        if part.startswith("_"):
            return ".".join(parts[:index])
    return module_name


def _assigned_names(module):
    """Names bound at the top level of a module's source by assignment (its data)."""
    try:
        source = inspect.getsource(module)
    except (OSError, TypeError):
        return set()
    names = set()
    for node in ast.parse(source).body:
        targets = (node.targets if isinstance(node, ast.Assign)
                   else [node.target] if isinstance(node, ast.AnnAssign) else [])
        for target in targets:
            for leaf in ast.walk(target):
                if isinstance(leaf, ast.Name):
                    names.add(leaf.id)
    return names


def _private_parts(module_name, names):
    """The module and the private modules (among ``names``) whose home it is."""
    return [name for name in names if name == module_name
            or (name.startswith(module_name + ".") and home_of(name) == module_name)]


def _kind(obj):
    if isinstance(obj, types.ModuleType):
        return "module"
    if inspect.isclass(obj):
        return "class"
    if inspect.isroutine(obj) or (callable(obj) and hasattr(obj, "__wrapped__")):
        return "function"  # plain functions and numba dispatchers (which wrap theirs)
    return "data"


def members(module_name, every_module):
    """``[(name, kind, documented_here)]`` of a module's public members."""
    module = importlib.import_module(module_name)
    declared = getattr(module, "__all__", None)
    data_here = set()
    for part in _private_parts(module_name, all_modules()):
        data_here |= _assigned_names(importlib.import_module(part))
    names = declared if declared is not None else [
        name for name in vars(module) if not name.startswith("_")]
    listed = []
    for name in names:
        obj = getattr(module, name)
        kind = _kind(obj)
        if kind == "module":
            here = False
        elif kind == "data":
            here = name in data_here
        else:
            here = home_of(getattr(obj, "__module__", "") or "") == module_name
        if declared is None and not here:
            continue  # without __all__, only what the module itself defines is its API
        listed.append((name, kind, here))
    return listed


def _title(text, mark="="):
    return f"{text}\n{mark * len(text)}\n"


def _directive(module_name, name, kind):
    full = f"{module_name}.{name}"
    if kind == "class":
        return f".. autoclass:: {full}\n   :members:\n   :show-inheritance:\n"
    if kind == "function":
        return f".. autofunction:: {full}\n"
    value = getattr(importlib.import_module(module_name), name)
    short = len(repr(value)) <= SHORT_VALUE
    return f".. autodata:: {full}\n" + ("" if short else "   :no-value:\n")


def module_page(module_name, every_module, homes):
    """The reST text of one module's page."""
    listed = members(module_name, every_module)
    here = [(name, kind) for name, kind, is_here in listed if is_here]
    elsewhere = [(name, kind) for name, kind, is_here in listed if not is_here]
    lines = [_title(module_name), f".. automodule:: {module_name}\n   :no-members:\n"]
    if here:
        lines.append(".. rubric:: Summary\n")
        lines.append(".. autosummary::\n   :nosignatures:\n")
        lines.extend(f"   {name}" for name, _ in here)
        lines.append("")
    submodules = [name for name in every_module
                  if name.rsplit(".", 1)[0] == module_name and name != module_name]
    if submodules:
        lines.append(".. rubric:: Submodules\n")
        lines.extend(f"* :mod:`{name}`" for name in submodules)
        lines.append("")
    reexported = [(name, kind) for name, kind in elsewhere if kind != "module"]
    if reexported:
        lines.append(".. rubric:: Also available here\n")
        lines.append(f"These names are importable from ``{module_name}`` and documented in "
                     "their own modules:\n")
        for name, kind in reexported:
            target = homes.get(id(getattr(importlib.import_module(module_name), name)))
            role = {"class": "class", "function": "func"}.get(kind, "data")
            lines.append(f"* :{role}:`{module_name}.{name} <{target}>`" if target
                         else f"* ``{module_name}.{name}``")
        lines.append("")
    for name, kind in here:
        lines.append(_directive(module_name, name, kind))
    return "\n".join(lines) + "\n"


def write_pages(srcdir):
    """Write every page and the index under ``srcdir/api``; return the page names."""
    every_module = public_modules()
    homes = {}
    for module_name in every_module:
        module = importlib.import_module(module_name)
        for name, kind, here in members(module_name, every_module):
            if here and kind != "module":
                homes.setdefault(id(getattr(module, name)), f"{module_name}.{name}")
    folder = Path(srcdir) / FOLDER
    folder.mkdir(exist_ok=True)
    for stale in folder.glob("*.rst"):
        stale.unlink()
    for module_name in every_module:
        text = module_page(module_name, every_module, homes)
        (folder / f"{module_name}.rst").write_text(text, encoding="utf-8")
    index = [_title("API reference"),
             "Generated from the docstrings at every build: one page per public module. Each "
             "object is documented in the module that defines it (for the drivers of "
             ":mod:`adamnb.optimize`, in that package); the packages list what they re-export "
             "with links.\n",
             ".. toctree::\n   :maxdepth: 1\n"]
    index.extend(f"   {module_name}" for module_name in every_module)
    (folder / "index.rst").write_text("\n".join(index) + "\n", encoding="utf-8")
    return every_module


def _on_builder_inited(app):
    write_pages(app.srcdir)


def setup(app):
    app.connect("builder-inited", _on_builder_inited)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
