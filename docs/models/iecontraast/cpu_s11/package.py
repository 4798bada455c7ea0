"""Package IEContraAST stage 12 as the shipped ``iecontraast`` file: the weight average of stage 10 (500 IEContraAST
steps from the shipped SANet stage 9; ``../cpu_s9/model.pt``) and stage 11 (the same run continued 200 steps with the
style weight 3; ``../cpu_s10/model.pt``), with SANet stage 9's card carried forward and the quality measured by
``scripts/eval_models.py``.

    python docs/models/iecontraast/cpu_s11/package.py
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT / "scripts"))
from package_model import iecontraast_card, quality, write_shipped  # noqa: E402

from impasto.modelfile import average_models, load_model  # noqa: E402

SHIPPED = ROOT / "src" / "impasto" / "checkpoints" / "iecontraast_vgg19-16x_relu4_1.safetensors"
HERE = Path(__file__).parent
STAGE10, STAGE11 = HERE.parent / "cpu_s9" / "model.pt", HERE.parent / "cpu_s10" / "model.pt"
#: log.jsonl's elapsed at step 700 of the run both averaged models come from (stage 11's log): 2 threads at nice 19
STAGE_HOURS = 3417.8 / 3600
STAGE_STEPS = 700


def main() -> None:
    states = [load_model(STAGE10), load_model(STAGE11)]
    if [s.get("step") for s in states] != [500, STAGE_STEPS]:
        raise SystemExit(f"expected stage 10 (step 500) and stage 11 (step 700), found steps "
                         f"{[s.get('step') for s in states]} in {STAGE10} and {STAGE11}")
    ck = average_models(states)
    card = iecontraast_card(
        ck, STAGE_STEPS, STAGE_HOURS,
        lambda sanet: (
            "IEContraAST (Chen et al. 2021) fine-tuning of impasto's shipped SANet, stage 12: the equal weight "
            "average of two checkpoints of one IEContraAST run from SANet stage 9 (the shipped sanet file, "
            f"{sanet['steps']} steps, with its AdaIN skips at relu2_1 + relu3_1; the generator = SANet's transform, "
            "skips and decoder): step 500 (style weight 8, session 25's stage 10) and step 700 (200 more steps "
            "with the style weight 3, session 26's stage 11). The losses: the release's style contrastive and "
            "content contrastive losses (weights 1 and 0.3), identity 50 and 1, the adversarial loss of a 3-scale "
            "discriminator on randomly flipped paintings (weight 2.5, ramped in over 200 steps; the release's is 5), "
            "content weight 3 on relu4_1 + relu5_1, lr 2e-5 for the generator and 1e-4 for the discriminator and "
            "heads, batch 8, 256 px crops of the corpus at 512 px less the validation split; 'losses' lists the "
            "last 200 steps' terms. Shipped under rules written before the runs they judge (docs/models/session26): "
            "on 276 validation pairs and 48 clip-painting pairs that no model had been measured on, it is better "
            "than the shipped SANet, its start, on all three of the paper's claims: it retrieves its painting more "
            "often (48 vs 17 pairs, p = 4e-4), keeps more of the photo's edges (168/276 pairs, p = 0.006; 0.714 vs "
            "0.710) and its video is steadier (34/48, p = 7e-5). Hours are CPU and GPU hours added, the SANet "
            "stages included."),
        quality(str(HERE / "quality.csv"), "mix"),
        averaged={"files": ["docs/models/iecontraast/cpu_s9/model.pt", "docs/models/iecontraast/cpu_s10/model.pt"],
                  "steps": [500, 700], "weights": [0.5, 0.5]},
    )
    write_shipped(ck, SHIPPED, card)


if __name__ == "__main__":
    main()
