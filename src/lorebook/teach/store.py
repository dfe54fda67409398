"""Where adapters live and how a finished one is published.

Finished adapters: paths.subdir("adapters")/NAME with the PEFT files plus lorebook-adapter.json.
A run in progress works in adapters/.NAME.partial/ (checkpoints, then the adapter being written); only
a complete adapter is renamed into place, so a run that dies never leaves a half-written adapter
registered, and `--resume` finds its checkpoint there.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from lorebook import paths
from lorebook.errors import AdapterError, InputError

META_FILE = "lorebook-adapter.json"
CONFIG_FILE = "teach-config.json"
CURVE_FILE = "loss-curve.json"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def check_name(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise InputError(f"bad adapter name {name!r}",
                         "use letters, digits, '.', '_' or '-' (up to 64), starting with a letter or digit")
    return name


def adapter_dir(name: str) -> Path:
    return paths.subdir("adapters") / check_name(name)


def partial_dir(name: str) -> Path:
    return paths.subdir("adapters") / f".{check_name(name)}.partial"


def list_adapters() -> list[dict]:
    """Metadata of every finished adapter, sorted by name."""
    found = []
    for directory in sorted(paths.subdir("adapters").iterdir()):
        if directory.name.startswith(".") or not (directory / "adapter_config.json").exists():
            continue
        found.append(read_meta(directory))
    return found


def read_meta(directory: Path) -> dict:
    """lorebook-adapter.json of an adapter (or what PEFT's config tells, for foreign adapters)."""
    meta_path = directory / META_FILE
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    if "base_model" not in meta:
        peft_config = json.loads((directory / "adapter_config.json").read_text())
        meta["base_model"] = peft_config.get("base_model_name_or_path")
    meta["name"] = directory.name
    meta["path"] = str(directory)
    meta["size_bytes"] = sum(f.stat().st_size for f in directory.iterdir() if f.is_file())
    return meta


def find(name: str) -> Path:
    directory = adapter_dir(name)
    if not (directory / "adapter_config.json").exists():
        raise AdapterError(f"no adapter named {name!r}", "see `lorebook adapters list`")
    return directory


def publish(built: Path, name: str, replace: bool) -> Path:
    """Move a complete adapter directory into place (atomic rename on one filesystem)."""
    target = adapter_dir(name)
    if target.exists():
        if not replace:
            raise AdapterError(f"adapter {name!r} already exists", "pick another --name or pass --force")
        trash = target.with_name(f".{name}.old")
        shutil.rmtree(trash, ignore_errors=True)
        os.replace(target, trash)
        os.replace(built, target)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(built, target)
    return target


def remove(name: str) -> Path:
    directory = find(name)
    shutil.rmtree(directory)
    shutil.rmtree(partial_dir(name), ignore_errors=True)
    return directory
