"""Opt-in registration of the plugins with plain ``vol`` through its ``vol.json``.

volatility3 reads ``~/.config/volatility3/vol.json`` (``%APPDATA%\\volatility3``
on Windows; cli/__init__.py ``load_system_defaults``) and uses its keys as
argparse defaults; ``plugin_dirs`` is a ``;``-separated list. We add
our directory to what is there, keep every other key and directory, and write
atomically. ``remove`` undoes exactly our entry.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from typing import Optional, Tuple

from .. import PLUGIN_DIR

__all__ = ["config_path", "install", "remove"]


def config_path() -> str:
    if sys.platform == "win32":
        base = os.environ.get("APPDATA", os.path.expanduser("~"))
        return os.path.join(base, "volatility3", "vol.json")
    return os.path.join(os.path.expanduser("~"), ".config", "volatility3", "vol.json")


def _load(path: str) -> dict:
    if not os.path.exists(path):
        return {}
    with open(path, "r", encoding="utf-8") as fh:
        text = fh.read()
    if not text.strip():
        return {}
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data


def _save(path: str, data: dict) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".vol.json.")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2)
        fh.write("\n")
    os.replace(tmp, path)


def _dirs(value) -> list:
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v) for v in value if str(v)]
    return [d for d in str(value).split(";") if d]


def install(path: Optional[str] = None, plugin_dir: str = PLUGIN_DIR) -> Tuple[str, bool]:
    """Add ``plugin_dir`` to ``plugin_dirs`` in vol.json; return ``(path, changed)``."""
    path = path or config_path()
    data = _load(path)
    dirs = _dirs(data.get("plugin_dirs"))
    if plugin_dir in dirs:
        return path, False
    data["plugin_dirs"] = ";".join(dirs + [plugin_dir])
    _save(path, data)
    return path, True


def remove(path: Optional[str] = None, plugin_dir: str = PLUGIN_DIR) -> Tuple[str, bool]:
    """Remove ``plugin_dir`` from ``plugin_dirs``; drop the key if nothing else is left."""
    path = path or config_path()
    data = _load(path)
    changed = False
    dirs = _dirs(data.get("plugin_dirs"))
    if plugin_dir in dirs:
        dirs = [d for d in dirs if d != plugin_dir]
        changed = True
        if dirs:
            data["plugin_dirs"] = ";".join(dirs)
        else:
            del data["plugin_dirs"]
    if changed:
        _save(path, data)
    return path, changed
