"""The ``sparse_frontier`` package has no import cycles, and importing attention methods loads no Triton.

The import graph is read from the source with :mod:`ast` (nothing is imported): a node per module of
the package (``a/b.py`` is ``a.b``, ``a/__init__.py`` is ``a``), an edge ``m -> n`` for every
``import n`` / ``from n import x`` in ``m`` that names a module of the package:

- relative imports are resolved against ``m``'s package (``from . import x`` in ``a/b.py`` is ``a.x``);
- ``from pkg import name`` is an edge to the submodule ``pkg.name`` when that module exists, else to
  ``pkg`` (the name is an attribute of its ``__init__``);
- an edge goes to the named module only, not to its parent packages (which Python runs first): a
  package's ``__init__`` importing its own submodules is the normal layout, not a cycle;
- an import is *top-level* when it runs at import time (module body, class bodies, ``if``/``try``
  blocks), *lazy* when it sits inside a function (or lambda); imports under ``if TYPE_CHECKING:``
  never run and are left out.

Checks: (1) the graph of top-level imports has no cycle; (2) adding the lazy imports still makes
none, so no function-level import exists only to dodge a cycle (lazy imports of heavy or optional
modules, Triton kernels, vLLM, stay lazy: they import nothing back). A failure names every cycle as
``a -> b -> a`` and where each edge's import is. (3) In a fresh interpreter, importing
:mod:`sparse_frontier.attention` and building every registered method with its default parameters
leaves ``triton`` out of ``sys.modules`` (the kernels load on first CUDA use).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "sparse_frontier"


def package_modules(root: Path = ROOT, package: str = PACKAGE) -> dict[str, Path]:
    """Module name -> source file, for every module of ``package`` under ``root``."""
    out = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class _Imports(ast.NodeVisitor):
    """``(target module, line, lazy)`` for every import statement of one module."""

    def __init__(self, module: str, is_package: bool, modules: set[str]):
        self.package = module if is_package else module.rpartition(".")[0]
        self.modules = modules
        self.depth = 0  # enclosing functions
        self.found: list[tuple[str, int, bool]] = []

    def _function(self, node):
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_If(self, node: ast.If):
        if _is_type_checking(node.test):
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def _add(self, target: str, node):
        if target in self.modules:
            self.found.append((target, node.lineno, self.depth > 0))

    def visit_Import(self, node: ast.Import):
        for alias in node.names:
            self._add(alias.name, node)

    def visit_ImportFrom(self, node: ast.ImportFrom):
        if node.level:
            base = self.package.split(".")
            base = base[: len(base) - (node.level - 1)]
            base = ".".join(base + ([node.module] if node.module else []))
        else:
            base = node.module or ""
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            self._add(sub if sub in self.modules else base, node)


def import_graph(root: Path = ROOT, package: str = PACKAGE) -> dict[str, list[tuple[str, int, bool]]]:
    """Module -> its imports of package modules: ``(target, line, lazy)``."""
    modules = package_modules(root, package)
    graph = {}
    for name, path in modules.items():
        visitor = _Imports(name, path.name == "__init__.py", set(modules))
        visitor.visit(ast.parse(path.read_text(), str(path)))
        graph[name] = visitor.found
    return graph


def cycles(edges: dict[str, set[str]]) -> list[tuple[list[str], set[str]]]:
    """Per strongly connected component with a cycle (Tarjan): one shortest cycle ``[a, b, ..., a]``
    through its first module, and all its modules."""
    index, low, stack, on_stack, comps = {}, {}, [], set(), []

    def strong(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in edges.get(v, ()):
                comps.append(set(comp))

    for v in sorted(edges):
        if v not in index:
            strong(v)
    out = []
    for comp in comps:  # breadth-first from the component's first module back to itself
        start = min(comp)
        prev, frontier, end = {start: None}, [start], None
        while end is None:
            nxt = []
            for v in frontier:
                if start in edges.get(v, ()):
                    end = v
                    break
                for w in sorted(edges.get(v, ())):
                    if w in comp and w not in prev:
                        prev[w] = v
                        nxt.append(w)
            frontier = nxt
        path = [end]
        while prev[path[-1]] is not None:
            path.append(prev[path[-1]])
        out.append((path[::-1] + [start], comp))
    return sorted(out, key=lambda c: c[0])


def _describe(found, graph) -> str:
    """Each cycle, then every import between the modules of its component (file line, lazy or not)."""
    lines = []
    for cycle, comp in found:
        lines.append(" -> ".join(cycle) + (f"  (component of {len(comp)} modules)" if len(comp) > 2 else ""))
        for a in sorted(comp):
            for b in sorted({t for t, _, _ in graph[a] if t in comp}):
                where = sorted(
                    {f"line {line}{' (in a function)' if lazy else ''}" for t, line, lazy in graph[a] if t == b}
                )
                lines.append(f"    {a} imports {b}: {', '.join(where)}")
    return "\n".join(lines)


def _edges(graph, lazy: bool) -> dict[str, set[str]]:
    return {m: {t for t, _, is_lazy in imports if lazy or not is_lazy} for m, imports in graph.items()}


def test_import_graph_reads_every_kind_of_import(tmp_path):
    """The graph builder itself: absolute, relative, ``from pkg import submodule``, lazy, TYPE_CHECKING."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from pkg import a\nfrom .sub import b as _b\n")
    (pkg / "a.py").write_text(
        "import pkg.sub.b\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import c\n"
        "class K:\n    from . import c\ndef f():\n    from .sub.b import thing\n"
    )
    (pkg / "c.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from .. import c\nfrom . import b\n")
    (pkg / "sub" / "b.py").write_text("from ..a import K\nfrom pkg.sub import VALUE\n")
    graph = import_graph(tmp_path, "pkg")
    assert sorted(graph["pkg"]) == [("pkg.a", 1, False), ("pkg.sub.b", 2, False)]
    assert sorted(graph["pkg.a"]) == [("pkg.c", 6, False), ("pkg.sub.b", 1, False), ("pkg.sub.b", 8, True)]
    assert sorted(graph["pkg.sub"]) == [("pkg.c", 1, False), ("pkg.sub.b", 2, False)]
    assert sorted(graph["pkg.sub.b"]) == [("pkg.a", 1, False), ("pkg.sub", 2, False)]
    assert cycles(_edges(graph, lazy=False)) == [(["pkg.a", "pkg.sub.b", "pkg.a"], {"pkg.a", "pkg.sub", "pkg.sub.b"})]
    assert cycles({"x": {"x"}, "y": set()}) == [(["x", "x"], {"x"})]
    assert [c for c, _ in cycles({"a": {"b"}, "b": {"c", "a"}, "c": {"a"}})] == [["a", "b", "a"]]


def test_no_import_cycles_at_module_level():
    graph = import_graph()
    assert len(graph) > 50 and graph["sparse_frontier.attention"], "the graph found the package"
    found = cycles(_edges(graph, lazy=False))
    assert not found, "import cycles among module-level imports:\n" + _describe(found, graph)


def test_no_function_level_import_closes_a_cycle():
    graph = import_graph()
    found = cycles(_edges(graph, lazy=True))
    assert not found, (
        "import cycles once function-level imports count (a lazy import dodging a cycle; move the shared "
        "part to a module both import):\n" + _describe(found, graph)
    )


def test_attention_methods_load_no_triton(tmp_path):
    """Importing the methods, building each with its defaults (and a sparse setting) and running its
    hooks on CPU tensors imports no Triton: the kernel modules load on first CUDA use."""
    code = """
import dataclasses, json, sys
import torch
import sparse_frontier.attention as attention
from sparse_frontier.attention import get_method_class

names = attention.METHODS.names() + ["vertical_slash+quest", "block_sparse+snapkv"]
out_dir = {"out_dir": sys.argv[1]}
built = [get_method_class(n).from_params(out_dir if n.startswith("capture_") else {}) for n in names]
after_import = sorted(m for m in sys.modules if m.split(".")[0] == "triton")
g = torch.Generator().manual_seed(0)
q, k, v = (torch.randn(128, h, 16, generator=g) for h in (4, 2, 2))
ran = []
for name in names:
    cls = get_method_class(name)
    fields = {f.name for f in dataclasses.fields(cls)}
    params = dict(out_dir) if name.startswith("capture_") else {}
    params.update({f: 0.5 for f in ("sparsity", "prefill_sparsity", "decode_sparsity", "kv_sparsity") if f in fields})
    m = cls.from_params(params)
    m.prefill(q, k, v, layer_index=0, scale=0.25)
    m.compress_kv(q, k, v, layer_index=0, scale=0.25)
    m.decode(q[-1], k.transpose(0, 1), v.transpose(0, 1), layer_index=0, scale=0.25)
    ran.append(name)
print(json.dumps({"ran": ran, "after_import": after_import,
                  "after_hooks": sorted(m for m in sys.modules if m.split(".")[0] == "triton")}))
"""
    env = dict(os.environ, SPARSE_FRONTIER_KERNELS="auto", CUDA_VISIBLE_DEVICES="")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, cwd=ROOT, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert {
        "dense",
        "vertical_slash",
        "flexprefill",
        "block_sparse",
        "quest",
        "snapkv",
        "ada_snapkv",
        "vertical_slash+quest",
    } <= set(result["ran"])
    assert result["after_import"] == [], f"importing and building the methods loaded {result['after_import'][:5]}"
    assert result["after_hooks"] == [], f"the methods' CPU hooks loaded {result['after_hooks'][:5]}"
