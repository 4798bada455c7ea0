"""Average the weights of several model files of one training run (checkpoint averaging, as in SWA).

Runs here fluctuate from one checkpoint to the next (docs/models.md); the mean of a few late snapshots is often
steadier than any one of them. Every file must be the same method, encoder and depth; the output is a model file
(``.pt`` or ``.safetensors``) whose card lists the averaged steps, loadable by ``impasto stylize --checkpoint`` and
``scripts/eval_models.py``:

    python scripts/average_models.py runs/sanet/snapshots/model_{2000,2250,2500}.pt -o runs/sanet/avg.pt
"""

from __future__ import annotations

import argparse
import sys

from impasto.errors import ImpastoError
from impasto.modelfile import average_models, default_card, load_model, save_model


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="model files (RUN/model.pt snapshots or .safetensors) of one run")
    ap.add_argument("-o", "--out", required=True, help="output model file (.pt or .safetensors)")
    args = ap.parse_args(argv)
    try:
        states = [load_model(m) for m in args.models]
        avg = average_models(states)
        card = default_card(avg["step"], avg.get("config"))
        card["averaged"] = {"files": list(args.models), "steps": [int(s.get("step") or 0) for s in states]}
        save_model(avg, args.out, card=card)
    except ImpastoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: cannot write {args.out}: {exc.strerror or exc}; choose a writable output path", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: mean of {len(states)} models (steps {card['averaged']['steps']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
