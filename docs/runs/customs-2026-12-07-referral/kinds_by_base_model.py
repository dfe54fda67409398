"""Does the base model know the kinds of the held-out goods words? Gemma 3 270M (optionally with an adapter) scores
the seven kind words after two prompts for each of the 36 goods words of the fresh3-6 scripts: a few-shot list
("jamón: carne … {word}:") and an officer's echo ("Llevo {word}.\\n¿{Word}? Eso es"); the kind whose word has the
highest log-probability is its answer. `python kinds_by_base_model.py [ADAPTER]` prints the count and the misses
(about 4 minutes on 2 cores). On 2026-12-07 the base model was right for 22 (few-shot) and 16 (echo) of 36."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "customs-2026-12-07-words"))
from kinds_by_embedding import HELD_OUT  # the 36 words and their kinds, one list for both checks

from lorebook.models.loader import attach_adapters, load_model
from lorebook.models.registry import resolve_model

KIND_WORDS = {"meat": " carne", "alcohol": " alcohol", "tobacco": " tabaco", "fruit/plants": " fruta",
              "pet": " un animal", "cash": " dinero", "medicine": " un medicamento"}
FEW_SHOT = ("Control de aduanas. Tipos de mercancía:\njamón: carne\nvino: alcohol\ncigarrillos: tabaco\n"
            "manzanas: fruta\nperro: un animal\neuros: dinero\npastillas: un medicamento\n")
PROMPTS = {"few-shot": lambda word: FEW_SHOT + f"{word}:",
           "echo": lambda word: f"Llevo {word}.\n¿{word[0].upper() + word[1:]}? Eso es"}

spec = resolve_model("gemma3-270m")
model, tokenizer = load_model(spec)
if len(sys.argv) > 1:
    model = attach_adapters(model, spec, sys.argv[1:2])


def likeliest_kind(prefix: str) -> str:
    """The kind whose word the model finds likeliest after `prefix` (summed log-probabilities of its tokens)."""
    ids = tokenizer(prefix, return_tensors="pt").input_ids
    scores = {}
    with torch.no_grad():
        for kind, word in KIND_WORDS.items():
            word_ids = tokenizer(word, add_special_tokens=False, return_tensors="pt").input_ids
            logits = model(torch.cat([ids, word_ids], 1)).logits[0, :-1].float()
            logp = torch.log_softmax(logits, -1)
            scores[kind] = sum(logp[ids.shape[1] - 1 + i, token].item() for i, token in enumerate(word_ids[0]))
    return max(scores, key=scores.get)


for name, prompt in PROMPTS.items():
    misses = [f"{word} -> {guess}" for word, kind in HELD_OUT.items() if (guess := likeliest_kind(prompt(word))) != kind]
    print(f"{name}: right for {len(HELD_OUT) - len(misses)} of {len(HELD_OUT)}; misses: {', '.join(misses)}")
