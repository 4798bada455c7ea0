"""Package SANet stage 9 as the shipped ``sanet`` file: the model file given, with stage 8's card carried forward
(steps, hours, hardware, note) and this stage added, and the quality measured by ``scripts/eval_models.py``.

    python docs/models/sanet/cpu_skips/package.py RUNS/kf/run/snapshots/model_1000.pt
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT / "scripts"))
from package_model import portable_config, quality, write_shipped  # noqa: E402

from impasto.modelfile import load_model  # noqa: E402

SHIPPED = ROOT / "src" / "impasto" / "checkpoints" / "sanet_vgg19-16x_relu4_1.safetensors"
HERE = Path(__file__).parent
STAGE_HOURS = 3956.1 / 3600  # the joined log's elapsed at step 1000 (log.jsonl; 1 thread, beside another run)
STAGE_STEPS = 1000


def main() -> None:
    ck = load_model(sys.argv[1])
    old = load_model(SHIPPED)["card"]
    if "Stage 9 (session 24)" in old["note"]:  # the card it extends must be stage 8's (the file before it shipped)
        raise SystemExit(f"{SHIPPED} already is stage 9; restore stage 8's file first: git checkout ff63ff1~1 -- "
                         "src/impasto/checkpoints/sanet_vgg19-16x_relu4_1.safetensors "
                         "src/impasto/checkpoints/sanet_vgg19-16x_relu4_1.json")
    cfg = portable_config(ck)
    card = dict(old)
    card.update({
        "steps": old["steps"] + STAGE_STEPS,
        "hours": round(old["hours"] + STAGE_HOURS, 2),
        "hardware": old["hardware"] + f"; stage 9: 1 thread of an AMD EPYC at nice 19 beside another run (bf16 "
                                      f"autocast), {STAGE_HOURS:.2f} h",
        "losses": cfg["task_options"],
        "lr": cfg["lr"],
        "note": old["note"] + (
            " Stage 9 (session 24): AdaIN skip connections at relu2_1 + relu3_1 (task_options.skip_layers; not in "
            "the papers: the photo's features AdaIN'ed to the painting's statistics enter the decoder through "
            "zero-initialised 1x1 convs), from stage 8's model file, lr 3e-5, 1000 steps of 256 px crops (batch 8) "
            "in four exact branches: 250 with an edge loss (weight 10) at style 0.6 and content 3 on relu2_1..relu5_1, "
            "250 without the edge loss at style 2 with content 3 on relu4_1 + relu5_1, 250 at style 5, 250 at "
            "style 8 (docs/models/sanet/cpu_skips). Shipped because on 288 pairs no run chose on it keeps far more "
            "of the photo's edges than stage 8 and magenta with the style moved as far and retrieved as often "
            "(docs/models/session24)."),
        "quality": quality(str(HERE / "quality.csv"), "sanet-skips"),
    })
    write_shipped(ck, SHIPPED, card)


if __name__ == "__main__":
    main()
