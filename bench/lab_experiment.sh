#!/usr/bin/env bash
# The lab's GPU experiment in one go (docs/benchmarks.md (Lab) has its results). Run from the repo root on a
# machine with a CUDA GPU and >= 12 cores, with the corpus cached in .labdata/shakespeare:
#   OUT=/tmp/lab-out PYTHONPATH=src bash bench/lab_experiment.sh
# Parts run at the same time: the CPU goals pinned to two cores each (2 torch threads, like the 2-core dev
# machine), and the GPU runs as separate processes sharing the GPU. Each part has a time limit, so partial
# results still come back; everything lands in $OUT as JSON, markdown and PNG.
set -u
OUT=${OUT:?set OUT}
CORPUS=.labdata/shakespeare
preset() { python3 -c "import json,sys; from lorebook.lab.config import PRESETS; print(json.dumps({**PRESETS[sys.argv[1]], **json.loads(sys.argv[2])}))" "$1" "$2"; }
preset sort-cpu '{"device":"cpu","threads":2}' > $OUT/sort-cpu.json
preset shakespeare-cpu "{\"device\":\"cpu\",\"threads\":2,\"corpus_dir\":\"$CORPUS\",\"max_minutes\":${SH_CPU_MINUTES:-7.0}}" > $OUT/sh-cpu.json
preset shakespeare-gpu "{\"device\":\"cuda\",\"threads\":1,\"corpus_dir\":\"$CORPUS\"}" > $OUT/sh-gpu.json
LIMIT=${LIMIT:-500}
# CPU goals
timeout $LIMIT taskset -c 0,1 python3 -m lorebook.lab.train --out $OUT/goal-sort-cpu --config $OUT/sort-cpu.json --no-progress > $OUT/goal-sort-cpu.log 2>&1 &
timeout $LIMIT taskset -c 2,3 python3 -m lorebook.lab.train --out $OUT/goal-sh-cpu --config $OUT/sh-cpu.json --no-progress > $OUT/goal-sh-cpu.log 2>&1 &
# GPU goal: nanoGPT-sized model, 5000 iterations
timeout $LIMIT taskset -c 4 python3 -m lorebook.lab.train --out $OUT/goal-sh-gpu --config $OUT/sh-gpu.json --no-progress > $OUT/goal-sh-gpu.log 2>&1 &
# Comparisons on the GPU, 3 seeds, equal budget, plus metric-shared at dot's parameter count
COMMON="--set device=cuda --set threads=1 --seeds 0,1,2 --match-params"
timeout $LIMIT taskset -c 5-10 python3 -m lorebook.lab.compare --out $OUT/cmp-shakespeare --parallel 4 $COMMON \
  --set corpus_dir=$CORPUS --set n_layer=6 --set n_head=6 --set n_embd=384 --set block_size=256 --set batch_size=64 \
  --set lr=1e-3 --set max_iters=${SH_CMP_ITERS:-1200} --set warmup_iters=100 --set eval_interval=200 --set eval_iters=50 \
  --variant dot:attention=dot --variant metric-full:attention=metric,metric_form=full \
  --variant metric-shared:attention=metric-shared > $OUT/cmp-shakespeare.log 2>&1 &
timeout $LIMIT taskset -c 11-15 python3 -m lorebook.lab.compare --out $OUT/cmp-sort --parallel 4 $COMMON \
  --set task=sort --set n_layer=2 --set n_head=4 --set n_embd=128 --set block_size=20 --set batch_size=64 \
  --set lr=3e-3 --set max_iters=${SORT_CMP_ITERS:-2000} --set eval_interval=250 > $OUT/cmp-sort.log 2>&1 &
wait
for d in cmp-shakespeare cmp-sort; do python3 -c "from lorebook.lab.compare import summarize; import sys; summarize(__import__('pathlib').Path(sys.argv[1]))" $OUT/$d >> $OUT/$d.log 2>&1; done
find $OUT -name 'ckpt.pt' -delete; find $OUT -name '*.tmp' -delete
tar czf $OUT/runs.tar.gz -C $OUT --exclude runs.tar.gz goal-sort-cpu goal-sh-cpu goal-sh-gpu cmp-shakespeare cmp-sort *.log *.json 2>/dev/null
tail -n 20 $OUT/*.log
