"""Ship a trained model inside the package: RUN/model.pt -> src/impasto/checkpoints/NAME.safetensors + NAME.json.

The card (stored in the file and in the JSON beside it) records what the model is: method, encoder, data and
holdout, steps, training hours and hardware (summed over the given ``log.jsonl`` files, one per run/stage), the
losses and their weights (from the run's config), how the stages chained, and the measured quality (medians of
``scripts/eval_models.py``'s quality.csv for ``--label``).

    python scripts/package_model.py /work/runs/sanet256/model.pt --log /work/runs/sanet128/log.jsonl \\
        --log /work/runs/sanet256/log.jsonl --quality docs/models/quality.csv --label sanet \\
        --note "128 px crops, then 256 px"
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
from collections.abc import Callable
from pathlib import Path

from impasto.hardware import cpu_name
from impasto.modelfile import load_model, save_model

ROOT = Path(__file__).resolve().parents[1]


def run_hours(logs: list[str]) -> tuple[float, int]:
    """(hours, steps) over the logs: each log's last ``elapsed`` and last ``step``, summed."""
    hours, steps = 0.0, 0
    for log in logs:
        last = None
        for line in Path(log).read_text().splitlines():
            if line.strip():
                rec = json.loads(line)
                if "elapsed" in rec:
                    last = rec
        if last:
            hours += last["elapsed"] / 3600
            steps += int(last["step"])
    return hours, steps


def portable(value: object) -> object:
    """A path of this machine as the card should keep it: relative to the repository (``../`` for its siblings,
    e.g. ``../shared/data/...``), so a shipped file names no machine's directories; other values unchanged."""
    if not isinstance(value, str) or not Path(value).is_absolute():
        return value
    for base, prefix in ((ROOT, ""), (ROOT.parent, "../")):
        try:
            return prefix + Path(value).resolve().relative_to(base).as_posix()
        except ValueError:
            continue
    return value


def portable_config(ck: dict) -> dict:
    """The model file's run config with its paths made :func:`portable` (task_options too), in place; returned."""
    cfg = ck.setdefault("config", {})
    cfg.update({k: portable(v) for k, v in cfg.items()})
    cfg["task_options"] = {k: portable(v) for k, v in cfg.get("task_options", {}).items()}
    return cfg


def write_shipped(ck: dict, path: Path, card: dict) -> Path:
    """Save the model file ``ck`` with ``card`` (and its JSON beside it) at ``path``, replacing any card it had."""
    ck.pop("card", None)
    path = save_model(ck, path, card=card)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
    return path


#: The shipped SANet file: the start of every IEContraAST fine-tuning since session 25.
SHIPPED_SANET = ROOT / "src" / "impasto" / "checkpoints" / "sanet_vgg19-16x_relu4_1.safetensors"


def iecontraast_card(ck: dict, stage_steps: int, stage_hours: float, note: Callable[[dict], str],
                     quality_of: dict, **extra: object) -> dict:
    """The card of an IEContraAST model fine-tuned from the shipped SANet (``SHIPPED_SANET``): SANet's card carried
    forward (steps, hours, hardware, data, note) with the ``stage_steps`` / ``stage_hours`` of IEContraAST added.

    ``ck``'s config is made portable and its ``init_checkpoint`` names the SANet file; ``note(sanet_card)`` is this
    stage's text, followed by SANet's note; ``extra`` keys (e.g. ``averaged``) go before the note.
    """
    sanet = load_model(SHIPPED_SANET)["card"]
    cfg = portable_config(ck)
    opts = cfg["task_options"]
    opts["init_checkpoint"] = portable(str(SHIPPED_SANET))
    return {
        "scale": "trained",
        "what": f"impasto's {ck['method']} model on the {ck['encoder']} encoder ({ck['depth']})",
        "steps": sanet["steps"] + stage_steps,
        "hours": round(sanet["hours"] + stage_hours, 2),
        "hardware": f"SANet stages 1-9 (the generator's start): {sanet['hardware']} ({sanet['hours']} h, the SANet "
                    f"card); IEContraAST: 2 threads of an AMD EPYC at nice 19 (bf16 autocast), {stage_hours:.2f} h",
        "data": sanet["data"],
        "losses": opts,
        "lr": cfg["lr"],
        **extra,
        "note": note(sanet) + " SANet's card: " + sanet["note"],
        "quality": quality_of,
    }


def quality(csv_path: str, label: str) -> dict[str, float]:
    all_rows = [r for r in csv.DictReader(open(csv_path)) if r["model"] == label]
    rows = [r for r in all_rows if r.get("moved")]
    video = [float(r["warping_error"]) for r in all_rows if r.get("warping_error")]
    if not rows:
        raise SystemExit(f"no rows for model {label!r} in {csv_path}")
    out = {"pairs": len(rows), "size": 512, "split": "docs/models/validation_split.txt",
           **{k: round(statistics.median(float(r[k]) for r in rows), 4) for k in ("moved", "edges", "grid")},
           "retrieval_top1": round(sum(int(r["retrieval_rank"]) == 0 for r in rows) / len(rows), 4)}
    if video:
        out["warping_error"] = round(statistics.median(video), 5)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--name", help="file stem (default METHOD_ENCODER_DEPTH)")
    ap.add_argument("--log", action="append", default=[])
    ap.add_argument("--threads", type=int, default=1, help="CPU threads each run used")
    ap.add_argument("--quality")
    ap.add_argument("--label")
    ap.add_argument("--note", default="")
    ap.add_argument("--hardware", help="what the runs ran on (default: this machine's CPU, the thread count and the "
                                       "precision)")
    ap.add_argument("--out-dir", default=str(ROOT / "src" / "impasto" / "checkpoints"))
    args = ap.parse_args()
    ck = load_model(args.model)
    cfg = portable_config(ck)
    hours, steps = run_hours(args.log)
    card = {
        "scale": "trained",
        "what": f"impasto's {ck['method']} model on the {ck['encoder']} encoder ({ck['depth']})",
        "steps": steps or ck.get("step"),
        "hours": round(hours, 2),
        "hardware": args.hardware or (f"{args.threads} thread(s) of an {cpu_name()}, "
                                      f"{'bf16 autocast' if cfg.get('precision') == 'bf16' else 'float32'}"),
        "data": {"content": cfg.get("content_dir"), "style": cfg.get("style_dir"), "holdout": cfg.get("holdout"),
                 "size": cfg.get("size"), "crop": cfg.get("crop"), "batch_size": cfg.get("batch_size")},
        "losses": cfg.get("task_options", {}),
        "lr": cfg.get("lr"),
        "note": args.note,
    }
    if args.quality:
        card["quality"] = quality(args.quality, args.label or ck["method"])
    name = args.name or f"{ck['method']}_{ck['encoder']}_{ck['depth']}"
    write_shipped(ck, Path(args.out_dir) / f"{name}.safetensors", card)


if __name__ == "__main__":
    main()
