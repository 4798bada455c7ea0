"""impasto's model files: what ``impasto stylize --checkpoint`` and the packaged models load.

Two formats hold the same dict (``format: "impasto-model"``, ``method``, ``encoder``, ``depth``, the state dicts
``decoder`` / ``transform`` / ``encoder_state``, the layout keys, ``config``, ``step`` and an optional ``card``):

* ``.safetensors`` (shipped models): the state dicts as tensors named ``decoder.<key>``, ``transform.<key>``,
  ``encoder_state.<key>``; everything else as JSON in the file's metadata under ``"impasto"``. A copy of that JSON
  is written beside it as ``NAME.json`` for people to read (the loader reads the metadata).
* ``.pt`` (written by ``impasto train``): the dict itself, read with ``torch.load(weights_only=True)``.

The ``card`` says what the model is: ``scale`` (``"trained"`` or ``"smoke"`` for short test runs), data, steps,
hours, hardware, losses and measured quality. :func:`card_warning` turns a smoke-scale card into a warning.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from impasto.errors import WeightsError
from impasto.io.atomic import atomic_write

MODEL_FORMAT = "impasto-model"
TENSOR_GROUPS = ("decoder", "transform", "encoder_state", "skips")
#: A model file written by a run of fewer steps than this is marked ``scale: smoke`` in its card.
SMOKE_STEPS = 1000

#: Which training task writes the models a method can load, for messages about a checkpoint of the wrong kind.
TASK_OF_METHOD = {"adain": "adain", "sanet": "sanet", "iecontraast": "iecontraast",
                  "style-swap": "style-swap-inverse"}


def save_model(state: dict[str, Any], path: str | os.PathLike, card: dict[str, Any] | None = None) -> Path:
    """Write ``state`` (an impasto model dict) to ``path`` atomically, as safetensors or ``.pt`` by its suffix.

    ``card`` (optional) is stored as ``state["card"]``. For ``.safetensors`` the JSON also goes to ``NAME.json``.
    """
    from safetensors.torch import save as st_save

    path = Path(path)
    state = dict(state)
    if card is not None:
        state["card"] = card
    if path.suffix == ".safetensors":
        tensors, meta = {}, {}
        for k, v in state.items():
            if k in TENSOR_GROUPS and isinstance(v, dict):
                for name, t in v.items():
                    tensors[f"{k}.{name}"] = t.detach().to("cpu").contiguous()
            else:
                meta[k] = v
        text = json.dumps(meta, indent=1, sort_keys=False, default=str)
        data = st_save(tensors, metadata={"impasto": text})
        with atomic_write(path) as f:
            f.write(data)
        with atomic_write(path.with_suffix(".json"), "w") as f:
            f.write(text + "\n")
        return path
    with atomic_write(path) as f:
        torch.save(state, f)
    return path


def load_model(path: str | os.PathLike) -> dict[str, Any]:
    """Read an impasto model file (``.safetensors`` or ``.pt``); WeightsError naming the file if it cannot be read.

    A full training checkpoint (``RUN/checkpoints/step_N.pt``) gives the model state it holds.
    """
    p = Path(path)
    if not p.is_file():
        raise WeightsError(f"checkpoint {p} does not exist; check the path (or train one with 'impasto train')")
    if p.suffix == ".safetensors":
        return _load_safetensors(p)
    try:
        ck = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(f"cannot read checkpoint {p}: {first}. impasto reads model files written by "
                           "'impasto train' (model.pt or .safetensors) and the official release files") from None
    if not isinstance(ck, dict):
        raise WeightsError(f"{p} is not an impasto checkpoint (expected a dict of weights)")
    if "model" in ck and "modules" in ck and "optimizers" in ck:  # a full training checkpoint: its model file
        model = ck["model"]
        if not isinstance(model, dict) or "decoder" not in model:
            raise WeightsError(f"{p} is a training checkpoint without a model state; use RUN/model.pt instead")
        return model
    return ck


def _load_safetensors(p: Path) -> dict[str, Any]:
    from safetensors import safe_open

    try:
        with safe_open(str(p), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no iterator
    except Exception as exc:
        raise WeightsError(f"cannot read {p} as safetensors ({exc}); the file may be damaged: copy it again") \
            from None
    if "impasto" not in meta:
        raise WeightsError(f"{p} is a safetensors file without impasto's model description (metadata 'impasto'); "
                           "impasto reads the .safetensors files it writes itself")
    try:
        state = json.loads(meta["impasto"])
    except json.JSONDecodeError as exc:
        raise WeightsError(f"{p}: its model description is not valid JSON ({exc})") from None
    for key, t in tensors.items():
        group, _, name = key.partition(".")
        if group not in TENSOR_GROUPS or not name:
            raise WeightsError(f"{p}: unexpected tensor {key!r} (expected {', '.join(TENSOR_GROUPS)} groups)")
        state.setdefault(group, {})[name] = t
    return state


def average_models(states: list[dict[str, Any]]) -> dict[str, Any]:
    """The weight average of several impasto model dicts of one run (checkpoint averaging, as in SWA).

    Every state must be the same method, encoder and depth with the same tensor names and shapes in
    ``decoder`` / ``transform`` / ``encoder_state``; each tensor of the result is the float32 mean of the inputs'
    tensors, cast back to the last input's dtype. Everything else (layout keys, ``config``) is the last input's;
    ``step`` is the largest step and ``card`` is dropped (it described one file). WeightsError says what differs.
    """
    if not states:
        raise WeightsError("average_models: give at least one model file")
    ref = states[-1]
    for i, st in enumerate(states):
        for key in ("method", "encoder", "depth"):
            if st.get(key) != ref.get(key):
                raise WeightsError(f"average_models: model {i + 1} has {key} {st.get(key)!r}, the last has "
                                   f"{ref.get(key)!r}; average only snapshots of one run")
        for group in TENSOR_GROUPS:
            a, b = st.get(group) or {}, ref.get(group) or {}
            if set(a) != set(b) or any(tuple(a[k].shape) != tuple(b[k].shape) for k in a):
                raise WeightsError(f"average_models: model {i + 1}'s {group} tensors differ in names or shapes "
                                   "from the last model's; average only snapshots of one run")
    out = {k: v for k, v in ref.items() if k != "card"}
    for group in TENSOR_GROUPS:
        if ref.get(group):
            out[group] = {name: (sum(st[group][name].float() for st in states) / len(states)).to(t.dtype)
                          for name, t in ref[group].items()}
    out["step"] = max(int(st.get("step") or 0) for st in states)
    return out


def is_official_transformer(ck: dict[str, Any]) -> bool:
    """Is ``ck`` the state dict of an official SANet/IEContraAST ``transformer_iter_N.pth``?"""
    return any(str(k).startswith(("sanet4_1.", "sanet5_1.")) for k in ck)


def describe_model(ck: dict[str, Any]) -> str:
    """Short human description, e.g. ``an impasto sanet model (vgg19-16x relu4_1, 6000 steps)``."""
    if ck.get("format") != MODEL_FORMAT and "method" not in ck:
        if is_official_transformer(ck):
            return "an official SANet/IEContraAST transformer file (transformer_iter_N.pth)"
        return "a state dict that is not an impasto model file"
    steps = ck.get("step")
    return (f"an impasto {ck.get('method', '?')} model ({ck.get('encoder', '?')} {ck.get('depth', '?')}"
            f"{f', {steps} steps' if steps is not None else ''})")


def check_kind(ck: dict[str, Any], path: str | os.PathLike, method: str, accepted: Iterable[str]) -> None:
    """WeightsError if ``ck`` is an impasto model of another method: says what it is and which method it is for."""
    accepted = tuple(accepted)
    kind = ck.get("method")
    if kind is None or kind in accepted:
        return
    task = TASK_OF_METHOD.get(method, method)
    article = "an" if method[0] in "aeiou" else "a"
    raise WeightsError(f"{path} is {describe_model(ck)}, not {article} {method} model: run it with -m {kind} "
                       f"(or train {article} {method} model with 'impasto train {task}')")


def card_warning(ck: dict[str, Any], path: str | os.PathLike) -> str | None:
    """A warning when the file's own card says it is a smoke-scale (test-length) model, else None."""
    card = ck.get("card") or {}
    if card.get("scale") == "smoke":
        steps = card.get("steps", ck.get("step"))
        return (f"{path} is a smoke-scale model ({steps} training steps, made to test the training code): "
                "expect weak, noisy results. Use a fully trained model for real pictures.")
    return None


def default_card(step: int, config: dict[str, Any] | None) -> dict[str, Any]:
    """The card ``impasto train`` writes into its model files: smoke scale below :data:`SMOKE_STEPS` steps."""
    config = config or {}
    return {"scale": "smoke" if step < SMOKE_STEPS else "trained", "steps": int(step),
            "data": {"content": config.get("content_dir"), "style": config.get("style_dir"),
                     "holdout": config.get("holdout")}}
