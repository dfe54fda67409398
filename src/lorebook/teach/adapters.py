"""Adapter management beyond training: merge into a standalone model."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from lorebook.errors import InputError
from lorebook.teach import store


def merge(names: list[str], output: Path, model: str | None = None, force: bool = False) -> Path:
    """Write base model + adapters merged into one safetensors HF directory (loadable with --model DIR)."""
    from lorebook.models.loader import attach_adapters, load_model
    from lorebook.models.registry import resolve_model

    output = Path(output)
    if output.exists() and any(output.iterdir()) and not force:
        raise InputError(f"{output} exists and is not empty", "choose another --output or pass --force")
    meta = store.read_meta(store.find(names[0]))
    base = model or meta.get("base_model_path") or meta["base_model"]
    spec = resolve_model(base)
    hf_model, tokenizer = load_model(spec)
    merged = attach_adapters(hf_model, spec, [str(store.find(name)) for name in names], merge=True)
    tmp = output.with_name(output.name + ".writing")
    shutil.rmtree(tmp, ignore_errors=True)
    merged.save_pretrained(str(tmp), safe_serialization=True)
    tokenizer.save_pretrained(str(tmp))
    (tmp / "lorebook-merged.json").write_text(json.dumps({"base_model": spec.name, "adapters": names}, indent=2))
    if output.exists():
        shutil.rmtree(output)
    os.replace(tmp, output)
    return output
