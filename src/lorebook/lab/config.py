"""The one config dataclass of the lab: every run is described by a `LabConfig`.

The `help` metadata of each field is the help text of the matching `--flag` of `lorebook lab train`, and the
whole config is saved as JSON inside every checkpoint (and beside it as `config.json`), so a run can always
be reproduced or resumed from its directory alone.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lorebook.errors import InputError

TASKS = ("sort", "shakespeare")
ATTENTIONS = ("dot", "metric", "metric-shared")
METRIC_FORMS = ("full", "symmetric", "lowrank")


# Named starting points (`--preset`); explicit flags override them. The goals in docs/lab.md use these.
PRESETS: dict[str, dict[str, Any]] = {
    "sort-cpu": {
        "task": "sort",
        "n_layer": 2,
        "n_head": 4,
        "n_embd": 128,
        "block_size": 20,
        "batch_size": 64,
        "max_iters": 6000,
        "lr": 3e-3,
        "eval_interval": 250,
        "max_minutes": 3.0,
        "stop_at_accuracy": 1.0,
    },
    "shakespeare-cpu": {
        "task": "shakespeare",
        "n_layer": 4,
        "n_head": 4,
        "n_embd": 128,
        "block_size": 64,
        "batch_size": 32,
        "max_iters": 6000,
        "lr": 2e-3,
        "eval_interval": 250,
        "max_minutes": 10.0,
    },
    # nanoGPT's shakespeare-char model, trained on the larger full-plays corpus.
    "shakespeare-gpu": {
        "task": "shakespeare",
        "n_layer": 6,
        "n_head": 6,
        "n_embd": 384,
        "block_size": 256,
        "batch_size": 64,
        "max_iters": 5000,
        "lr": 1e-3,
        "dropout": 0.2,
        "eval_interval": 250,
        "eval_iters": 100,
    },
}


def _help(text: str) -> dict:
    return {"help": text}


@dataclass
class LabConfig:
    """Model, task and optimisation settings of one lab training run."""

    # task
    task: str = field(default="shakespeare", metadata=_help("sort | shakespeare"))
    # model
    attention: str = field(default="dot", metadata=_help("dot | metric (q·M·k) | metric-shared (p·LLᵀ·p)"))
    metric_form: str = field(
        default="full", metadata=_help("metric attention's M: full | symmetric | lowrank")
    )
    metric_rank: int = field(default=8, metadata=_help("rank r of the lowrank metric M = I + U·Wᵀ"))
    n_layer: int = field(default=4, metadata=_help("transformer blocks"))
    n_head: int = field(default=4, metadata=_help("attention heads per block"))
    n_embd: int = field(default=128, metadata=_help("model width (must be divisible by n_head)"))
    block_size: int = field(default=64, metadata=_help("context length in tokens"))
    dropout: float = field(default=0.0, metadata=_help("dropout rate (0 for small data-rich runs)"))
    # optimisation
    batch_size: int = field(default=32, metadata=_help("sequences per training step"))
    max_iters: int = field(default=2000, metadata=_help("training steps"))
    lr: float = field(default=2e-3, metadata=_help("peak learning rate (AdamW)"))
    min_lr_ratio: float = field(
        default=0.1, metadata=_help("final learning rate as a fraction of lr (cosine)")
    )
    warmup_iters: int = field(default=100, metadata=_help("linear warm-up steps"))
    weight_decay: float = field(default=0.1, metadata=_help("AdamW weight decay on matrices"))
    beta2: float = field(default=0.99, metadata=_help("AdamW beta2"))
    grad_clip: float = field(default=1.0, metadata=_help("clip the gradient norm to this (0 = off)"))
    # evaluation and budget
    eval_interval: int = field(default=200, metadata=_help("evaluate (and checkpoint) every N steps"))
    eval_iters: int = field(default=40, metadata=_help("validation batches per evaluation"))
    max_minutes: float = field(
        default=0.0, metadata=_help("stop after this much training time (0 = no limit)")
    )
    seed: int = field(default=0, metadata=_help("random seed for init and batches"))
    device: str = field(default="auto", metadata=_help("auto | cpu | cuda"))
    threads: int = field(default=0, metadata=_help("CPU threads for torch (0 = torch default)"))
    # sort task
    sort_vocab: int = field(default=10, metadata=_help("sort: integers are 0..sort_vocab-1"))
    sort_train_lengths: str = field(default="2-6,8", metadata=_help("sort: lengths used in training"))
    sort_eval_lengths: str = field(default="7,8,10", metadata=_help("sort: lengths scored on held-out data"))
    sort_eval_count: int = field(default=500, metadata=_help("sort: held-out sequences per eval length"))
    stop_at_accuracy: float = field(
        default=0.0,
        metadata=_help("sort: stop once every trained eval length reaches this accuracy (0 = off)"),
    )
    # shakespeare task
    corpus_dir: str = field(default="", metadata=_help("shakespeare: corpus cache (default: data home/lab)"))

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise InputError naming the bad field and the fix."""
        _choice("task", self.task, TASKS)
        _choice("attention", self.attention, ATTENTIONS)
        _choice("metric_form", self.metric_form, METRIC_FORMS)
        for name in (
            "n_layer",
            "n_head",
            "n_embd",
            "block_size",
            "batch_size",
            "eval_interval",
            "eval_iters",
        ):
            if getattr(self, name) < 1:
                raise InputError(
                    f"{name} must be at least 1, got {getattr(self, name)}", f"pass --{_flag(name)} 1 or more"
                )
        if self.n_embd % self.n_head:
            raise InputError(
                f"n_embd {self.n_embd} is not divisible by n_head {self.n_head}",
                "pick n_embd as a multiple of n_head",
            )
        if not 0.0 <= self.dropout < 1.0:
            raise InputError(f"dropout must be in [0, 1), got {self.dropout}", "pass --dropout 0.0 to 0.9")
        if self.lr <= 0:
            raise InputError(f"lr must be positive, got {self.lr}", "pass e.g. --lr 1e-3")
        if self.task == "sort":
            need = 2 * max(self.train_lengths() + self.eval_lengths())
            if self.block_size < need:
                raise InputError(
                    f"block_size {self.block_size} is too short for sort lengths up to {need // 2}",
                    f"pass --block-size {need} or more",
                )

    def train_lengths(self) -> list[int]:
        return parse_lengths(self.sort_train_lengths, "sort_train_lengths")

    def eval_lengths(self) -> list[int]:
        return parse_lengths(self.sort_eval_lengths, "sort_eval_lengths")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(
                f"unknown lab config fields: {', '.join(unknown)}", "remove them or update lorebook"
            )
        return cls(**data)

    def replace(self, **overrides: Any) -> LabConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **overrides)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")


def parse_lengths(text: str, name: str) -> list[int]:
    """'2-6,8' -> [2, 3, 4, 5, 6, 8]."""
    lengths: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                lengths.extend(range(lo, hi + 1))
            elif part:
                lengths.append(int(part))
    except ValueError:
        raise InputError(f"{name} '{text}' is not a list of lengths", "write it like 2-6,8") from None
    if not lengths or min(lengths) < 1:
        raise InputError(f"{name} '{text}' has no positive lengths", "write it like 2-6,8")
    return sorted(set(lengths))


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """['n_embd=192', 'attention=metric'] -> typed field values (types taken from LabConfig)."""
    types = {f.name: f.type for f in dataclasses.fields(LabConfig)}
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in types:
            raise InputError(
                f"bad override '{pair}'", f"use FIELD=VALUE with FIELD one of: {', '.join(types)}"
            )
        out[key] = _convert(key, value.strip(), types[key])
    return out


def _convert(key: str, value: str, type_name: Any) -> Any:
    type_name = getattr(type_name, "__name__", type_name)
    try:
        if type_name == "int":
            return int(value)
        if type_name == "float":
            return float(value)
    except ValueError:
        raise InputError(f"{key}={value} is not a {type_name}", f"give {key} a {type_name} value") from None
    return value


def _choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise InputError(f"unknown {name} '{value}'", f"choose one of: {', '.join(choices)}")


def _flag(name: str) -> str:
    return name.replace("_", "-")
