"""One registry type for methods, datasets, loaders, keypoint sources, reference sources, featurizers, metrics
and loss terms.

A registry maps a name to a factory plus a one-line description. Registration is a decorator at
the definition (``@FEATURIZERS.register("sift", "...")`` above the class); unknown and duplicate
names are errors that list what is valid. Plugins come from three places, loaded the first time a
registry is read (``plugin_loader``): the repository's ``methods/`` folder, the folders on
HARNESS_PLUGIN_PATH (a file there may register a plugin of any kind), and one Python entry-point
group per kind for installed packages: ``harness.methods``, ``harness.keypoint_sources``,
``harness.references``, ``harness.featurizers``, ``harness.loaders``, ``harness.metrics``,
``harness.losses``.
"""
from __future__ import annotations

import difflib
import importlib.util
import os
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable, Generic, Iterator, TypeVar

from .errors import RegistryError
from .paths import builtin_methods_dir

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    factory: Callable[..., T]
    description: str


def did_you_mean(name: str, valid) -> str:
    """'; did you mean 'x'?' for the closest valid names (difflib), or '' when none is close."""
    spelt = {str(v).lower(): str(v) for v in valid}  # compared in lower case, named as spelt
    close = difflib.get_close_matches(str(name).lower(), list(spelt), n=2, cutoff=0.6)
    return f"; did you mean {' or '.join(repr(spelt[c]) for c in close)}?" if close else ""


class Registry(Generic[T]):
    def __init__(self, kind: str, loader: Callable[[], None] | None = None):
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}
        self._loader = loader
        self._loaded = False

    def register(self, name: str, description: str = "", factory: Callable[..., T] | None = None):
        """Register ``factory`` under ``name``; usable as ``@registry.register("name", "what")``."""

        def add(fn: Callable[..., T]) -> Callable[..., T]:
            key = name.lower()
            if key in self._entries:
                raise RegistryError(
                    f"duplicate {self.kind} name {name!r}: already registered by "
                    f"{_origin(self._entries[key].factory)}"
                )
            doc = description or ((fn.__doc__ or "").strip().splitlines() or [""])[0]
            # looked up in any case, listed as registered (the metric mAP, as records spell it)
            self._entries[key] = Entry(name=name, factory=fn, description=doc)
            return fn

        return add(factory) if factory is not None else add

    def _ensure_loaded(self) -> None:
        if not self._loaded:
            self._loaded = True
            if self._loader is not None:
                try:
                    self._loader()
                except RegistryError:  # e.g. a HARNESS_PLUGIN_PATH entry that is no folder: said again next time
                    self._loaded = False
                    raise

    def get(self, name: str) -> Entry[T]:
        self._ensure_loaded()
        key = name.lower()
        if key not in self._entries:
            raise RegistryError(
                f"unknown {self.kind} {name!r}; valid {self.kind}s: {', '.join(self.names()) or '(none)'}"
                f"{did_you_mean(key, self.names())}"
            )
        return self._entries[key]

    def create(self, name: str, *args, **kwargs) -> T:
        return self.get(name).factory(*args, **kwargs)

    def names(self) -> list[str]:
        self._ensure_loaded()
        return [self._entries[key].name for key in sorted(self._entries)]

    def __contains__(self, name: str) -> bool:
        self._ensure_loaded()
        return name.lower() in self._entries

    def __iter__(self) -> Iterator[Entry[T]]:
        self._ensure_loaded()
        return iter(self._entries[key] for key in sorted(self._entries))

    def unregister(self, name: str) -> None:
        self._entries.pop(name.lower(), None)


def _origin(fn: Callable) -> str:
    mod = getattr(fn, "__module__", "?")
    return f"{mod}.{getattr(fn, '__qualname__', fn)}"


def plugin_dirs() -> list[Path]:
    """Folders whose ``*.py`` files are method plugins: the built-in ``methods/`` plus
    every folder in ``HARNESS_PLUGIN_PATH`` (os.pathsep-separated)."""
    dirs = [builtin_methods_dir()]
    for part in os.environ.get("HARNESS_PLUGIN_PATH", "").split(os.pathsep):
        if part.strip():
            folder = Path(part.strip()).expanduser()
            if not folder.is_dir():  # a mistyped folder would silently leave its plugins unregistered
                why = "is a file, not a folder" if folder.exists() else "no such folder"
                raise RegistryError(f"HARNESS_PLUGIN_PATH entry {part.strip()}: {why}; list folders of plugin files "
                                    f"(*.py), separated by {os.pathsep!r}")
            dirs.append(folder)
    return dirs


def load_plugin_files(dirs: list[Path], namespace: str) -> None:
    """Import every ``*.py`` in ``dirs`` (not starting with ``_``) as ``namespace.<stem>``."""
    for folder in dirs:
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.py")):
            if path.name.startswith("_"):
                continue
            modname = f"{namespace}.{path.stem}"
            if modname in sys.modules:
                continue
            spec = importlib.util.spec_from_file_location(modname, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[modname] = module
            try:
                spec.loader.exec_module(module)
            except RegistryError:
                del sys.modules[modname]
                raise
            except Exception as exc:  # a broken plugin must name itself
                del sys.modules[modname]
                raise RegistryError(f"plugin file {path} failed to import: {exc}") from exc


def load_entry_points(group: str) -> None:
    """Call every entry point in ``group``: importing the target registers the plugin."""
    for ep in metadata.entry_points(group=group):
        try:
            obj = ep.load()
        except Exception as exc:
            raise RegistryError(f"entry point {ep.name!r} in {group} failed to load: {exc}") from exc
        if callable(obj) and getattr(obj, "__harness_setup__", False):
            obj()


def plugin_loader(group: str) -> Callable[[], None]:
    """The loader of a registry whose third-party entries come from the entry-point ``group``.
    It also imports the plugin folders, so one file on HARNESS_PLUGIN_PATH can add a plugin of any
    kind, whichever registry is read first (files already imported are skipped)."""

    def load() -> None:
        load_plugin_files(plugin_dirs(), "harness_plugins")
        load_entry_points(group)

    return load

