"""Package IEContraAST stage 11 as the shipped ``iecontraast`` file: the model file given (stage 10, i.e. 500
IEContraAST steps from the shipped SANet stage 9, then 200 steps with the style weight 3), with SANet stage 9's card
carried forward (steps, hours, hardware, note: the generator's start) and the 700 IEContraAST steps added, and the
quality measured by ``scripts/eval_models.py``.

    python docs/models/iecontraast/cpu_s10/package.py RUNS/s26/ies3/run/checkpoints/step_0000700.pt
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT / "scripts"))
from package_model import iecontraast_card, quality, write_shipped  # noqa: E402

from impasto.modelfile import load_model  # noqa: E402

SHIPPED = ROOT / "src" / "impasto" / "checkpoints" / "iecontraast_vgg19-16x_relu4_1.safetensors"
HERE = Path(__file__).parent
#: log.jsonl's elapsed at step 700: stage 10's 500 steps (2733 s) and this stage's 200, 2 threads at nice 19
#: beside evaluations.
STAGE_HOURS = 3417.8 / 3600
STAGE_STEPS = 700


def main() -> None:
    ck = load_model(sys.argv[1])
    if ck.get("method") != "iecontraast" or int(ck.get("step") or 0) != STAGE_STEPS:
        raise SystemExit(f"{sys.argv[1]} is not the iecontraast run's step {STAGE_STEPS} (method "
                         f"{ck.get('method')!r}, step {ck.get('step')!r}); give RUN/checkpoints/step_0000700.pt")
    card = iecontraast_card(
        ck, STAGE_STEPS, STAGE_HOURS,
        lambda sanet: (
            "IEContraAST (Chen et al. 2021) fine-tuning of impasto's shipped SANet: from SANet stage 9 (the shipped "
            f"sanet file, {sanet['steps']} steps, with its AdaIN skips at relu2_1 + relu3_1; the generator = SANet's "
            "transform, skips and decoder), 700 steps of the IEContraAST losses: 500 with the style weight 8 "
            "(stage 10, session 25), then 200 with the style weight 3 (stage 11, session 26; the optimiser and data "
            "streams carried on). The losses: the release's style contrastive and content contrastive losses "
            "(weights 1 and 0.3; the release's style contrastive weight is 0.3), identity 50 and 1, the "
            "adversarial loss of a 3-scale discriminator on randomly flipped paintings (weight 2.5, ramped in over "
            "the first 200 steps; the release's is 5), content weight 3 on relu4_1 + relu5_1 (the release's is 1), "
            "lr 2e-5 for the generator and 1e-4 for the discriminator and projection heads (task_options.aux_lr), "
            "batch 8, 256 px crops of the corpus at 512 px less the validation split. Shipped under rules written "
            "before the runs they judge (docs/models/session26): on 275 validation pairs and 48 clip-painting "
            "pairs that no model had been measured on, it keeps more of the photo's edges than the shipped SANet, "
            "its start (240 vs 35 pairs, 0.744 vs 0.712) and its video is steadier (42 of 48 clip pairs, p = 8e-9: "
            "the paper's video claim); retrieval of the painting is not measurably different (40 vs 30 pairs, "
            "p = 0.95). Against stage 10 it keeps more edges (275/275) and is steadier (44/48) but retrieves less "
            "often (17 vs 41 pairs, p = 2e-4). Hours are CPU and GPU hours added, the SANet stages included."),
        quality(str(HERE / "quality.csv"), "ies3-700"),
    )
    write_shipped(ck, SHIPPED, card)


if __name__ == "__main__":
    main()
