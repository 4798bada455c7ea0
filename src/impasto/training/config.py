"""Typed training configuration: a dataclass loaded from YAML plus ``key=value`` overrides."""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from impasto.errors import ConfigError
from impasto.hardware import DEVICES, PRECISIONS
from impasto.io.atomic import file_in_the_way

RESIZE_MODES = ("short_side", "square")


@dataclass
class TrainConfig:
    """Everything a training run needs besides the code; saved in every checkpoint and as config.yaml.

    ``batch_size`` is per process (under ``torchrun`` the global batch is ``batch_size * world_size``);
    a Task may split it, e.g. IEContraAST draws ``batch_size / 2`` contents and styles. The learning
    rate of every optimizer's parameter group at step i (0-based) is ``lr_group / (1 + lr_decay * i)``.
    ``task_options`` holds the Task's own settings (loss weights, encoder, depth, ...).
    ``holdout`` names a text file of image file names (one per line, ``#`` comments; a ``folder/`` prefix is
    ignored) that are never trained on: the validation split (see :func:`read_holdout`).
    """

    task: str
    content_dir: str | None = None
    style_dir: str | None = None
    holdout: str | None = None
    steps: int = 160_000
    batch_size: int = 8
    lr: float = 1e-4
    lr_decay: float = 5e-5
    size: int = 512
    crop: int = 256
    resize: str = "short_side"
    seed: int = 0
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    sample_every: int = 500
    num_samples: int = 3
    log_every: int = 10
    out_dir: str = "runs/train"
    precision: str = "fp32"
    device: str = "auto"
    num_workers: int = 0
    task_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Check every value's type and range; raise ConfigError naming the key and the valid values."""
        hints = _field_types()
        for f in dataclasses.fields(self):
            setattr(self, f.name, _coerce(f.name, getattr(self, f.name), hints[f.name]))
        if not self.task:
            raise ConfigError("task is empty; set task to the name of a registered training task")
        positive = ("steps", "batch_size", "size", "crop", "num_samples", "log_every", "keep_checkpoints")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1 (got {getattr(self, name)})")
        for name in ("checkpoint_every", "sample_every", "num_workers"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0 (got {getattr(self, name)}); 0 disables it")
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0 (got {self.lr})")
        if self.lr_decay < 0:
            raise ConfigError(f"lr_decay must be >= 0 (got {self.lr_decay})")
        for name, valid in (("precision", PRECISIONS), ("device", DEVICES), ("resize", RESIZE_MODES)):
            if getattr(self, name) not in valid:
                raise ConfigError(f"{name}={getattr(self, name)!r} is not valid; "
                                  f"choose one of {', '.join(valid)}")
        if self.holdout is not None and not Path(self.holdout).is_file():
            raise ConfigError(f"holdout {self.holdout}: file not found; give a text file of image names to keep "
                              "out of training, or leave holdout unset")
        out, blocker = Path(self.out_dir), file_in_the_way(self.out_dir)
        if blocker is not None:
            what = "is a file" if blocker == out else f"is inside {blocker}, which is a file"
            raise ConfigError(f"out_dir {out} {what}; choose a folder path for the run (--out)")

    # ------------------------------------------------------------------ conversion
    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dict (YAML and torch.save friendly)."""
        return {f.name: copy.deepcopy(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], overrides: Iterable[str] = ()) -> TrainConfig:
        """Build from a mapping (unknown keys -> ConfigError listing the valid ones), then apply overrides."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"a training configuration must be a mapping of keys to values, got "
                              f"{type(data).__name__}")
        valid = valid_keys()
        unknown = sorted(str(k) for k in data if k not in valid)
        if unknown:
            raise ConfigError(f"unknown configuration key(s): {', '.join(unknown)}; "
                              f"valid keys: {', '.join(valid)}")
        values = dict(copy.deepcopy(dict(data)))
        if values.get("task_options") is None:
            values.pop("task_options", None)
        if "task" not in values:
            raise ConfigError("the configuration has no 'task'; set task to a registered training task")
        for item in overrides:
            _apply_override(values, item)
        return cls(**values)

    def with_overrides(self, overrides: Iterable[str]) -> TrainConfig:
        """A copy with ``key=value`` overrides applied (``task_options.name=value`` for task options)."""
        return TrainConfig.from_dict(self.to_dict(), overrides)

    def to_yaml(self, path: str | os.PathLike | None = None) -> str:
        """The configuration as YAML text; also written to ``path`` when given."""
        text = yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=False)
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    @classmethod
    def from_yaml(cls, source: str | os.PathLike, overrides: Iterable[str] = ()) -> TrainConfig:
        """Load from a YAML file (or YAML text containing a newline), then apply ``key=value`` overrides."""
        if isinstance(source, str) and "\n" in source:
            text, where = source, "<text>"
        else:
            path = Path(source)
            if not path.is_file():
                raise ConfigError(f"configuration file {path} not found; pass the path of a YAML file")
            text, where = path.read_text(encoding="utf-8"), str(path)
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(f"configuration {where} is not valid YAML: {e}") from None
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ConfigError(f"configuration {where} must be a YAML mapping (key: value lines)")
        return cls.from_dict(data, overrides)


def read_holdout(path: str | os.PathLike | None) -> set[str]:
    """The file names listed in a holdout file (one per line; ``#`` starts a comment; ``dir/name`` -> ``name``)."""
    if path is None:
        return set()
    names = set()
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(line.rsplit("/", 1)[-1])
    return names


def valid_keys() -> list[str]:
    """Names of TrainConfig's fields, in declaration order."""
    return [f.name for f in dataclasses.fields(TrainConfig)]


def _field_types() -> dict[str, Any]:
    return typing.get_type_hints(TrainConfig)


def parse_override(item: str) -> tuple[str, str]:
    """Split ``"key=value"`` (whitespace around the key ignored); ConfigError if there is no ``=``."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not of the form key=value; "
                          f"valid keys: {', '.join(valid_keys())}")
    key, value = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override {item!r} has an empty key")
    return key, value


def _apply_override(values: dict[str, Any], item: str) -> None:
    key, raw = parse_override(item)
    head, _, rest = key.partition(".")
    if head not in valid_keys():
        raise ConfigError(f"unknown configuration key {head!r} in override {item!r}; "
                          f"valid keys: {', '.join(valid_keys())}")
    if rest:
        if head != "task_options":
            raise ConfigError(f"dotted override {item!r}: only task_options has sub-keys "
                              f"(use task_options.NAME=VALUE)")
        opts = values.setdefault("task_options", {})
        *parents, leaf = rest.split(".")
        node = opts
        for p in parents:
            if not isinstance(node.get(p, {}), dict):
                raise ConfigError(f"override {item!r}: task_options.{p} is not a mapping")
            node = node.setdefault(p, {})
        node[leaf] = _typed_like(node.get(leaf), raw, item)
        return
    if head == "task_options":
        parsed = _parse_yaml_value(raw, item)
        if not isinstance(parsed, dict):
            raise ConfigError(f"override {item!r}: task_options must be a mapping, e.g. "
                              f"task_options={{alpha: 1.0}}, or set one option with task_options.alpha=1.0")
        values["task_options"] = parsed
        return
    values[head] = _coerce(head, raw, _field_types()[head])


def _parse_yaml_value(raw: str, item: str) -> Any:
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError as e:
        raise ConfigError(f"override {item!r}: the value is not valid YAML ({e})") from None


def _typed_like(old: Any, raw: str, item: str) -> Any:
    """Parse an override of a task option: YAML-typed, converted to the type of the value it replaces."""
    new = _parse_yaml_value(raw, item)
    if old is None or new is None:
        return new
    if isinstance(old, bool):
        return _coerce(item, raw.strip(), bool)
    if isinstance(old, (int, float)):
        if isinstance(new, bool) or not isinstance(new, (int, float)):
            try:
                new = float(raw)
            except ValueError:
                raise ConfigError(f"override {item!r}: expected a number like {old!r}") from None
        return float(new) if isinstance(old, float) or isinstance(new, float) else int(new)
    if isinstance(old, str):
        return raw.strip()
    if not isinstance(new, type(old)):
        raise ConfigError(f"override {item!r}: expected a {type(old).__name__} like {old!r}")
    return new


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def _coerce(name: str, value: Any, typ: Any) -> Any:
    """Convert ``value`` (possibly a string from the command line) to ``typ``; ConfigError if impossible."""
    origin = typing.get_origin(typ)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(typ)
        if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null", "~", "")):
            if type(None) in args:
                return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(name, value, a)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{name}: invalid value {value!r}")
    if origin is dict or typ is dict:
        if isinstance(value, str):
            value = _parse_yaml_value(value, f"{name}={value}")
        if not isinstance(value, dict):
            raise ConfigError(f"{name} must be a mapping (got {value!r})")
        return value
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ConfigError(f"{name} must be true or false (got {value!r})")
    if typ is int:
        if isinstance(value, bool):
            raise ConfigError(f"{name} must be an integer (got {value!r})")
        if isinstance(value, int):
            return value
        try:
            f = float(str(value).replace("_", "")) if not isinstance(value, float) else value
        except ValueError:
            f = None
        if f is not None and math.isfinite(f) and f == int(f):
            return int(f)
        raise ConfigError(f"{name} must be an integer (got {value!r})")
    if typ is float:
        if isinstance(value, bool):
            raise ConfigError(f"{name} must be a number (got {value!r})")
        try:
            return float(value.replace("_", "") if isinstance(value, str) else value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name} must be a number (got {value!r})") from None
    if typ is str:
        if isinstance(value, os.PathLike):
            return os.fspath(value)
        if isinstance(value, str):
            return value.strip()
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{name} must be a string (got {value!r})")
    return value
