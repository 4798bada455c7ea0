#!/usr/bin/env bash
# Train impasto's models side by side on one lent GPU for a fixed wall-clock budget, then pack each run.
#
#   bash scripts/train_on_gpu.sh SECONDS OUT [DEVICE] [STEPS]
#
# Needs the packed data and weights in .gpu/ (scripts/pack_training_data.py; .gpu/weights holds the
# weight files the tasks read) and python3 with torch, safetensors, typer, rich and Pillow. Each run
# is `impasto train`, resumed from the shipped model file where there is one (a new optimiser), stopped
# with SIGTERM after SECONDS (which writes a final checkpoint), and packed as OUT/RUN.tar.gz with its
# log, config, model file, last checkpoint (where it fits in 15 MB) and samples. DEVICE=cpu STEPS=2 is the local rehearsal.
set -u
secs=${1:?seconds}; out=${2:?out dir}; device=${3:-cuda}; steps=${4:-1000000}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" IMPASTO_WEIGHTS_DIR="$PWD/.gpu/weights" PYTHONUNBUFFERED=1
runs=$(mktemp -d); mkdir -p "$out"
ck=src/impasto/checkpoints
common=(--content .gpu/data/photos --style .gpu/data/paintings --steps "$steps" --threads 2
        holdout=docs/models/validation_split.txt precision=bf16 device="$device" size=256 crop=256
        num_workers=3 log_every=50 sample_every=2000 checkpoint_every=500 keep_checkpoints=1)
declare -A args=(
  [adain]="adain batch_size=16 task_options.style_loss=balanced task_options.init_checkpoint=$ck/adain_vgg19-16x_relu4_1.safetensors"
  [sanet]="sanet batch_size=16 task_options.init_checkpoint=$ck/sanet_vgg19-16x_relu4_1.safetensors"
  [iecontraast]="iecontraast batch_size=16 task_options.init_checkpoint=$ck/iecontraast_vgg19-16x_relu4_1.safetensors task_options.gan_ramp_steps=500"
  [swapinv]="style-swap-inverse batch_size=8 task_options.photos=4 task_options.paintings=4"
  [refine]="refine-encoder batch_size=8 task_options.base=adain"
)
nvidia-smi --query-gpu=name,memory.total --format=csv 2>/dev/null
for run in "${!args[@]}"; do
  # shellcheck disable=SC2086
  timeout -s TERM "$secs" python3 -m impasto train ${args[$run]} --out "$runs/$run" "${common[@]}" \
    >"$runs/$run.log" 2>&1 &
done
wait
for run in "${!args[@]}"; do
  echo "== $run: $(grep -c '' "$runs/$run.log") log lines"; tail -n 4 "$runs/$run.log"
  cp "$runs/$run.log" "$runs/$run/console.log" 2>/dev/null
  tar -C "$runs" -czf "$out/$run.tar.gz" --exclude='*/checkpoints/step_*' "$run"
  # at most 16 MiB a file comes back: a run whose checkpoint is larger (IEContraAST's discriminator)
  # comes back without it, and its model file restarts the next run
  if [ "$(stat -c %s "$out/$run.tar.gz")" -gt 15000000 ]; then
    tar -C "$runs" -czf "$out/$run.tar.gz" --exclude='*/checkpoints' "$run"
  fi
done
ls -la "$out"
