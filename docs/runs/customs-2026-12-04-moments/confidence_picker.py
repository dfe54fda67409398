"""Experiment (2026-12-04, not shipped): moments picking plus the persona model's own confidence.

Each candidate's score becomes the moments fit + WEIGHT x its mean token log-probability under the persona's
torch model (one padded forward pass per turn). Runs `lorebook eval persona` with that picker:

    python confidence_picker.py 0.3 picks.jsonl eval persona --persona P.yaml --scenario … -o eval.json

and writes every turn's candidates, fits, confidences and both picks to picks.jsonl. Read blind it gave 44 and
47 of 60 in role (customs-es7, customs-es7b) against 45 and 45 for moments alone (docs/customs-officer.md, "Best of six").
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch

from lorebook.chat import moments

WEIGHT = float(sys.argv.pop(1))
LOG = Path(sys.argv.pop(1))


def confidence(engine, messages, candidates):
    """Mean log-probability per token of each candidate reply after `messages` (end-of-turn tokens included)."""
    prompt = engine.encode_prompt(engine.render(messages))
    rows = [engine.encode_prompt(engine.render([*messages, {"role": "assistant", "content": text}],
                                               add_generation_prompt=False)) for text in candidates]
    width, pad = max(map(len, rows)), engine.tokenizer.pad_token_id or 0
    ids = torch.tensor([row + [pad] * (width - len(row)) for row in rows])
    mask = torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in rows])
    with torch.inference_mode():
        logp = engine.model(input_ids=ids, attention_mask=mask).logits.float().log_softmax(-1)
    means = []
    for index, row in enumerate(rows):
        target = torch.tensor(row[len(prompt):])
        means.append(logp[index, len(prompt) - 1:len(row) - 1].gather(1, target[:, None]).mean().item())
    return np.array(means)


def picked_replies(engine, conversations, options, config):
    """moments.picked_replies with the confidence term added to each candidate's score."""
    picker = moments.picker_for(config)
    found = moments.candidate_replies(engine, conversations, options, config)
    picks = []
    for messages, candidates in zip(conversations, found):
        fit = picker.scores(messages, candidates)
        sure = confidence(engine, messages, candidates)
        best = int(np.argmax(fit + WEIGHT * sure))
        record = json.dumps({"before": messages[1:], "candidates": candidates, "fit": fit.tolist(),
                             "confidence": sure.tolist(), "pick": best, "moments_pick": int(np.argmax(fit))},
                            ensure_ascii=False)
        with LOG.open("a", encoding="utf-8") as log:
            log.write(record + "\n")
        picks.append(candidates[best])
    return picks


moments.picked_replies = picked_replies
from lorebook.cli.main import app  # after the patch, so eval persona picks with it

app(sys.argv[1:])
