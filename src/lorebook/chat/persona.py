"""Personas: small YAML recipes (like an Ollama Modelfile) naming a model, adapters, prompt and voice.

    name: customs-agent-es
    model: smollm2-135m          # registry name or path
    adapters: []                 # LoRA adapters merged at load
    notebook: null               # retrieval notebook (teach without training)
    language: es                 # the language replies must be in
    voice: es                    # TTS voice (piper voice name or espeak-ng language)
    system: "Eres un agente…"    # system prompt
    options: {temperature: 0.6}  # GenerationOptions fields
    moments: examples.jsonl      # optional: best of several replies by example conversations (chat/moments.py)

User personas in `$LOREBOOK_HOME/personas/NAME.yaml` shadow the shipped ones of the same name.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

from lorebook import paths
from lorebook.chat.moments import MomentsConfig
from lorebook.errors import PersonaError
from lorebook.models.engine import GenerationOptions

FIELDS = ("name", "description", "model", "adapters", "notebook", "language", "voice", "system", "options", "moments")


@dataclass
class Persona:
    """A recipe for a conversation partner."""

    name: str
    description: str = ""
    model: str | None = None
    adapters: list[str] = field(default_factory=list)
    notebook: str | None = None
    language: str = "en"
    voice: str | None = None
    system: str = ""
    options: GenerationOptions = field(default_factory=GenerationOptions)
    moments: MomentsConfig | None = None
    source: str = ""

    def to_yaml(self) -> str:
        data = {k: getattr(self, k) for k in FIELDS if k not in ("options", "moments")}
        if self.moments is not None:
            data["moments"] = dataclasses.asdict(self.moments)
        defaults = GenerationOptions()
        data["options"] = {
            k: v for k, v in dataclasses.asdict(self.options).items() if v != getattr(defaults, k)
        }
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def _shipped() -> dict[str, Path]:
    folder = resources.files("lorebook") / "personas"
    return {Path(p.name).stem: Path(str(p)) for p in folder.iterdir() if p.name.endswith(".yaml")}


def _user() -> dict[str, Path]:
    return {p.stem: p for p in sorted(paths.subdir("personas").glob("*.yaml"))}


def list_personas() -> list[Persona]:
    """Every persona: shipped ones, then user ones (a user persona replaces a shipped one of the same name)."""
    found = {**_shipped(), **_user()}
    return [load_persona(str(path)) for _, path in sorted(found.items())]


def load_persona(name_or_path: str) -> Persona:
    """A persona by name (user, then shipped) or by YAML file path."""
    path = Path(name_or_path).expanduser()
    if not (path.suffix in (".yaml", ".yml") and path.exists()):
        found = {**_shipped(), **_user()}
        if name_or_path not in found:
            known = ", ".join(sorted(found))
            raise PersonaError(f"unknown persona {name_or_path!r}", f"use one of: {known}, or a .yaml file path")
        path = found[name_or_path]
    return parse_persona(path)


def parse_persona(path: Path) -> Persona:
    """Read and check one persona file; every problem becomes a one-line PersonaError."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise PersonaError(f"persona {path} is not UTF-8 text", "save it as UTF-8") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise PersonaError(f"persona {path} is not valid YAML{where}", "fix the YAML syntax") from None
    if not isinstance(data, dict):
        raise PersonaError(f"persona {path} must be a YAML mapping", "start from `lorebook personas show assistant`")
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise PersonaError(f"persona {path} has unknown keys: {', '.join(unknown)}", f"allowed: {', '.join(FIELDS)}")
    options = data.pop("options", None) or {}
    if not isinstance(options, dict):
        raise PersonaError(f"persona {path}: options must be a mapping", "e.g. options: {temperature: 0.5}")
    try:
        opts = GenerationOptions.parse_pairs([f"{k}={','.join(v) if isinstance(v, list) else v}" for k, v in options.items()])
    except Exception as exc:
        raise PersonaError(f"persona {path}: {exc}", "fix the options block") from None
    adapters = data.get("adapters") or []
    if isinstance(adapters, str):
        adapters = [adapters]
    data["adapters"] = list(adapters)
    data.setdefault("name", path.stem)
    for key in ("system", "description", "language"):
        if key in data and data[key] is not None and not isinstance(data[key], str):
            raise PersonaError(f"persona {path}: {key} must be text", f"quote the {key} value")
    if data.get("moments") is not None:
        data["moments"] = MomentsConfig.from_yaml(data["moments"], str(path))
    data = {k: v for k, v in data.items() if v is not None}
    return Persona(**data, options=opts, source=str(path))


def save_persona(persona: Persona) -> Path:
    """Write a persona to the user's persona directory."""
    target = paths.subdir("personas") / f"{persona.name}.yaml"
    target.write_text(persona.to_yaml(), encoding="utf-8")
    return target
