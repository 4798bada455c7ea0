"""Pieces shared by impasto's training tasks: typed task options, the model file, image (de)normalisation."""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from impasto.backbones import BACKBONES, LEVELS
from impasto.decoders.vgg import VGGDecoder
from impasto.errors import ConfigError
from impasto.io.atomic import atomic_write
from impasto.modelfile import default_card
from impasto.training.config import TrainConfig
from impasto.transforms.skips import AdaINSkips

MODEL_FORMAT = "impasto-model"
MODEL_FILE = "model.pt"


def task_options(config: TrainConfig, defaults: Mapping[str, Any], choices: Mapping[str, tuple] | None = None
                 ) -> dict[str, Any]:
    """``config.task_options`` merged over ``defaults``; unknown keys, wrong types or bad choices -> ConfigError.

    Values are converted to the type of their default (int/float/bool/str; a None default accepts anything).
    """
    given = dict(config.task_options or {})
    unknown = sorted(k for k in given if k not in defaults)
    if unknown:
        raise ConfigError(f"unknown task option(s) {', '.join(unknown)} for task {config.task!r}; "
                          f"valid: {', '.join(sorted(defaults))} (set them as task_options.NAME=VALUE)")
    out = copy.deepcopy(dict(defaults))
    for k, v in given.items():
        out[k] = _convert(k, v, defaults[k], config.task)
    for k, valid in (choices or {}).items():
        if out[k] not in valid:
            raise ConfigError(f"task_options.{k}={out[k]!r} is not valid for task {config.task!r}; "
                              f"choose one of {', '.join(map(str, valid))}")
    return out


def _convert(key: str, value: Any, default: Any, task: str) -> Any:
    where = f"task_options.{key} (task {task!r})"
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.strip().lower() in ("true", "yes", "1")
        raise ConfigError(f"{where} must be true or false (got {value!r})")
    if isinstance(default, (int, float)):
        try:
            num = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where} must be a number (got {value!r})") from None
        if isinstance(default, int):
            if num != int(num):
                raise ConfigError(f"{where} must be an integer (got {value!r})")
            return int(num)
        return num
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string (got {value!r})")
        return value.strip()
    return value


def check_backbone(encoder: str, depth: str, allowed_depths: tuple[str, ...] = LEVELS) -> None:
    """ConfigError unless ``encoder`` is a known backbone and ``depth`` one of ``allowed_depths``."""
    if encoder not in BACKBONES:
        raise ConfigError(f"task_options.encoder={encoder!r} is not valid; choose one of {', '.join(BACKBONES)}")
    if depth not in allowed_depths:
        raise ConfigError(f"task_options.depth={depth!r} is not valid here; choose one of "
                          f"{', '.join(allowed_depths)}")


def decoder_first_width(decoder: VGGDecoder) -> int | None:
    """The ``first_width`` a VGGDecoder was built with (None when it equals ``widths[0]``)."""
    conv = decoder.convs["conv1_1"] if "conv1_1" in decoder.convs else None
    if conv is None or conv.in_channels == decoder.widths[0]:
        return None
    return int(conv.in_channels)


def trainable_decoder(decoder: VGGDecoder) -> VGGDecoder:
    """A trainable copy (requires_grad on, train mode) of a (shared, frozen) decoder."""
    dec = copy.deepcopy(decoder)
    dec.requires_grad_(True)
    return dec.train()


def fresh_decoder(like: VGGDecoder, seed: int | None = None) -> VGGDecoder:
    """A randomly initialised decoder with the layout of ``like`` (PyTorch's default init)."""
    if seed is not None:
        torch.manual_seed(seed)
    return VGGDecoder(like.widths, like.depth, first_width=decoder_first_width(like)).train()


def widened_widths(decoder: VGGDecoder, mult: int) -> list[int]:
    """The widths of ``decoder`` with every block it decodes through widened ``mult`` times (its input kept)."""
    keep = int(decoder.depth[4]) - 1  # widths[keep] is the width of the features it decodes
    return [w * mult if b < keep else w for b, w in enumerate(decoder.widths)]


def widen_decoder(decoder: VGGDecoder, mult: int, seed: int = 0) -> VGGDecoder:
    """A decoder ``mult`` times as wide inside that computes the same function (Net2WiderNet, Chen et al. 2016).

    Every hidden channel is copied ``mult`` times; the next conv reads each copy with the old weight / mult plus a
    small noise that sums to zero over the copies, so the output is unchanged (up to rounding) while the copies get
    different gradients and can drift apart in training. The input features and the RGB output keep their width.
    A thin decoder (vgg19-16x: 16..64 channels inside) gains capacity this way without losing what it learnt
    (docs/models/session23 measures what that did). ``mult`` = 1 returns a trainable copy.
    """
    if mult < 1:
        raise ConfigError(f"task_options.decoder_widen={mult}: give a whole number >= 1 (1 = the decoder as it is)")
    if mult == 1:
        return trainable_decoder(decoder)
    if decoder_first_width(decoder):
        raise ConfigError("task_options.decoder_widen: this decoder's first block has its own width; only decoders "
                          "with one width per block can be widened")
    g = torch.Generator().manual_seed(seed)
    wide = VGGDecoder(widened_widths(decoder, mult), decoder.depth).train()
    names = list(decoder.convs)
    with torch.no_grad():
        for k, name in enumerate(names):
            w, b = decoder.convs[name].weight.detach().float(), decoder.convs[name].bias.detach().float()
            cout, cin = w.shape[:2]
            if k > 0:  # its input was widened: copies read with weight / mult plus zero-sum noise
                w = w.repeat(1, mult, 1, 1) / mult
                noise = torch.randn(w.shape, generator=g) * (0.01 * w.std())
                noise = noise - noise.view(cout, mult, cin, *w.shape[2:]).mean(1).repeat(1, mult, 1, 1)
                w = w + noise
            if k < len(names) - 1:  # its output is widened: every channel copied
                w, b = w.repeat(mult, 1, 1, 1), b.repeat(mult)
            conv = wide.convs[name]
            conv.weight.copy_(w.to(conv.weight.dtype))
            conv.bias.copy_(b.to(conv.bias.dtype))
    return wide.requires_grad_(True)


def widen_skips(skips: AdaINSkips, mult: int) -> AdaINSkips:
    """The skips of a decoder widened ``mult`` times by :func:`widen_decoder`: each conv's output channels copied
    ``mult`` times, like the decoder's up-sampled map they are added to, so the widened model computes the same image
    (the next conv reads the copies with weight / mult)."""
    if mult == 1:
        return skips
    wide = AdaINSkips({n: (c_in, c_out * mult) for n, (c_in, c_out) in skips.channels().items()})
    with torch.no_grad():
        for name, conv in skips.convs.items():
            wide.convs[name].weight.copy_(conv.weight.repeat(mult, 1, 1, 1))
            wide.convs[name].bias.copy_(conv.bias.repeat(mult))
    return wide


def init_model_decoder(path: str, like: VGGDecoder, ck: dict[str, Any] | None = None) -> VGGDecoder:
    """The decoder of the impasto model file ``path``, checked to have the layout of ``like`` (ConfigError if not).

    Used by ``task_options.init_checkpoint`` to start a run from a trained model (e.g. SANet's decoder from the
    trained AdaIN one, IEContraAST from a trained SANet)."""
    from impasto.methods.common import load_impasto_checkpoint, load_model_decoder

    ck = load_impasto_checkpoint(path) if ck is None else ck  # ``ck``: the file, already read by the caller
    if "decoder" not in ck:
        raise ConfigError(f"task_options.init_checkpoint {path}: not an impasto model file (no decoder)")
    dec = load_model_decoder(ck, path)
    if list(dec.widths) != list(like.widths) or dec.depth != like.depth or \
            decoder_first_width(dec) != decoder_first_width(like):
        raise ConfigError(f"task_options.init_checkpoint {path}: its decoder ({ck.get('encoder')} "
                          f"{ck.get('depth')}, widths {list(dec.widths)}) does not fit this run's "
                          f"({like.depth}, widths {list(like.widths)})")
    return dec


def cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """``module.state_dict()`` detached, cloned and on the CPU (float32 kept)."""
    return {k: v.detach().to("cpu").clone() for k, v in module.state_dict().items()}


def model_file(method: str, encoder: str, depth: str, decoder: VGGDecoder, config: TrainConfig, step: int,
               **extra: Any) -> dict[str, Any]:
    """The impasto model file that ``impasto stylize --checkpoint`` loads (its config inside rebuilds the model).

    Keys: format, method, encoder, depth, decoder, decoder_widths, decoder_first_width, config, step, card
    (:func:`impasto.modelfile.default_card`: smoke scale below 1000 steps), plus
    ``extra`` (transform, transform_channels, encoder_state, ...).
    """
    state = {
        "format": MODEL_FORMAT, "method": method, "encoder": encoder, "depth": depth,
        "decoder": cpu_state(decoder), "decoder_widths": list(decoder.widths),
        "decoder_first_width": decoder_first_width(decoder),
        "config": config.to_dict(), "step": int(step),
        "card": default_card(step, config.to_dict()),
    }
    state.update(extra)
    return state


def write_model_file(state: dict[str, Any], out_dir: str | os.PathLike, name: str = MODEL_FILE) -> Path:
    """Write ``state`` to ``out_dir/name`` atomically (temporary file + rename)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / name
    with atomic_write(path) as f:
        torch.save(state, f)
    return path


class ModelFileMixin:
    """Makes ``model_state()`` also write ``out_dir/model.pt``; at checkpoints the loop writes it just after the
    checkpoint (so model.pt is never ahead of ``checkpoints/latest.pt``; its ``step`` says which step it holds).

    Subclasses implement ``_model_state()``; the file is written on the main process only.
    """

    write_model: bool = True

    def model_state(self) -> dict[str, Any]:
        state = self._model_state()  # type: ignore[attr-defined]
        self._write_model(state)
        return state

    def checkpoint_model_state(self) -> dict[str, Any]:
        return self._model_state()  # type: ignore[attr-defined]

    def checkpoint_saved(self, model_state: dict[str, Any]) -> None:
        self._write_model(model_state)

    def _write_model(self, state: dict[str, Any]) -> None:
        dist = getattr(self, "dist", None)
        if self.write_model and (dist is None or dist.is_main):
            write_model_file(state, self.config.out_dir)  # type: ignore[attr-defined]


def requires_grad(module: nn.Module, flag: bool) -> None:
    """Set ``requires_grad`` of every parameter of ``module``."""
    for p in module.parameters():
        p.requires_grad_(flag)
