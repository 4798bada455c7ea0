#!/usr/bin/env bash
# Train impasto's models side by side on one lent GPU for a fixed wall-clock budget, then pack each run.
#
#   [RUNS="adain sanet"] bash scripts/train_on_gpu.sh SECONDS OUT [DEVICE] [STEPS]
#
# Needs the packed data and weights in .gpu/ (scripts/pack_training_data.py; .gpu/weights holds the
# weight files the tasks read) and python3 with torch, safetensors, typer, rich and Pillow. Each run
# is `impasto train`, started from .gpu/init/RUN.pt if there is one (an earlier lease's model file), else
# from the shipped model file where there is one (a new optimiser either way), stopped
# with SIGTERM after SECONDS (which writes a final checkpoint), and packed as OUT/RUN.tar.gz with its
# log, config, model file, last checkpoint (where it fits in 15 MB) and samples. DEVICE=cpu STEPS=2 is the local rehearsal.
set -u
secs=${1:?seconds}; out=${2:?out dir}; device=${3:-cuda}; steps=${4:-1000000}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" IMPASTO_WEIGHTS_DIR="$PWD/.gpu/weights" PYTHONUNBUFFERED=1
runs=$(mktemp -d); mkdir -p "$out"
ck=src/impasto/checkpoints
init() { if [ -f ".gpu/init/$1.pt" ]; then echo ".gpu/init/$1.pt"; else echo "$ck/$2.safetensors"; fi; }
common=(--content .gpu/data/photos --style .gpu/data/paintings --steps "$steps" --threads 2
        holdout=docs/models/validation_split.txt precision=bf16 device="$device" size=256 crop=256
        log_every=50 sample_every=2000 checkpoint_every=500 keep_checkpoints=1)
declare -A args=(
  [adain]="adain batch_size=16 task_options.style_loss=balanced task_options.init_checkpoint=$(init adain adain_vgg19-16x_relu4_1)"
  [sanet]="sanet batch_size=16 task_options.init_checkpoint=$(init sanet sanet_vgg19-16x_relu4_1)"
  [iecontraast]="iecontraast batch_size=16 task_options.init_checkpoint=$(init iecontraast iecontraast_vgg19-16x_relu4_1) task_options.gan_ramp_steps=500"
  [swapinv]="style-swap-inverse batch_size=8 task_options.photos=4 task_options.paintings=4"
  [refine]="refine-encoder batch_size=8 task_options.base=adain"
)
nvidia-smi --query-gpu=name,memory.total --format=csv 2>/dev/null
selected=${RUNS:-${!args[*]}}
workers=$(( 15 / $(wc -w <<<"$selected") )); [ "$workers" -gt 5 ] && workers=5
for run in $selected; do
  # shellcheck disable=SC2086
  timeout -s TERM "$secs" python3 -m impasto train ${args[$run]} --out "$runs/$run" "${common[@]}" num_workers=$workers \
    >"$runs/$run.log" 2>&1 &
done
wait
for run in $selected; do
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
