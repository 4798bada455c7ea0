#!/bin/bash
# balanced vs Gram AdaIN: same init (reconstruction decoder), seed, data, steps; only the style loss differs
export IMPASTO_WEIGHTS_DIR=/work/shared/weights
C=/work/shared/data/corpus
for loss in gram balanced; do
  impasto train adain --content $C/photos --style $C/paintings --out /work/runs/cmp_$loss --steps 2000 --threads 1 \
    holdout=/work/main/docs/models/validation_split.txt precision=bf16 batch_size=8 size=512 crop=128 \
    log_every=25 sample_every=1000 checkpoint_every=250 task_options.style_loss=$loss --resume
done
