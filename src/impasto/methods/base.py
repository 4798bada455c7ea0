"""The method interface and the one registry of style-transfer methods.

A method turns a content image and one or more encoded styles into a stylised image:

    style = method.encode_style(style_image)          # cacheable: reused for every content image
    out = method.stylize(content, [style, ...], mix, alpha)

``mix`` is a K x H x W map of non-negative style weights at the content's resolution that sums to at most 1 at
each pixel (K = number of styles): a constant map gives global style interpolation, a spatial one gives one style
per region; where it sums to less than 1 the content shows through (as ``alpha`` < 1).
"""

from __future__ import annotations

import contextlib
import dataclasses
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from impasto.errors import ConfigError, ImpastoError
from impasto.hardware import INFERENCE_PRECISIONS
from impasto.runtime import check_cancelled


class MethodUnavailable(ImpastoError):
    """The method cannot run with the weights present (the message says which files it needs)."""




@dataclass
class MethodConfig:
    """Options shared by every method (subclasses add their own).

    precision: ``fp32`` or ``bf16`` (convolutions and matrix products autocast to bfloat16, 2x faster on CPUs
    with native bf16 and on GPUs; features handed to the transforms stay float32).
    """

    device: str = "cpu"
    precision: str = "fp32"


class Method:
    """Base class of the style-transfer methods; see the module docstring for the protocol."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    Config: ClassVar[type[MethodConfig]] = MethodConfig
    #: Long side the method works at when the caller sets no ``max_size`` (None: the photo's size); the result is
    #: then resized to the photo's size (pixel optimisation at 4000 px would take hours).
    work_size: ClassVar[int | None] = None
    #: Optimisation methods report per-iteration progress; feed-forward ones do not.
    iterative: ClassVar[bool] = False
    #: False for methods whose results degrade in bf16 (pixel optimisation): they always run in fp32.
    supports_bf16: ClassVar[bool] = True

    def __init__(self, config: MethodConfig) -> None:
        self.config = config
        self.device = torch.device(config.device)
        if config.precision not in INFERENCE_PRECISIONS:
            raise ConfigError(f"unknown precision {config.precision!r}; use one of {', '.join(INFERENCE_PRECISIONS)}")
        if config.precision == "bf16" and not self.supports_bf16:
            raise ConfigError(f"method {self.name!r} runs in fp32 only; use precision fp32 (or auto)")
        #: the low-precision dtype of this method's autocast, None for fp32
        self.low_dtype: torch.dtype | None = torch.bfloat16 if config.precision == "bf16" else None

    def autocast(self) -> contextlib.AbstractContextManager:
        """The autocast context of this method's precision (the Stylizer runs every method call inside it)."""
        if self.low_dtype is None:
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=self.low_dtype)

    @classmethod
    def check_available(cls, config: MethodConfig) -> None:
        """Raise MethodUnavailable (with what to do) if the weights this config needs are not present."""

    def encode_style(self, style: torch.Tensor) -> Any:
        """Encode a style image 1 x 3 x H x W in [0, 1] into whatever ``stylize`` needs (cached by the caller)."""
        raise NotImplementedError

    def stylize(
        self,
        content: torch.Tensor,
        styles: Sequence[Any],
        mix: torch.Tensor,
        alpha: float = 1.0,
        context: Any = None,
    ) -> torch.Tensor:
        """Stylise 1 x 3 x H x W content in [0, 1]; returns 1 x 3 x H x W in [0, 1] of the same size.

        ``context``: what :meth:`content_context` returned for the whole image when ``content`` is one tile.
        """
        raise NotImplementedError

    def full_res_channels(self) -> int:
        """Channels of the method's widest full-resolution feature map (its encoder's first conv; 64 when unknown),
        which sets how much memory a pixel costs and with it the automatic tile size (:func:`impasto.pipeline.
        auto_tile_size`)."""
        convs = getattr(getattr(self, "encoder", None), "convs", None)
        if convs is not None and "conv1_1" in convs:
            return int(convs["conv1_1"].out_channels)
        return 64

    def content_context(self, content: torch.Tensor) -> Any:
        """Statistics of the whole (downscaled) image shared by all its tiles; None: each tile on its own."""
        return None

    def describe(self) -> str:
        """One line about the resolved configuration (encoder, depth, weights)."""
        return ", ".join(f"{f.name}={getattr(self.config, f.name)}" for f in fields(self.config))


_REGISTRY: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    """Class decorator adding a method to the registry under ``cls.name``.

    Third-party packages use it too (see :mod:`impasto.plugins`); a name already taken by another class raises
    ValueError (a plugin cannot replace a built-in method).
    """
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise TypeError(f"register expects a Method subclass, got {cls!r}")
    if not cls.name:
        raise ValueError(f"{cls.__module__}.{cls.__qualname__} has no name (set the class attribute name)")
    old = _REGISTRY.get(cls.name)
    if old is not None and (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
        raise ValueError(f"method name {cls.name!r} is already registered by {old.__module__}.{old.__qualname__}")
    _REGISTRY[cls.name] = cls
    return cls


def _register_plugin(name: str, obj: object) -> None:
    """Entry point ``name`` of group ``impasto.methods``: a Method subclass, or a module that registered its own."""
    if isinstance(obj, type) and issubclass(obj, Method):
        if not obj.name:
            obj.name = name
        register(obj)
    elif not isinstance(obj, types.ModuleType):
        raise TypeError(f"expected a Method subclass or a module, got {obj!r}")


def method_names() -> list[str]:
    """Registered method names, in registration order (built-ins first, then plugins)."""
    _ensure_loaded()
    return list(_REGISTRY)


def get_method_class(name: str) -> type[Method]:
    """The class registered as ``name``; an unknown name raises ConfigError listing the known ones."""
    _ensure_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown method {name!r}; known methods: {', '.join(_REGISTRY)}") from None


def make_config(name: str, **options: Any) -> MethodConfig:
    """Build the method's config from keyword options; unknown options raise ConfigError listing valid ones."""
    cls = get_method_class(name)
    valid = {f.name: f for f in fields(cls.Config)}
    unknown = set(options) - set(valid)
    if unknown:
        raise ConfigError(
            f"method {name!r} has no option(s) {', '.join(sorted(unknown))}; valid options: {', '.join(valid)}"
        )
    cfg = cls.Config(**{k: v for k, v in options.items() if v is not None})
    validate = getattr(cfg, "validate", None)
    if validate:
        validate()
    return cfg


def create_method(name: str, **options: Any) -> Method:
    """Instantiate a registered method with options (raises MethodUnavailable if its weights are missing)."""
    cls = get_method_class(name)
    cfg = make_config(name, **options)
    cls.check_available(cfg)
    return cls(cfg)


def availability(name: str, **options: Any) -> tuple[bool, str]:
    """(True, description) if the method runs here with these options, else (False, the reason)."""
    cls = get_method_class(name)
    try:
        cfg = make_config(name, **options)
        cls.check_available(cfg)
    except ImpastoError as exc:
        return False, str(exc)
    shown = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("device", "precision")}
    return True, ", ".join(f"{k}={v}" for k, v in shown.items())


def _ensure_loaded() -> None:
    import impasto.methods  # noqa: F401  (registers the built-in methods)
    from impasto.plugins import METHODS_GROUP, load_plugins

    load_plugins(METHODS_GROUP, _register_plugin)  # once per process


# ---------------------------------------------------------------------------------------------------------------
# Helpers shared by methods
# ---------------------------------------------------------------------------------------------------------------


def resize_mix(mix: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize a K x H x W style-weight map to K x h x w (area averaging when shrinking)."""
    if tuple(mix.shape[-2:]) == tuple(size):
        return mix
    mode = "area" if mix.shape[-2] >= size[0] and mix.shape[-1] >= size[1] else "bilinear"
    kw = {} if mode == "area" else {"align_corners": False}
    return F.interpolate(mix[None], size=size, mode=mode, **kw)[0]


def blend_features(
    content: torch.Tensor, targets: Sequence[torch.Tensor], mix: torch.Tensor, alpha: float
) -> torch.Tensor:
    """Combine per-style target features with the content features.

    ``out = alpha * sum_k m_k * t_k + (1 - alpha * sum_k m_k) * content`` with ``m`` = ``mix`` resized to the
    feature size, so alpha = 0 or an all-zero mix give the content features back (AdaIN paper, Sec. 7).
    content, targets: 1 x C x h x w; mix: K x H x W.
    """
    if len(targets) == 1 and alpha == 1.0 and bool((mix == 1).all()):
        return targets[0]  # one style at full strength everywhere: nothing to blend
    m = resize_mix(mix.to(content), tuple(content.shape[-2:]))
    out = content * (1 - alpha * m.sum(0, keepdim=True))[None]
    for k, t in enumerate(targets):
        out = out + alpha * m[k][None, None] * t
    return out


def optimize_pixels(
    init: torch.Tensor,
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    steps: int,
    progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Minimise ``loss_fn(x)`` over the pixels of ``x`` (1 x 3 x H x W) with L-BFGS, starting from ``init``.

    Shared by the optimisation methods (Gatys; style-swap's eq. 2). ``steps`` bounds the loss evaluations;
    ``progress(done, steps)`` is called after each. Returns the result clamped to [0, 1], detached.
    """
    x = init.detach().float().contiguous().clone().requires_grad_(True)  # L-BFGS views it flat
    opt = torch.optim.LBFGS([x], lr=1.0, max_iter=steps, history_size=20, line_search_fn="strong_wolfe")
    calls = 0

    def closure() -> torch.Tensor:
        nonlocal calls
        opt.zero_grad()
        with torch.autocast(x.device.type, enabled=False):  # L-BFGS line searches need exact fp32 losses
            loss = loss_fn(x)
        loss.backward()
        calls += 1
        check_cancelled()
        if progress:
            progress(min(calls, steps), steps)
        return loss

    opt.step(closure)
    return x.detach().clamp(0, 1)


def constant_mix(weights: Sequence[float], size: tuple[int, int]) -> torch.Tensor:
    """A K x H x W map with the normalised ``weights`` everywhere."""
    w = torch.tensor(list(weights), dtype=torch.float32)
    w = w / w.sum()
    return w[:, None, None].expand(len(w), *size).clone()
