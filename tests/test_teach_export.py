"""Adapter export to GGUF (llama.cpp's LoRA format) and weighted stacking, on a tiny random llama."""

from __future__ import annotations

import pytest
import torch

from lorebook.models.loader import attach_adapters, load_model, split_weight
from lorebook.models.registry import resolve_model
from lorebook.teach.adapters import _permute_rows, export_gguf
from lorebook.teach.config import TeachConfig
from lorebook.teach.pack import Fact, save_pack
from lorebook.teach.trainer import teach

FACTS = [Fact("zorbo", "The capital of Zorbo is Quendle.", "What is the capital of Zorbo?", "Quendle", [], [])]


@pytest.fixture
def adapter(tiny_model_dir, tmp_path) -> str:
    pack = tmp_path / "zorbo.jsonl"
    save_pack(FACTS, pack)
    # lr high enough that the LoRA B matrices move away from their zero initialisation
    config = TeachConfig(model=str(tiny_model_dir), systems="default", epochs=2, batch_size=1, lr=5e-2, rank=4,
                         alpha=8.0, replay=0, warmup_steps=0, schedule="constant")
    teach(pack, "zorbo", config, progress=False, probe=False)
    return "zorbo"


def test_gguf_export_names_shapes_alpha_and_qk_permutation(adapter, tiny_model_dir):
    import gguf
    from safetensors.torch import load_file

    from lorebook.teach import store

    path = export_gguf(adapter)
    reader = gguf.GGUFReader(str(path))
    fields = {name: field for name, field in reader.fields.items()}
    assert bytes(fields["general.type"].parts[-1]).decode() == "adapter"
    assert float(fields["adapter.lora.alpha"].parts[-1][0]) == 8.0
    tensors = {t.name: t for t in reader.tensors}
    assert len(tensors) == 2 * 7 * 2  # lora_a + lora_b for 7 projections in 2 layers
    q_a, q_b = tensors["blk.0.attn_q.weight.lora_a"], tensors["blk.0.attn_q.weight.lora_b"]
    assert list(q_a.shape) == [64, 4] and list(q_b.shape) == [4, 64]  # ggml order: (in, r) and (r, out)
    peft = load_file(str(store.find(adapter) / "adapter_model.safetensors"))
    b = peft["base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"]
    assert b.abs().sum() > 0
    stored = torch.from_numpy(q_b.data.copy()).reshape(64, 4)
    assert torch.allclose(stored, _permute_rows(b.float(), 4))  # rows permuted like llama.cpp's q weights
    v_b = torch.from_numpy(tensors["blk.0.attn_v.weight.lora_b"].data.copy()).reshape(64 // 2, 4)
    assert torch.allclose(v_b, peft["base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight"].float())


def test_weighted_stacking_scales_the_adapter(adapter, tiny_model_dir):
    assert split_weight("oscars:0.5") == ("oscars", 0.5) and split_weight("oscars") == ("oscars", 1.0)
    spec = resolve_model(str(tiny_model_dir))
    ids = torch.tensor([[1, 5, 9, 12]])

    def logits(adapters):
        model, _ = load_model(spec)
        model = attach_adapters(model, spec, adapters, merge=True)
        with torch.no_grad():
            return model(input_ids=ids).logits

    base, full, off = logits([]), logits([adapter]), logits([f"{adapter}:0"])
    half = logits([f"{adapter}:0.5"])
    assert not torch.allclose(base, full, atol=1e-4)
    assert torch.allclose(base, off, atol=1e-5)  # weight 0 switches the adapter off
    assert (half - base).abs().mean() < (full - base).abs().mean()
    assert torch.allclose(logits([adapter, adapter]), logits([f"{adapter}:2"]), atol=1e-4)


def test_export_cli_errors_are_one_line():
    from typer.testing import CliRunner

    from lorebook.cli.main import app

    result = CliRunner().invoke(app, ["adapters", "export", "nosuch"])
    assert result.exit_code != 0 and "--gguf" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(app, ["adapters", "export", "nosuch", "--gguf"])
    assert result.exit_code != 0 and "nosuch" in result.output and "Traceback" not in result.output
