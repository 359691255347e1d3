"""Quick-mode switch, device choice and the data folder."""
import pytest
import torch

from reconet_lib import config


@pytest.mark.parametrize("value, expected", [("1", True), ("true", True), ("0", False), ("off", False)])
def test_quick_mode_environment_variable_forces_the_choice(monkeypatch, value, expected):
    monkeypatch.setenv(config.QUICK_ENV, value)
    assert config.quick_mode() is expected


def test_quick_mode_defaults_to_quick_without_cuda(monkeypatch):
    monkeypatch.delenv(config.QUICK_ENV, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert config.quick_mode() is True
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert config.quick_mode() is False


def test_quick_mode_rejects_unclear_values(monkeypatch):
    monkeypatch.setenv(config.QUICK_ENV, "maybe")
    with pytest.raises(ValueError, match="RECONET_QUICK"):
        config.quick_mode()


def test_data_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(config.DATA_ENV, str(tmp_path))
    assert config.data_dir() == tmp_path.resolve()
    monkeypatch.delenv(config.DATA_ENV)
    assert config.data_dir() == config.project_root() / "data"


def test_run_settings_summary_names_device_and_mode(monkeypatch):
    monkeypatch.setenv(config.QUICK_ENV, "1")
    settings = config.run_settings()
    assert settings.quick and "quick mode" in settings.summary


def test_from_dict_fills_defaults_and_refuses_unknown_keys():
    from dataclasses import dataclass

    from reconet_lib.config import from_dict
    from reconet_lib.errors import UserInputError

    @dataclass
    class Example:
        a: int = 1
        b: str = "x"

    assert from_dict(Example, {"b": "y"}) == Example(a=1, b="y")
    with pytest.raises(UserInputError, match=r"unknown Example keys \['c'\]; the known keys are a, b"):
        from_dict(Example, {"c": 3})
    with pytest.raises(UserInputError, match="the thing must be a mapping"):
        from_dict(Example, [1, 2], "the thing")


def test_the_config_dataclasses_share_one_from_dict():
    from reconet_lib.errors import UserInputError
    from reconet_lib.losses import LossWeights
    from reconet_lib.network import ReCoNetConfig
    from reconet_lib.train import TrainConfig

    for cls, name in ((TrainConfig, "TrainConfig"), (ReCoNetConfig, "ReCoNet config"), (LossWeights, "LossWeights")):
        with pytest.raises(UserInputError, match=f"unknown {name} keys"):
            cls.from_dict({"no_such_field": 1})
    assert LossWeights.from_dict({"alpha": 2.0}) == LossWeights(alpha=2.0)
