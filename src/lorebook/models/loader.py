"""Load models into transformers, converting GGUF once into a safetensors cache.

transformers de-quantizes GGUF on every `from_pretrained(..., gguf_file=)` call (25-65 s here, most
of it rebuilding the tokenizer). We do that once, save the fp32 weights and tokenizer as a normal HF
directory under the data home, and load from there afterwards (under a second for the 135M model).
Conversion writes into a temporary directory and renames it when complete, so an interrupted
conversion never leaves a half-written cache behind.
"""

from __future__ import annotations

import json
import logging
import shutil
import struct
import warnings
from pathlib import Path

import torch

from lorebook import paths
from lorebook.errors import AdapterError, ModelError
from lorebook.models.registry import ModelSpec, gguf_path, is_cached

GGUF_MAGIC = b"GGUF"
FALLBACK_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|' + message['role'] + '|>\n' + message['content'] + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)


def quiet_transformers() -> None:
    """Silence transformers' progress bars and advisory warnings; lorebook prints its own."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", module="transformers")
    logging.getLogger("transformers").setLevel(logging.ERROR)


def validate_gguf(path: Path) -> None:
    """Refuse a missing, non-GGUF, or truncated file with a one-line reason."""
    if not path.exists():
        raise ModelError(f"model file {path} does not exist", "check the path, or run `lorebook models list`")
    with path.open("rb") as fh:
        head = fh.read(8)
    if len(head) < 8 or head[:4] != GGUF_MAGIC:
        raise ModelError(f"{path} is not a GGUF file (bad magic bytes)", "pass a .gguf model file")
    version = struct.unpack("<I", head[4:8])[0]
    if version not in (2, 3):
        raise ModelError(f"{path} has unsupported GGUF version {version}", "convert it with a recent llama.cpp")
    from gguf import GGUFReader

    try:
        reader = GGUFReader(str(path))
        if not reader.tensors or "general.architecture" not in reader.fields:
            raise ValueError("no tensors or no architecture in the header")
        size = path.stat().st_size
        for tensor in reader.tensors:
            if tensor.data_offset + tensor.n_bytes > size:
                raise ValueError("tensor data runs past the end of the file")
    except Exception as exc:  # the reader raises many types on damaged files
        raise ModelError(
            f"{path} is corrupt or truncated ({type(exc).__name__}: {str(exc)[:80]})",
            "re-download or reinstall the model file",
        ) from None


def ensure_cached(spec: ModelSpec, progress: bool = True) -> Path:
    """The HF-format directory of a model, converting its GGUF on first use."""
    if is_cached(spec):
        return spec.cache_dir
    source = gguf_path(spec)
    validate_gguf(source)
    quiet_transformers()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if progress:
        print(f"converting {spec.name} from GGUF once (about a minute); later loads take a second")
    target = spec.cache_dir
    tmp = target.with_name(target.name + ".converting")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name)
        model = AutoModelForCausalLM.from_pretrained(
            str(source.parent), gguf_file=source.name, dtype=torch.float32
        )
    except Exception as exc:
        raise ModelError(
            f"transformers could not load {source.name}: {str(exc)[:120]}",
            "use a GGUF of a supported architecture (llama, gemma3, qwen2, mistral…) or --engine llamacpp",
        ) from None
    # The weights are now plain fp32 tensors; drop the GGUF quantizer so save_pretrained accepts them.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if not tokenizer.chat_template:
        tokenizer.chat_template = FALLBACK_CHAT_TEMPLATE
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "lorebook-source.json").write_text(json.dumps({"model": spec.name, "gguf": str(source)}))
    (tmp / ".complete").touch()
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target


def load_tokenizer(spec: ModelSpec):
    """The model's tokenizer (with a chat template) from the cache."""
    quiet_transformers()
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(ensure_cached(spec)))
    if spec.chat_template:
        tokenizer.chat_template = spec.chat_template
    elif not tokenizer.chat_template:
        tokenizer.chat_template = FALLBACK_CHAT_TEMPLATE
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(spec: ModelSpec, dtype: torch.dtype = torch.float32):
    """(model, tokenizer) in transformers, in eval mode, from the safetensors cache."""
    quiet_transformers()
    from transformers import AutoModelForCausalLM

    directory = ensure_cached(spec)
    try:
        model = AutoModelForCausalLM.from_pretrained(str(directory), dtype=dtype)
    except (OSError, ValueError, RuntimeError) as exc:
        raise ModelError(
            f"cached model at {directory} is unreadable ({str(exc)[:80]})",
            f"delete {directory} and run again to rebuild it",
        ) from None
    model.eval()
    return model, load_tokenizer(spec)


def resolve_adapter(name_or_path: str) -> Path:
    """An adapter directory by name (under the data home) or path."""
    path = Path(name_or_path).expanduser()
    if not path.exists():
        path = paths.subdir("adapters") / name_or_path
    if not (path / "adapter_config.json").exists():
        raise AdapterError(
            f"adapter {name_or_path!r} not found (no adapter_config.json at {path})",
            "check `lorebook adapters list`, or pass the adapter directory path",
        )
    return path


def adapter_base_model(adapter_dir: Path) -> str | None:
    """The base model an adapter was trained on, as recorded by lorebook or PEFT."""
    meta = adapter_dir / "lorebook-adapter.json"
    if meta.exists():
        return json.loads(meta.read_text()).get("base_model")
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    return config.get("base_model_name_or_path")


def split_weight(adapter: str) -> tuple[str, float]:
    """"oscars:0.5" -> ("oscars", 0.5): an adapter's weight when several are stacked (default 1.0)."""
    name, sep, weight = adapter.rpartition(":")
    if sep and name and not Path(adapter).expanduser().exists():
        try:
            return name, float(weight)
        except ValueError:
            pass
    return adapter, 1.0


def attach_adapters(model, spec: ModelSpec, adapters: list[str], merge: bool = False):
    """Attach PEFT LoRA adapters, each optionally weighted as NAME:WEIGHT; refuse adapters trained for
    another base model."""
    if not adapters:
        return model
    from peft import PeftModel

    weights = [split_weight(name)[1] for name in adapters]
    adapters = [split_weight(name)[0] for name in adapters]
    for index, name in enumerate(adapters):
        directory = resolve_adapter(name)
        base = adapter_base_model(directory)
        if base and base not in (spec.name, spec.path, str(spec.cache_dir)) and base not in spec.aliases:
            raise AdapterError(
                f"adapter {name!r} was trained for base model {base!r}, not {spec.name!r}",
                f"use --model {base}, or an adapter trained on {spec.name}",
            )
        try:
            if index == 0:
                model = PeftModel.from_pretrained(model, str(directory), adapter_name=f"a{index}")
            else:
                model.load_adapter(str(directory), adapter_name=f"a{index}")
        except RuntimeError as exc:  # size mismatch: the adapter's shapes belong to another model
            raise AdapterError(
                f"adapter {name!r} does not fit {spec.name} ({str(exc).splitlines()[0][:100]})",
                "use the base model the adapter was trained on",
            ) from None
    if len(adapters) > 1 or weights != [1.0]:
        names = [f"a{i}" for i in range(len(adapters))]
        model.add_weighted_adapter(names, weights, adapter_name="combined", combination_type="cat")
        model.set_adapter("combined")
    if merge:
        model = model.merge_and_unload()
    model.eval()
    return model
