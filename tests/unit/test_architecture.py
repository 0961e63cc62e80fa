"""Architecture rules, checked on the source with ``ast`` (nothing is imported):

(a) the modules of ``pynenc_ray`` and ``local_runners`` import each other without
    a cycle, counting every import statement (top level, inside functions, under
    ``if TYPE_CHECKING``);
(b) no package module reads or writes another object's private name
    (``x._name`` where ``x`` is not ``self``, ``cls`` or ``super()``);
(c) only the MultiThreadRunner modules import ``ray``;
(d) only the web monitor (``pynenc_ray.monitor``) imports its web stack
    (Starlette, Jinja2, uvicorn), and nothing outside it but the CLI's hook
    imports the monitor: the core runs without the ``monitor`` extra;
(e) only the Redis backend (``pynenc_ray.backends.redis``) and the tools that
    drive a Redis server themselves import redis-py: no runner, monitor or core
    module does, so every backend error reaches them as a ``PynencError``;
(f) likewise only the SQLite backend (``pynenc_ray.backends.sqlite``) imports
    ``sqlite3``.

Each check is a plain function over source text, so the self-checks at the end
can feed it a synthetic cycle or private access and see it flagged.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("pynenc_ray", "local_runners")

# The only modules allowed to import Ray: the MultiThreadRunner, loaded only when
# that runner is named, and the payload bench's plain-Ray baseline, loaded only by
# `pynenc-ray bench --workload payload` (it imports Ray inside the run).
RAY_MODULES = frozenset({
    "pynenc_ray.runners.ray_runner",
    "pynenc_ray.runners.ray_connect",
    "pynenc_ray.runners.actor_host",
    "pynenc_ray.bench_payloads",
})

# The monitor's web stack (the ``monitor`` extra), and who may import it or the monitor.
WEB_STACK = ("starlette", "jinja2", "uvicorn")
MONITOR = "pynenc_ray.monitor"
MONITOR_IMPORTERS = frozenset({"pynenc_ray.cli"})  # builds the `monitor` subcommand's parser

# Who may import redis-py: the Redis backend, and the tools that drive a Redis
# server of their own (the bench's floor and Redis counters, the throwaway server
# of examples, the test helpers that start one).
REDIS_BACKEND = "pynenc_ray.backends.redis"
REDIS_TOOLS = frozenset({"pynenc_ray.bench", "pynenc_ray.local_redis", "pynenc_ray.testing"})
SQLITE_BACKEND = "pynenc_ray.backends.sqlite"

# Private names of other objects that standard conventions make public.
ALLOWED_PRIVATE = frozenset({
    "os._exit", "sys._getframe",  # the standard library's documented functions
    "*._replace", "*._asdict", "*._fields", "*._make",  # namedtuple's public API
    "ray._raylet",  # a Ray module with no public equivalent (see ray_connect.py)
})


# -- reading the packages ---------------------------------------------------------------------

def package_sources(root: Path = REPO, packages: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """Module name -> source of every ``.py`` file of ``packages`` under ``root``
    (``pkg/__init__.py`` is the module ``pkg``). Raises OSError if a file cannot
    be read."""
    sources = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            sources[".".join(parts)] = path.read_text(encoding="utf-8")
    return sources


def _is_package(module: str, sources: dict[str, str], root: Path | None) -> bool:
    if root is not None:
        return (root / Path(*module.split(".")) / "__init__.py").is_file()
    return any(name.startswith(module + ".") for name in sources)


def imported_modules(module: str, source: str, is_package: bool = False) -> set[str]:
    """Every absolute name that ``source`` (the module ``module``) imports,
    anywhere in the file: ``import X.Y`` yields ``X.Y``, ``from X import Y``
    yields ``X.Y`` (a module, or a name defined in ``X``: the caller walks up to
    the nearest module). Relative imports are resolved against ``module`` (a
    package resolves them against itself). Raises SyntaxError."""
    base = module.split(".") if is_package else module.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[:len(base) - (node.level - 1)] if node.level > 1 else base
                target = ".".join(anchor + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


def import_graph(sources: dict[str, str], root: Path | None = REPO) -> dict[str, set[str]]:
    """Module -> the modules of ``sources`` it imports. A name that is not a
    module of ``sources`` but lies inside one (``from pkg.mod import func``)
    counts as an import of that module. Raises SyntaxError."""
    graph: dict[str, set[str]] = {}
    for module, source in sources.items():
        edges = set()
        for name in imported_modules(module, source, _is_package(module, sources, root)):
            while name and name not in sources:
                name = name.rpartition(".")[0]
            if name and name != module:
                edges.add(name)
        graph[module] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as ``[a, b, ..., a]``, or None. Raises nothing."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start)
            if cycle:
                return cycle
    return None


def private_accesses(source: str) -> list[str]:
    """``line: owner._name`` for each attribute access to a private name of an
    object other than ``self``, ``cls`` or ``super()`` (dunders are not private),
    each import of a private module and of another module's private name, minus
    ALLOWED_PRIVATE. Raises SyntaxError."""
    found = []
    for node in ast.walk(ast.parse(source)):
        names: list[tuple[str, str]] = []
        if isinstance(node, ast.Attribute):
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                continue
            if (isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name)
                    and owner.func.id == "super"):
                continue
            names.append((ast.unparse(owner), node.attr))
        elif isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            if not node.level and node.module:
                names.append(node.module.rpartition(".")[::2])
            names.extend((module, alias.name) for alias in node.names)
        elif isinstance(node, ast.Import):
            names.extend(alias.name.rpartition(".")[::2] for alias in node.names)
        for owner_text, attr in names:
            if not attr.startswith("_") or (attr.startswith("__") and attr.endswith("__")):
                continue
            text = f"{owner_text}.{attr}"
            if text in ALLOWED_PRIVATE or f"*.{attr}" in ALLOWED_PRIVATE:
                continue
            found.append(f"{node.lineno}: {text}")
    return found


def imports_ray(module: str, source: str) -> bool:
    """True when ``source`` imports ``ray`` or a submodule of it anywhere. Raises
    SyntaxError."""
    return any(name == "ray" or name.startswith("ray.")
               for name in imported_modules(module, source))


def imports_any(module: str, source: str, roots: tuple[str, ...]) -> bool:
    """True when ``source`` imports one of the top-level packages ``roots`` (or a
    submodule of one) anywhere. Raises SyntaxError."""
    return any(name.split(".")[0] in roots for name in imported_modules(module, source))


def imported_on_load(source: str) -> set[str]:
    """The absolute names ``source`` imports when it is loaded: its import
    statements outside function bodies (those inside a function run only when
    it is called). Relative imports are left out. Raises SyntaxError."""
    found: set[str] = set()
    stack: list[ast.AST] = [ast.parse(source)]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module)
        stack.extend(ast.iter_child_nodes(node))
    return found


def in_package(module: str, package: str) -> bool:
    """True for ``package`` itself and its submodules."""
    return module == package or module.startswith(package + ".")


# -- the rules --------------------------------------------------------------------------------

def test_the_packages_import_each_other_without_a_cycle():
    graph = import_graph(package_sources())
    assert "pynenc_ray.app" in graph and "local_runners.thread_runner" in graph
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_module_touches_another_objects_private_names():
    found = {module: hits for module, source in package_sources().items()
             if (hits := private_accesses(source))}
    assert not found, found


def test_only_the_multithread_runner_modules_import_ray():
    sources = package_sources()
    assert set(sources) >= RAY_MODULES, RAY_MODULES - set(sources)
    offenders = sorted(m for m, s in sources.items() if m not in RAY_MODULES and imports_ray(m, s))
    assert not offenders, offenders


def test_only_the_monitor_imports_the_web_stack_and_only_the_cli_imports_the_monitor():
    sources = package_sources()
    assert {f"{MONITOR}.web", f"{MONITOR}.cli"} <= set(sources)
    web = sorted(m for m, s in sources.items()
                 if not in_package(m, MONITOR) and imports_any(m, s, WEB_STACK))
    assert not web, web
    graph = import_graph(sources)
    importers = sorted(m for m, edges in graph.items() if not in_package(m, MONITOR)
                       and any(in_package(e, MONITOR) for e in edges))
    assert set(importers) <= MONITOR_IMPORTERS, importers
    # the CLI's hook (and the package itself) load without the web stack: only
    # cmd_monitor imports it, when the command runs
    for module in (MONITOR, f"{MONITOR}.cli", f"{MONITOR}.data", f"{MONITOR}.actions"):
        loaded = {name.split(".")[0] for name in imported_on_load(sources[module])}
        assert not loaded & set(WEB_STACK), module


def test_only_the_redis_backend_and_redis_tools_import_redis_py():
    sources = package_sources()
    assert f"{REDIS_BACKEND}.backend" in sources and set(sources) >= REDIS_TOOLS
    offenders = sorted(m for m, s in sources.items()
                       if not in_package(m, REDIS_BACKEND) and m not in REDIS_TOOLS
                       and imports_any(m, s, ("redis", "hiredis")))
    assert not offenders, offenders


def test_only_the_sqlite_backend_imports_sqlite3():
    sources = package_sources()
    assert f"{SQLITE_BACKEND}.backend" in sources
    offenders = sorted(m for m, s in sources.items()
                       if not in_package(m, SQLITE_BACKEND) and imports_any(m, s, ("sqlite3",)))
    assert not offenders, offenders



def test_only_the_metrics_exporter_imports_prometheus_client_and_not_on_load():
    sources = package_sources()
    exporter = "pynenc_ray.metrics.exporter"
    assert exporter in sources
    offenders = sorted(m for m, s in sources.items()
                       if m != exporter and imports_any(m, s, ("prometheus_client",)))
    assert not offenders, offenders
    loaded = {name.split(".")[0] for name in imported_on_load(sources[exporter])}
    assert "prometheus_client" not in loaded  # only a runner that serves metrics loads it


# -- the checks can fail ------------------------------------------------------------------------

def test_self_check_a_synthetic_cycle_is_found_through_functions_and_type_checking():
    sources = {
        "pkg": "from . import a\n",
        "pkg.a": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import B\n",
        "pkg.b": "def f():\n    from pkg.c import g\n",
        "pkg.c": "from .a import thing\n",
        "pkg.d": "import pkg.c\n",
    }
    graph = import_graph(sources, root=None)
    assert graph["pkg"] == {"pkg.a"} and graph["pkg.d"] == {"pkg.c"}
    assert find_cycle(graph) == ["pkg.a", "pkg.b", "pkg.c", "pkg.a"]
    sources["pkg.c"] = "import os\n"
    assert find_cycle(import_graph(sources, root=None)) is None


def test_self_check_relative_imports_resolve_from_a_package_and_two_levels_up():
    assert imported_modules("p.sub", "from . import x\nfrom .. import y\n", is_package=True) \
        == {"p.sub.x", "p.y"}
    assert imported_modules("p.sub.m", "from ..q import z\nimport a.b\n") == {"p.q.z", "a.b"}


def test_self_check_private_access_is_flagged_and_own_names_are_not():
    source = (
        "import os, ray._raylet\n"
        "from ray._private import thing\n"
        "from .config import _helper, public as _alias\n"
        "class A(B):\n"
        "    def f(self, other):\n"
        "        self._x = other._y\n"
        "        super()._z()\n"
        "        cls._w, other.__dict__, p._replace(a=1)\n"
        "        os._exit(1)\n"
        "        app.runner._stop.set()\n"
    )
    assert sorted(private_accesses(source)) == [
        "10: app.runner._stop", "2: ray._private", "3: .config._helper", "6: other._y"]


def test_self_check_a_ray_import_is_found_in_a_function():
    assert imports_ray("pkg.m", "def f():\n    from ray.util import x\n")
    assert imports_ray("pkg.m", "import ray\n")
    assert not imports_ray("pkg.m", "import rayon\nfrom .ray import x\n")


def test_self_check_a_web_stack_import_is_found_in_a_function():
    assert imports_any("pkg.m", "def f():\n    from starlette.routing import Route\n",
                       WEB_STACK)
    assert imports_any("pkg.m", "import jinja2\n", WEB_STACK)
    assert not imports_any("pkg.m", "import starlettes\nfrom .uvicorn import x\n", WEB_STACK)
    assert in_package(MONITOR, MONITOR) and in_package(MONITOR + ".web", MONITOR)
    assert not in_package("pynenc_ray.monitoring", MONITOR)
    source = ("import a\nfrom b.c import d\nif x:\n    import e\nfrom . import f\n"
              "def g():\n    import h\nclass K:\n    import i\n    async def m(self):\n"
              "        import j\n")
    assert imported_on_load(source) == {"a", "b.c", "e", "i"}
