"""Package IEContraAST stage 10 as the shipped ``iecontraast`` file: the model file given (250 IEContraAST steps from
the shipped SANet, stage 9), with SANet stage 9's card carried forward (steps, hours, hardware, note: the generator's
start) and this fine-tuning added, and the quality measured by ``scripts/eval_models.py``.

    python docs/models/iecontraast/cpu_s9/package.py RUNS/s25/ie/run/snapshots/model_250.pt
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT / "scripts"))
from package_model import portable, quality  # noqa: E402

from impasto.modelfile import load_model, save_model  # noqa: E402

SHIPPED = ROOT / "src" / "impasto" / "checkpoints" / "iecontraast_vgg19-16x_relu4_1.safetensors"
SANET = ROOT / "src" / "impasto" / "checkpoints" / "sanet_vgg19-16x_relu4_1.safetensors"
HERE = Path(__file__).parent
STAGE_HOURS = 1422.3 / 3600  # log.jsonl's elapsed at step 250 (2 threads at nice 19, beside CI and evaluations)
STAGE_STEPS = 250


def main() -> None:
    ck = load_model(sys.argv[1])
    sanet = load_model(SANET)["card"]
    cfg = ck["config"]
    cfg.update({k: portable(v) for k, v in cfg.items()})
    opts = {k: portable(v) for k, v in cfg["task_options"].items()}
    opts["init_checkpoint"] = "src/impasto/checkpoints/sanet_vgg19-16x_relu4_1.safetensors"  # SANet stage 9
    cfg["task_options"] = opts
    card = {
        "scale": "trained",
        "what": "impasto's iecontraast model on the vgg19-16x encoder (relu4_1)",
        "steps": sanet["steps"] + STAGE_STEPS,
        "hours": round(sanet["hours"] + STAGE_HOURS, 2),
        "hardware": f"SANet stages 1-9 (the generator's start): {sanet['hardware']} ({sanet['hours']} h, the SANet "
                    f"card); IEContraAST: 2 threads of an AMD EPYC at nice 19 (bf16 autocast), {STAGE_HOURS:.2f} h",
        "data": sanet["data"],
        "losses": opts,
        "lr": cfg["lr"],
        "note": (
            "IEContraAST (Chen et al. 2021) fine-tuning of impasto's shipped SANet: from SANet stage 9 (the shipped "
            f"sanet file, {sanet['steps']} steps, with its AdaIN skips at relu2_1 + relu3_1; the generator = SANet's "
            "transform, skips and decoder), 250 steps of the IEContraAST losses (session 25): the release's style "
            "contrastive and content contrastive losses (weights 1 and 0.3; the release's style contrastive weight "
            "is 0.3), identity 50 and 1, the adversarial loss of a new 3-scale discriminator on randomly flipped "
            "paintings (weight 2.5, ramped in over 200 steps; the release's is 5), with SANet stage 9's last content "
            "and style terms (content weight 3 on relu4_1 + relu5_1, style weight 8; the release's are 1 and 1), at "
            "lr 2e-5 for the generator and 1e-4 for the new discriminator and projection heads (task_options.aux_lr), "
            "batch 8, 256 px crops of the corpus at 512 px less the validation split. Shipped under a rule written "
            "before any snapshot was measured (docs/models/session25): against the previous IEContraAST (stage 9, "
            "from SANet stage 8) it keeps far more of the photo's edges and moves the style further with retrieval "
            "not measurably different. Hours are CPU and GPU hours added, the SANet stages included. SANet's card: "
            + sanet["note"]),
        "quality": quality(str(HERE / "quality.csv"), "ie9-250"),
    }
    ck.pop("card", None)
    path = save_model(ck, SHIPPED, card=card)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
