"""The package's layers go one way: the graph of which sparcl_tf module imports which (at the top
or inside a function alike) has no cycle, so no import hides in a function to dodge one."""

import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "sparcl_tf")


def _modules():
    """{dotted name: path} of every module of sparcl_tf (a package as its __init__)."""
    modules = {}
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                dotted = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                modules[dotted.removesuffix(".__init__")] = path
    return modules


def _imports(path, modules, own):
    """The sparcl_tf modules `path` imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = own.split(".")[:-node.level] if not path.endswith("__init__.py") else \
                    own.split(".")[:len(own.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            names = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            # Importing a module of another package runs that package's __init__ first.
            while name.count(".") and name != own and not own.startswith(f"{name}."):
                found.add(name)
                name = name.rpartition(".")[0]
    return found


def import_graph():
    modules = _modules()
    return {name: _imports(path, modules, name) for name, path in modules.items()}


def _cycle(graph):
    """One cycle of `graph` as a list of modules, or None."""
    state = {}

    def visit(node, trail):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return trail[trail.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt, trail + [nxt])
                if found:
                    return found
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start, [start])
            if found:
                return found
    return None


def test_the_import_graph_has_no_cycle():
    assert _cycle(import_graph()) is None


FACES = {"sparcl_tf.keras", "sparcl_tf.ondevice"}


def _sparcl_imports(source):
    """The sparcl_tf modules a piece of Python source imports."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("sparcl_tf"))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sparcl_tf"):
            found.add(node.module)
    return found


def test_the_examples_and_the_readme_use_only_the_library_faces():
    sources = {}
    folder = os.path.join(ROOT, "examples")
    for name in sorted(os.listdir(folder)):
        if name.endswith(".py"):
            sources[name] = open(os.path.join(folder, name)).read()
    readme = open(os.path.join(ROOT, "README.md")).read()
    for index, block in enumerate(readme.split("```python")[1:]):
        sources[f"README python block {index}"] = block.split("```")[0]
    assert len(sources) > 5
    used = {name: _sparcl_imports(source) - FACES for name, source in sources.items()}
    assert {name: modules for name, modules in used.items() if modules} == {}
