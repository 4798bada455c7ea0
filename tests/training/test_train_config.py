"""TrainConfig: YAML round trip, typed key=value overrides, validation errors; the task registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from impasto.errors import ConfigError
from impasto.training import Task, TrainConfig, available_tasks, get_task, register_task
from impasto.training.config import valid_keys


def test_yaml_round_trip(tmp_path: Path) -> None:
    cfg = TrainConfig(task="adain", content_dir="data/content", style_dir="data/style", steps=123, lr=2e-4,
                      precision="bf16", task_options={"style_weight": 10.0, "encoder": {"name": "vgg19-16x"}})
    path = tmp_path / "cfg.yaml"
    text = cfg.to_yaml(path)
    assert path.read_text() == text and "style_weight: 10.0" in text
    assert TrainConfig.from_yaml(path) == cfg
    assert TrainConfig.from_yaml(text) == cfg  # YAML text works too
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_overrides_are_typed_by_the_field_type(tmp_path: Path) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text("task: adain\ncontent_dir: c\ntask_options:\n  weight: 1\n  flag: true\n  name: a\n")
    cfg = TrainConfig.from_yaml(path, ["steps=1e3", "batch_size= 4", "lr=3e-4", "lr_decay=0", "seed=7",
                                       "style_dir=/x/y", "content_dir=none", "precision=fp32",
                                       "task_options.weight=0.5", "task_options.flag=no",
                                       "task_options.name=123", "task_options.new=[1, 2]",
                                       "task_options.enc.depth=relu3_1"])
    assert cfg.steps == 1000 and isinstance(cfg.steps, int)
    assert cfg.batch_size == 4 and isinstance(cfg.batch_size, int)
    assert cfg.lr == 3e-4 and isinstance(cfg.lr, float)
    assert cfg.lr_decay == 0.0 and isinstance(cfg.lr_decay, float)
    assert cfg.seed == 7 and cfg.style_dir == "/x/y" and cfg.content_dir is None
    assert cfg.task_options == {"weight": 0.5, "flag": False, "name": "123", "new": [1, 2],
                                "enc": {"depth": "relu3_1"}}
    assert cfg.with_overrides(["steps=5"]).steps == 5 and cfg.steps == 1000  # a copy


def test_python_construction_coerces_and_validates() -> None:
    cfg = TrainConfig(task="x", steps="10", lr="1e-3", content_dir=Path("/a"))
    assert cfg.steps == 10 and cfg.lr == 1e-3 and cfg.content_dir == "/a"


@pytest.mark.parametrize("override, match", [
    ("stepz=3", "valid keys: task, content_dir"),
    ("steps", "key=value"),
    ("steps=abc", "steps must be an integer"),
    ("steps=1.5", "steps must be an integer"),
    ("steps=0", "steps must be >= 1"),
    ("batch_size=-2", "batch_size must be >= 1"),
    ("lr=-1", "lr must be > 0"),
    ("lr=fast", "lr must be a number"),
    ("precision=fp8", "choose one of fp32, bf16, fp16, auto"),
    ("device=tpu", "choose one of auto, cpu, cuda"),
    ("resize=crop", "choose one of short_side, square"),
    ("checkpoint_every=-1", "checkpoint_every must be >= 0"),
    ("seed.x=1", "only task_options has sub-keys"),
    ("task_options.weight=heavy", "expected a number"),
    ("task_options=3", "task_options must be a mapping"),
    ("task=", "task is empty"),
])
def test_bad_values_raise_config_error(override: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        TrainConfig.from_dict({"task": "adain", "task_options": {"weight": 1.0}}, [override])


def test_bad_files_and_keys(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        TrainConfig.from_yaml(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        TrainConfig.from_yaml(tmp_path / "list.yaml")
    (tmp_path / "bad.yaml").write_text("task: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        TrainConfig.from_yaml(tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match="unknown configuration key.*colour.*valid keys"):
        TrainConfig.from_dict({"task": "a", "colour": 1})
    with pytest.raises(ConfigError, match="no 'task'"):
        TrainConfig.from_dict({"steps": 1})
    assert valid_keys()[0] == "task" and "task_options" in valid_keys()


def test_task_registry() -> None:
    @register_task("registry-probe")
    class Probe(Task):
        def build(self, config, device): ...
        def trainable_modules(self): return {}
        def optimizers(self): return {}
        def training_step(self, batch, step): return {"total": 0.0}
        def sample(self, contents, styles): return contents
        def model_state(self): return {}

    assert get_task("registry-probe") is Probe and Probe.name == "registry-probe"
    assert "registry-probe" in available_tasks()
    with pytest.raises(ConfigError, match="unknown training task 'nope'; known tasks: .*registry-probe"):
        get_task("nope")

    class Other(Probe):
        pass

    with pytest.raises(ValueError, match="already registered"):
        register_task("registry-probe")(Other)
    with pytest.raises(TypeError):
        register_task("not-a-task")(object)
    with pytest.raises(TypeError):
        Task()  # abstract
