"""Pieces shared by the encoder/decoder methods: resolving the backbone and depth, loading trained decoders."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from impasto import weights
from impasto.backbones import BACKBONES, LEVELS, available_depths, candidate_backbones, encoder_depths
from impasto.decoders.vgg import VGGDecoder
from impasto.errors import ConfigError, WeightsError
from impasto.methods.base import MethodConfig, MethodUnavailable

#: Checkpoints trained by impasto's own training code, shipped inside the package.
PACKAGED_CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"


@dataclass
class EncoderConfig(MethodConfig):
    """Options of methods built on a VGG-topology encoder.

    encoder: ``vgg19`` (the real VGG-19), ``vgg19-16x`` (the 16x distilled one) or ``auto`` (the real one when
    its weights reach the depth here, else the distilled one). depth: ``reluK_1`` or None for the method's
    default (the paper's depth when the weights allow it).
    """

    encoder: str = "auto"
    depth: str | None = None

    def validate(self) -> None:
        if self.encoder not in ("auto", *BACKBONES):
            raise ConfigError(f"--encoder must be one of auto, {', '.join(BACKBONES)}; got {self.encoder!r}")
        if self.depth is not None and self.depth not in LEVELS:
            raise ConfigError(f"--depth must be one of {', '.join(LEVELS)}; got {self.depth!r}")


def resolve_backbone(
    cfg: EncoderConfig, preferred_depth: str, method: str, need_decoder: bool = True
) -> tuple[str, str]:
    """Choose (backbone, depth) for a config: explicit values win, else the deepest usable up to the paper's."""
    want = cfg.depth or preferred_depth
    reasons = []
    for bb in candidate_backbones(cfg.encoder):
        depths = available_depths(bb) if need_decoder else encoder_depths(bb)
        if want in depths:
            return bb, want
        if cfg.depth is None and cfg.encoder != "auto" and depths:
            usable = [d for d in depths if d <= want]
            if usable:
                return bb, usable[-1]
        reasons.append(f"{bb}: {', '.join(depths) or 'nothing'} present")
    raise MethodUnavailable(
        f"{method} needs an encoder{' and decoder' if need_decoder else ''} at {want}, which the weights "
        f"present do not provide ({'; '.join(reasons)}). {weights.searched_text()}. 'impasto weights list' shows "
        f"what is missing; or choose --encoder/--depth."
    )


def load_impasto_checkpoint(path: str | Path, method: str | None = None,
                            accepted: tuple[str, ...] = ()) -> dict:
    """Load an impasto model file (``.pt`` or ``.safetensors``, see :mod:`impasto.modelfile`).

    With ``method``, a model written for another method (not in ``accepted``, default ``(method,)``) is a
    WeightsError that names what the file is, and a smoke-scale card prints a warning.
    """
    from impasto.modelfile import card_warning, check_kind, load_model

    ck = load_model(path)
    if method is not None:
        check_kind(ck, path, method, accepted or (method,))
        msg = card_warning(ck, path)
        if msg:
            warnings.warn(msg, UserWarning, stacklevel=3)
    return ck


def checkpoint_encoder(backbone: str, depth: str, ck: dict | None, device: str | None = None):
    """The encoder a model file needs: its fine-tuned ``encoder_state`` (``impasto train refine-encoder``) loaded
    into a private copy of the pretrained encoder, or the shared pretrained encoder when there is none.

    With ``encoder_split: True`` in the model file the state is that of a layer-split encoder (ConvX_1 layers
    only, :class:`~impasto.encoders.split.SplitVGGEncoder`); files without the key hold a full encoder."""
    import copy

    from impasto.backbones import load_encoder

    if not ck or "encoder_state" not in ck:
        return load_encoder(backbone, depth, device=device)  # shared, already on the device
    enc = load_encoder(backbone, depth)
    if ck.get("encoder_split"):
        from impasto.encoders.split import SplitVGGEncoder

        try:
            enc = SplitVGGEncoder.from_encoder(enc)
        except ConfigError as exc:
            raise WeightsError(f"the checkpoint's layer-split encoder cannot be built on {backbone}: {exc}") from None
    else:
        enc = copy.deepcopy(enc)
    try:
        enc.load_state_dict(ck["encoder_state"], strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"the checkpoint's refined encoder does not fit {backbone} at {depth}: {exc}") from None
    return enc.requires_grad_(False).eval().to(device or "cpu")  # a private copy


def load_model_decoder(ck: dict, path: str | Path) -> VGGDecoder:
    """Rebuild the decoder stored in an impasto model file (``decoder`` state dict + ``decoder_widths``)."""
    try:
        dec = VGGDecoder(ck["decoder_widths"], ck["depth"], first_width=ck.get("decoder_first_width"))
        dec.load_state_dict(ck["decoder"], strict=True)
    except (KeyError, RuntimeError) as exc:
        raise WeightsError(f"{path} is not a valid impasto decoder checkpoint ({exc})") from None
    return dec.requires_grad_(False).eval()


def packaged_checkpoint(method: str, backbone: str, depth: str) -> Path | None:
    """impasto's own trained checkpoint for (method, backbone, depth), if the package ships one."""
    for suffix in (".safetensors", ".pt"):
        p = PACKAGED_CHECKPOINTS / f"{method}_{backbone}_{depth}{suffix}"
        if p.is_file():
            return p
    return None
