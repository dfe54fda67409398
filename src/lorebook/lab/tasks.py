"""The two lab tasks: `sort` (integers in, sorted integers out) and `shakespeare` (next character).

Both give batches as (x_bt, y_bt) token tensors where y is x shifted by one and -1 marks positions that carry
no loss. Validation batches come from a fixed generator, so every evaluation (and every variant) is scored
on exactly the same data.

Sort layout, one sequence of length L: `a1 .. aL SEP s1 .. sL` (s = sorted a); loss only on s1..sL. A
sequence is *held out* when a fixed hash of its digits falls in the lowest 10% (`heldout_mask`): training
never samples those, evaluation only uses those, so accuracy is measured on sequences never trained on.
"""

from __future__ import annotations

import torch

from lorebook.lab.config import LabConfig

_VAL_SEED = 1234


def heldout_mask(seq_bl: torch.Tensor) -> torch.Tensor:
    """True for sequences in the held-out 10% (Horner hash mod 101 below 10)."""
    h_b = torch.zeros(seq_bl.shape[0], dtype=torch.long)
    for i in range(seq_bl.shape[1]):
        h_b = (h_b * 31 + seq_bl[:, i] + 1) % 101
    return h_b < 10


class SortTask:
    """Sort sequences of small integers; exact-match accuracy by length on held-out sequences."""

    def __init__(self, config: LabConfig):
        self.config = config
        self.sep = config.sort_vocab
        self.pad = config.sort_vocab + 1
        self.vocab_size = config.sort_vocab + 2
        self.train_lengths = config.train_lengths()
        self.eval_lengths = config.eval_lengths()
        self.meta = {"task": "sort", "vocab_size": self.vocab_size}

    def sample(self, n: int, length: int, generator: torch.Generator, heldout: bool) -> torch.Tensor:
        """n random sequences (n, length) from the training or the held-out class."""
        out = torch.empty(0, length, dtype=torch.long)
        while out.shape[0] < n:
            cand_nl = torch.randint(0, self.config.sort_vocab, (4 * n + 16, length), generator=generator)
            out = torch.cat([out, cand_nl[heldout_mask(cand_nl) == heldout]])
        return out[:n]

    def get_batch(self, split: str, batch_size: int, generator: torch.Generator):
        width = 2 * max(self.train_lengths)
        x_bt = torch.full((batch_size, width), self.pad, dtype=torch.long)
        y_bt = torch.full((batch_size, width), -1, dtype=torch.long)
        pick_b = torch.randint(0, len(self.train_lengths), (batch_size,), generator=generator)
        for choice, length in enumerate(self.train_lengths):
            rows = (pick_b == choice).nonzero().flatten()
            if len(rows) == 0:
                continue
            a_nl = self.sample(len(rows), length, generator, heldout=(split == "val"))
            full_nt = torch.cat([a_nl, torch.full((len(rows), 1), self.sep), a_nl.sort(dim=1).values], dim=1)
            x_bt[rows, : 2 * length] = full_nt[:, :-1]
            y_bt[rows, length : 2 * length] = full_nt[:, length + 1 :]
        return x_bt, y_bt

    @torch.no_grad()
    def accuracy(self, model, device: torch.device) -> dict[str, float]:
        """Greedy exact-match accuracy on the held-out set of each eval length."""
        scores = {}
        for length in self.eval_lengths:
            gen = torch.Generator().manual_seed(_VAL_SEED + length)
            a_nl = self.sample(self.config.sort_eval_count, length, gen, heldout=True)
            prompt_nt = torch.cat([a_nl, torch.full((len(a_nl), 1), self.sep)], dim=1).to(device)
            out_nt = model.generate(prompt_nt, length, temperature=0)[:, length + 1 :].cpu()
            exact = (out_nt == a_nl.sort(dim=1).values).all(dim=1).float().mean().item()
            scores[f"acc_len{length}"] = exact
        seen = [scores[f"acc_len{n}"] for n in self.eval_lengths if n in self.train_lengths]
        unseen = [scores[f"acc_len{n}"] for n in self.eval_lengths if n not in self.train_lengths]
        if seen:
            scores["acc_seen"] = sum(seen) / len(seen)
        if unseen:
            scores["acc_unseen"] = sum(unseen) / len(unseen)
        return scores

    def encode(self, text: str) -> list[int]:
        return [int(tok) for tok in text.replace(",", " ").split()]

    def decode(self, tokens: list[int]) -> str:
        names = {self.sep: "|", self.pad: "_"}
        return " ".join(names.get(t, str(t)) for t in tokens)


class ShakespeareTask:
    """Character-level language modelling on the cached Shakespeare corpus (see corpus.py for the split)."""

    def __init__(self, config: LabConfig, vocab: str | None = None, load_data: bool = True):
        from lorebook.lab import corpus

        self.config = config
        self.data: dict[str, torch.Tensor] = {}
        if load_data or vocab is None:
            train_text, val_text, corpus_vocab = corpus.load_split(config.corpus_dir or None)
            vocab = vocab or corpus_vocab
        self.vocab = vocab
        self.index = {ch: i for i, ch in enumerate(self.vocab)}
        self.vocab_size = len(self.vocab)
        if load_data:
            self.data = {"train": self._tensor(train_text), "val": self._tensor(val_text)}
        self.meta = {"task": "shakespeare", "vocab_size": self.vocab_size, "vocab": self.vocab}

    def _tensor(self, text: str) -> torch.Tensor:
        return torch.tensor(self.encode(text), dtype=torch.uint8 if self.vocab_size < 256 else torch.long)

    def get_batch(self, split: str, batch_size: int, generator: torch.Generator):
        data_n = self.data[split]
        t = self.config.block_size
        start_b = torch.randint(0, len(data_n) - t - 1, (batch_size,), generator=generator)
        offsets_bt = start_b[:, None] + torch.arange(t + 1)
        window_bt = data_n[offsets_bt].long()
        return window_bt[:, :-1], window_bt[:, 1:]

    @torch.no_grad()
    def full_val_loss(self, model, device: torch.device, batch_size: int = 64) -> float:
        """Mean loss over the whole validation split, cut into non-overlapping block_size windows."""
        data_n = self.data["val"].long()
        t = self.config.block_size
        windows = (len(data_n) - 1) // t
        x_wt = data_n[: windows * t].view(windows, t)
        y_wt = data_n[1 : windows * t + 1].view(windows, t)
        total = 0.0
        for i in range(0, windows, batch_size):
            _, loss = model(x_wt[i : i + batch_size].to(device), y_wt[i : i + batch_size].to(device))
            total += loss.item() * len(x_wt[i : i + batch_size])
        return total / windows

    def encode(self, text: str) -> list[int]:
        unknown = sorted(set(text) - set(self.index))
        if unknown:
            from lorebook.errors import InputError

            raise InputError(
                f"characters not in the vocabulary: {''.join(unknown)!r}", "remove them from the prompt"
            )
        return [self.index[ch] for ch in text]

    def decode(self, tokens: list[int]) -> str:
        return "".join(self.vocab[t] for t in tokens)


def make_task(config: LabConfig, meta: dict | None = None, load_data: bool = True):
    """The task named by the config; `meta` from a checkpoint pins the vocabulary (and makes the corpus
    unnecessary when load_data is False, e.g. for sampling)."""
    if config.task == "sort":
        return SortTask(config)
    return ShakespeareTask(config, vocab=(meta or {}).get("vocab"), load_data=load_data)
