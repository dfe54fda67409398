"""Use a trained lab checkpoint: continue Shakespeare text, or sort a list of integers."""

from __future__ import annotations

from pathlib import Path

import torch

from lorebook.errors import InputError
from lorebook.lab.config import LabConfig
from lorebook.lab.model import GPT
from lorebook.lab.tasks import make_task
from lorebook.lab.train import autocast, load_checkpoint, resolve_device


def load_run(run_dir: Path, device: str = "auto"):
    """(model in eval mode, task codec, config) from a run directory's checkpoint."""
    state = load_checkpoint(Path(run_dir))
    config = LabConfig.from_dict(state["config"])
    task = make_task(config, state["meta"], load_data=False)
    model = GPT(config, task.vocab_size)
    model.load_state_dict(state["model"])
    return model.to(resolve_device(device)).eval(), task, config


def sample(
    run_dir: Path,
    prompt: str = "\n",
    tokens: int = 300,
    temperature: float = 0.8,
    top_k: int = 40,
    seed: int = 0,
    device: str = "auto",
) -> str:
    """Shakespeare runs: the prompt's continuation. Sort runs: the prompt's integers, sorted by the model."""
    model, task, config = load_run(run_dir, device)
    dev = next(model.parameters()).device
    gen = torch.Generator(device=dev).manual_seed(seed)
    if config.task == "sort":
        try:
            digits = task.encode(prompt)
        except ValueError:
            raise InputError(f"'{prompt}' is not a list of integers", "pass e.g. --prompt '3 1 2'") from None
        if not digits or any(not 0 <= d < config.sort_vocab for d in digits):
            raise InputError(
                f"sort inputs must be integers 0..{config.sort_vocab - 1}", "pass e.g. --prompt '3 1 2'"
            )
        if 2 * len(digits) > config.block_size:
            raise InputError(
                f"{len(digits)} integers do not fit block_size {config.block_size}", "pass fewer"
            )
        idx_bt = torch.tensor([digits + [task.sep]], device=dev)
        with autocast(dev):
            out_bt = model.generate(idx_bt, len(digits), temperature=0)
        return task.decode(out_bt[0, len(digits) + 1 :].tolist())
    idx_bt = torch.tensor([task.encode(prompt or "\n")], device=dev)
    with autocast(dev):
        out_bt = model.generate(idx_bt, tokens, temperature=temperature, top_k=top_k, generator=gen)
    return task.decode(out_bt[0].tolist())
