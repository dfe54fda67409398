"""Teach a local model new facts or behaviour with LoRA: packs, rendering, training, adapters."""

from lorebook.teach.pack import Fact, load_pack

__all__ = ["Fact", "load_pack"]
