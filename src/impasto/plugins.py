"""Third-party methods and training tasks, found through package entry points.

A package adds a style-transfer method or a training task by declaring an entry point in its ``pyproject.toml``:

    [project.entry-points."impasto.methods"]
    mine = "my_package.method:MyMethod"      # a Method subclass (or a module that @register-s its methods)

    [project.entry-points."impasto.tasks"]
    mine = "my_package.task:MyTask"          # a Task subclass (or a module that @register_task-s its tasks)

The registries (:mod:`impasto.methods.base`, :mod:`impasto.training.loop`) load each group once, on their first
lookup or listing, after the built-in methods and tasks; importing impasto loads no plugin. A plugin that fails to
load (import error, name taken by another method, wrong type) is skipped with a :class:`PluginWarning` naming the
plugin, its package and the error; everything else keeps working.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points

METHODS_GROUP = "impasto.methods"
TASKS_GROUP = "impasto.tasks"

_loaded: set[str] = set()


class PluginWarning(UserWarning):
    """A plugin (entry point of another package) could not be loaded and was skipped."""


def _describe(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    package = f" from package {dist.name} {dist.version}" if dist is not None else ""
    return f"plugin {ep.name!r} ({ep.group} = {ep.value!r}{package})"


def load_plugins(group: str, register: Callable[[str, object], None]) -> None:
    """Load the entry points of ``group`` once per process, handing each loaded object to ``register(name, obj)``.

    ``register`` raises (TypeError, ValueError, ...) to refuse an object; that, like an import error, becomes a
    PluginWarning and the plugin is skipped. Later calls do nothing (also while the first is still running, so a
    plugin may look up the registry when it is imported).
    """
    if group in _loaded:
        return
    _loaded.add(group)
    try:
        found = sorted(entry_points(group=group), key=lambda ep: ep.name)
    except Exception as exc:  # a broken installed distribution must not stop impasto
        warnings.warn(f"cannot list the {group!r} plugins: {type(exc).__name__}: {exc}", PluginWarning, stacklevel=2)
        return
    for ep in found:
        try:
            register(ep.name, ep.load())
        except Exception as exc:
            warnings.warn(
                f"{_describe(ep)} was skipped: {type(exc).__name__}: {exc}", PluginWarning, stacklevel=2
            )


def _reset(group: str) -> None:
    """Forget that ``group`` was loaded (tests)."""
    _loaded.discard(group)
