"""wandb goes online exactly when the user configured it, offline otherwise."""

from __future__ import annotations

import pytest

from sae.run_log import wandb_login_stored, wandb_mode


def _netrc(tmp_path, host="api.wandb.ai", password="k" * 40):
    path = tmp_path / ".netrc"
    path.write_text(f"machine {host}\n  login user\n  password {password}\n")
    path.chmod(0o600)
    return path


def test_offline_without_any_configuration(tmp_path):
    assert wandb_mode("auto", {"HOME": str(tmp_path)}) == ("offline", "no wandb credentials")


def test_api_key_means_online(tmp_path):
    assert wandb_mode("auto", {"HOME": str(tmp_path), "WANDB_API_KEY": "x"})[0] == "online"


def test_stored_login_in_netrc_means_online(tmp_path):
    _netrc(tmp_path)
    assert wandb_login_stored({"HOME": str(tmp_path)})
    assert wandb_mode("auto", {"HOME": str(tmp_path)})[0] == "online"


def test_netrc_for_another_host_or_elsewhere(tmp_path):
    _netrc(tmp_path, host="github.com")
    assert wandb_mode("auto", {"HOME": str(tmp_path)})[0] == "offline"
    (tmp_path / "elsewhere").mkdir()
    other = _netrc(tmp_path / "elsewhere", host="wandb.example.org")
    env = {"HOME": str(tmp_path), "NETRC": str(other), "WANDB_BASE_URL": "https://wandb.example.org"}
    assert wandb_mode("auto", env)[0] == "online"


def test_unreadable_netrc_is_no_login(tmp_path):
    (tmp_path / ".netrc").write_text("machine\n")
    assert not wandb_login_stored({"HOME": str(tmp_path)})


@pytest.mark.parametrize("mode", ["online", "offline"])
def test_config_mode_wins_over_credentials(tmp_path, mode):
    _netrc(tmp_path)
    assert wandb_mode(mode, {"HOME": str(tmp_path)}) == (mode, "trainer.wandb_mode")


def test_environment_mode_wins_over_everything(tmp_path):
    _netrc(tmp_path)
    env = {"HOME": str(tmp_path), "WANDB_MODE": "disabled", "WANDB_API_KEY": "x"}
    assert wandb_mode("online", env) == ("disabled", "WANDB_MODE")


def test_trainer_config_field():
    from pydantic import ValidationError

    from sae.trainer import TrainerConfig

    assert TrainerConfig().wandb_mode == "auto"
    assert TrainerConfig(wandb_mode="online").wandb_mode == "online"
    with pytest.raises(ValidationError):
        TrainerConfig(wandb_mode="sometimes")
