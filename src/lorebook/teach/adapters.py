"""Adapter management beyond training: merge into a standalone model, export as a GGUF LoRA for llama.cpp."""

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


GGUF_FILE = "adapter.gguf"
# transformers' llama-family config.model_type -> gguf architecture; llama.cpp stores these models' q/k
# projections with rows permuted for its rotary layout, so LoRA B matrices of q/k are permuted the same way.
GGUF_ARCHS = {"llama": "LLAMA", "mistral": "LLAMA"}


def _permute_rows(weight, heads: int):
    """convert_hf_to_gguf's LlamaModel.permute on the output rows (B of q/k: W = B A permutes with B)."""
    rows = weight.shape[0]
    return (weight.reshape(heads, 2, rows // heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape))


def export_gguf(name: str, output: Path | None = None) -> Path:
    """Write a trained PEFT adapter as a GGUF LoRA adapter that llama.cpp loads (`lora_path`).

    Tensors are named like the base GGUF's (`blk.N.attn_q.weight.lora_a`/`.lora_b`), A as (r, in) and
    B as (out, r) in torch order (gguf reverses to ggml's order), with `adapter.lora.alpha` so llama.cpp
    applies the same alpha / r scale as PEFT. Default output: `adapter.gguf` inside the adapter folder,
    which the llamacpp engine then picks up for `--adapter NAME --engine llamacpp`.
    """
    import gguf
    from safetensors.torch import load_file
    from transformers import AutoConfig

    from lorebook.models.loader import ensure_cached
    from lorebook.models.registry import resolve_model

    directory = store.find(name)
    meta = store.read_meta(directory)
    lora = json.loads((directory / "adapter_config.json").read_text())
    spec = resolve_model(meta.get("base_model_path") or meta["base_model"])
    config = AutoConfig.from_pretrained(str(ensure_cached(spec)))
    arch = GGUF_ARCHS.get(config.model_type)
    if arch is None:
        raise InputError(f"GGUF export supports llama-family models, not {config.model_type!r}",
                         "use `lorebook adapters merge` and the torch engine for this model")
    if lora.get("use_dora") or lora.get("rank_pattern") or lora.get("alpha_pattern"):
        raise InputError("this adapter uses DoRA or per-layer ranks, which llama.cpp's LoRA format cannot hold",
                         "train with plain LoRA options")
    names = gguf.get_tensor_name_map(getattr(gguf.MODEL_ARCH, arch), config.num_hidden_layers)
    heads = {"q_proj": config.num_attention_heads,
             "k_proj": getattr(config, "num_key_value_heads", None) or config.num_attention_heads}
    output = Path(output) if output else directory / GGUF_FILE
    writer = gguf.GGUFWriter(str(output) + ".writing", gguf.MODEL_ARCH_NAMES[getattr(gguf.MODEL_ARCH, arch)])
    writer.add_string(gguf.Keys.General.TYPE, gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(lora["lora_alpha"]))
    weights = load_file(str(directory / "adapter_model.safetensors"))
    for key in sorted(weights):
        if ".lora_A." not in key:
            continue
        module = key.split(".lora_A.")[0].removeprefix("base_model.model.")
        base = names.get_name(module)
        if base is None:
            raise InputError(f"no GGUF name for layer {module}", "train LoRA on the standard projection layers")
        a = weights[key].float()
        b = weights[key.replace(".lora_A.", ".lora_B.")].float()
        short = module.rsplit(".", 1)[-1]
        if short in heads:
            b = _permute_rows(b, heads[short])
        writer.add_tensor(f"{base}.weight.lora_a", a.contiguous().numpy())
        writer.add_tensor(f"{base}.weight.lora_b", b.contiguous().numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(str(output) + ".writing", output)
    return output
