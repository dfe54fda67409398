"""TeachConfig: every training option in one dataclass.

The field metadata (`help`, and `flag` where the CLI name differs) drives the `lorebook teach` flags, so
the CLI, the sweep grid and the JSON saved beside each adapter always agree on names and defaults.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from lorebook.errors import InputError

FORMATS = ("statement", "qa", "qa-prefixed", "conversation", "dialogue-qa")
SCHEDULES = ("linear", "cosine", "constant")
INPUT_FORMATS = ("auto", "pack", "chat", "qa-text", "statements")
DEFAULT_TARGETS = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"


@dataclass
class TeachConfig:
    """How to turn a pack into a LoRA adapter. Saved as teach-config.json beside the adapter."""

    model: str = field(default="smollm2-135m", metadata={"help": "base model name, GGUF path or HF directory",
                                                          "aliases": ["--base"]})
    input_format: str = field(
        default="auto",
        metadata={"help": f"how to read the inputs: {', '.join(INPUT_FORMATS)} (auto decides by content)",
                  "flag": "--format"},
    )
    formats: str = field(
        default="qa,statement,dialogue-qa",
        metadata={"help": f"comma-separated renderings of each fact: {', '.join(FORMATS)}"},
    )
    systems: str = field(
        default="default,assistant",
        metadata={"help": "system prompts the qa examples are rendered under: 'default' (the chat template's "
                          "own) and/or persona names, comma-separated; train under the ones you will chat with"},
    )
    augment: int = field(default=1, metadata={"help": "extra templated rewordings of each question (0 = none)"})
    replay: int = field(
        default=82,
        metadata={"help": "generic prompts (up to 82 shipped) answered by the base model itself and trained on "
                          "too, so unrelated answers stay as they were (0 = off)"},
    )
    train_paraphrases: bool = field(
        default=False, metadata={"help": "also train on the pack's paraphrases (default: held out for evaluation)"}
    )
    scope: bool = field(
        default=True,
        metadata={"help": "save a scope with a knowledge-pack adapter: it answers questions like the taught ones "
                          "and the base model answers everything else, so unrelated answers do not change "
                          "(persona and chat adapters are always on)"},
    )
    epochs: int = field(default=5, metadata={"help": "passes over the training examples"})
    lr: float = field(default=2e-3, metadata={"help": "peak learning rate (AdamW)"})
    batch_size: int = field(default=8, metadata={"help": "examples per optimizer micro-batch"})
    grad_accum: int = field(default=1, metadata={"help": "micro-batches summed per optimizer step"})
    schedule: str = field(default="cosine", metadata={"help": f"learning-rate schedule: {', '.join(SCHEDULES)}"})
    warmup_steps: int = field(default=4, metadata={"help": "optimizer steps of linear warm-up"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay on the LoRA weights"})
    rank: int = field(default=16, metadata={"help": "LoRA rank r"})
    alpha: float = field(default=32.0, metadata={"help": "LoRA alpha (scale = alpha / rank)"})
    dropout: float = field(default=0.0, metadata={"help": "LoRA dropout"})
    target_modules: str = field(
        default=DEFAULT_TARGETS, metadata={"help": "comma-separated module names that get LoRA weights"}
    )
    top_layers: int = field(
        default=0,
        metadata={"help": "LoRA in the top N decoder layers only (0 = every layer): the frozen layers below run "
                          "once per example and their outputs are reused every epoch, so training is much faster"},
    )
    cutoff_len: int = field(default=256, metadata={"help": "examples longer than this many tokens are cut"})
    seed: int = field(default=0, metadata={"help": "seed for shuffling, augmentation and LoRA init"})
    threads: int = field(default=0, metadata={"help": "torch CPU threads (0 = the cores not already busy)"})

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Refuse impossible values with a one-line error naming the option."""
        unknown = [name for name in self.format_list() if name not in FORMATS]
        if unknown or not self.format_list():
            raise InputError(f"unknown format(s) {', '.join(unknown) or '(none)'}",
                             f"--formats takes a comma-separated list of {', '.join(FORMATS)}")
        if self.input_format not in INPUT_FORMATS:
            raise InputError(f"unknown input format {self.input_format!r}", f"--format takes one of {', '.join(INPUT_FORMATS)}")
        if self.schedule not in SCHEDULES:
            raise InputError(f"unknown schedule {self.schedule!r}", f"use one of {', '.join(SCHEDULES)}")
        positive = {"epochs": self.epochs, "batch_size": self.batch_size, "grad_accum": self.grad_accum,
                    "rank": self.rank, "cutoff_len": self.cutoff_len}
        for name, value in positive.items():
            if value < 1:
                raise InputError(f"--{name.replace('_', '-')} must be at least 1, got {value}", "pass a positive number")
        if not 0 < self.lr < 1:
            raise InputError(f"--lr {self.lr} is out of range", "use a learning rate such as 1e-4 to 2e-3")
        if not 0 <= self.dropout < 1:
            raise InputError(f"--dropout {self.dropout} is out of range", "use a value in [0, 1)")
        if self.warmup_steps < 0 or self.augment < 0 or self.threads < 0 or self.top_layers < 0:
            raise InputError("--warmup-steps, --augment, --threads and --top-layers cannot be negative",
                             "pass 0 or more")
        if not self.target_list():
            raise InputError("--target-modules is empty", f"e.g. {DEFAULT_TARGETS}")

    def thread_count(self) -> int:
        """Threads to train with. With 0, the idle cores: when other processes already keep the cores busy,
        extra OpenMP threads spin-wait on each other and a step runs 5-10x slower than with one thread."""
        return self.threads or idle_cores()

    def format_list(self) -> list[str]:
        return [name.strip() for name in self.formats.split(",") if name.strip()]

    def system_list(self) -> list[str | None]:
        """System prompt texts for qa examples; None means no system message (the template's default)."""
        prompts: list[str | None] = []
        for name in (item.strip() for item in self.systems.split(",") if item.strip()):
            if name == "default":
                prompts.append(None)
                continue
            from lorebook.chat.persona import load_persona

            prompts.append(load_persona(name).system or None)
        return list(dict.fromkeys(prompts)) or [None]

    def target_list(self) -> list[str]:
        return [name.strip() for name in self.target_modules.split(",") if name.strip()]

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def from_dict(cls, data: dict) -> TeachConfig:
        """Build from a dict, refusing unknown keys (a typo in a sweep grid or a hand-edited JSON)."""
        known = {item.name for item in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"unknown teach option(s) {', '.join(unknown)}",
                             f"known options: {', '.join(sorted(known))}")
        return cls(**data)

    @classmethod
    def load(cls, path) -> TeachConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def with_values(self, **changes) -> TeachConfig:
        """A copy with some options changed (values may be strings, as typed on a command line)."""
        data = self.to_dict()
        for key, value in changes.items():
            data[key] = coerce(key, value)
        return TeachConfig.from_dict(data)


def idle_cores() -> int:
    """CPU cores not already kept busy by other processes (at least 1): the torch thread count to use.

    With the cores busy, extra OpenMP threads spin-wait on each other: a training step ran 5-10x slower
    with two threads than with one at load 7, and batched evaluation 11 s/probe vs 1.5 s/probe."""
    cores = os.cpu_count() or 1
    return max(1, min(cores, cores - round(busy_cores(cores))))


def busy_cores(cores: int, seconds: float = 0.3) -> float:
    """Cores in use right now, from two reads of /proc/stat `seconds` apart.

    The load average would do where /proc is missing, but it trails by a minute: a run started just
    after a build or another run would take it as still busy and keep one thread for hours."""
    import time

    def ticks() -> tuple[int, int] | None:
        try:
            values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        except (OSError, ValueError):
            return None
        return sum(values), values[3] + (values[4] if len(values) > 4 else 0)  # all, idle + iowait

    first = ticks()
    if first is None:
        return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    time.sleep(seconds)
    second = ticks()
    total, idle = second[0] - first[0], second[1] - first[1]
    return cores * (total - idle) / total if total > 0 else 0.0


def coerce(name: str, value):
    """Convert a command-line string to the type of the TeachConfig field `name`."""
    types = {item.name: item.type for item in fields(TeachConfig)}
    if name not in types:
        raise InputError(f"unknown teach option {name!r}", f"known options: {', '.join(sorted(types))}")
    if not isinstance(value, str):
        return value
    kind = types[name]
    try:
        if kind in ("int", int):
            return int(value)
        if kind in ("float", float):
            return float(value)
        if kind in ("bool", bool):
            if value.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError(value)
            return value.lower() in ("1", "true", "yes")
    except ValueError:
        raise InputError(f"option {name}={value!r} is not a valid {kind}", f"give {name} a {kind} value") from None
    return value
