"""Plugins: user aggregates, projections and explainers loaded from a Python file or module.

``--plugins path/to/file.py`` (or a dotted module name) imports the code; registering happens
there, with :func:`~toolkit.analysis.explain.register_explainer`,
:func:`~toolkit.analysis.aggregates.register_aggregate` and
:func:`~toolkit.analysis.projections.register_projection`, and every module-level
``Aggregate`` or ``Projection`` object is registered too. So a user extends the toolkit
without forking it.

>>> import pathlib, tempfile
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> _ = (d / "mine.py").write_text(
...     "from toolkit.analysis.aggregates import Aggregate\\n"
...     "COUNT = Aggregate('event_count', initial=lambda: 0, reducer=lambda n, e: n + 1)\\n")
>>> load_plugins([str(d / "mine.py")]).aggregates
['event_count']
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from toolkit.analysis.aggregates import Aggregate, aggregates, register_aggregate
from toolkit.analysis.explain import registered_explainers
from toolkit.analysis.projections import Projection, projections, register_projection
from toolkit.errors import PluginError


@dataclass
class Loaded:
    modules: list[str] = field(default_factory=list)
    aggregates: list[str] = field(default_factory=list)
    projections: list[str] = field(default_factory=list)
    explainers: list[str] = field(default_factory=list)


def load_plugins(specs: Sequence[str]) -> Loaded:
    """Import each plugin (a ``.py`` path or a module name); report what it registered."""
    before_a, before_p, before_e = set(aggregates()), set(projections()), set(registered_explainers())
    loaded = Loaded()
    for spec in specs:
        module = _import(spec)
        loaded.modules.append(module.__name__)
        for value in list(vars(module).values()):
            if isinstance(value, Aggregate):
                register_aggregate(value)
            elif isinstance(value, Projection):
                register_projection(value)
    loaded.aggregates = sorted(set(aggregates()) - before_a)
    loaded.projections = sorted(set(projections()) - before_p)
    loaded.explainers = sorted(set(registered_explainers()) - before_e)
    return loaded


def _import(spec: str) -> ModuleType:
    looks_like_path = spec.endswith(".py") or "/" in spec or spec.startswith(".")
    if looks_like_path:
        path = Path(spec).expanduser()
        if not path.is_file():
            raise PluginError(f"--plugins {spec}: no such file", hint="give a .py file or an importable module name")
        if path.suffix != ".py":
            raise PluginError(f"--plugins {spec}: not a .py file", hint="plugins are Python source files")
        name = f"toolkit_plugin_{path.stem}_{abs(hash(str(path.resolve()))) % 10**8}"
        loader_spec = importlib.util.spec_from_file_location(name, path)
        if loader_spec is None or loader_spec.loader is None:
            raise PluginError(f"--plugins {spec}: cannot be loaded as a module")
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[name] = module
        try:
            loader_spec.loader.exec_module(module)
        except Exception as e:
            sys.modules.pop(name, None)
            raise PluginError(
                f"--plugins {spec}: importing it failed{_where(e, path)}: {type(e).__name__}: {e}",
                hint="run it with python to see the traceback (journal --debug shows it too)",
            ) from e
        return module
    try:
        return importlib.import_module(spec)
    except Exception as e:
        raise PluginError(
            f"--plugins {spec}: cannot import module{_where(e)}: {type(e).__name__}: {e}",
            hint="give a .py file path or a module on PYTHONPATH",
        ) from e


def _where(e: Exception, file: Path | None = None) -> str:
    """`` at FILE:LINE`` of the plugin line that failed: a syntax error's own place, else the last
    line of the traceback in the plugin ``file`` (a module: outside the import machinery)."""
    if isinstance(e, SyntaxError):
        return f" at {e.filename}:{e.lineno}" if e.filename and e.lineno else ""
    machinery = str(Path(importlib.__file__).parent)
    frames = [
        f
        for f in traceback.extract_tb(e.__traceback__)
        if not f.filename.startswith(("<frozen", machinery)) and f.filename != __file__
    ]
    if file is not None:
        frames = [f for f in frames if Path(f.filename).resolve() == file.resolve()] or frames
    return f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
