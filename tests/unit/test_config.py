from __future__ import annotations

from pathlib import Path

import pytest

from goexd import config
from goexd.domain.errors import SetupError


def test_layers_override_in_order(tmp_path: Path) -> None:
    f = tmp_path / "goexd.toml"
    f.write_text('log_level = "warning"\nsocket = "/from/file.sock"\n[sandbox]\ntimeout_s = 7\nmemory_bytes = "1G"\n')
    cfg = config.load(
        f,
        overrides={"socket": "/from/flag.sock"},
        environ={"GOEXD_LOG_LEVEL": "debug", "GOEXD_SANDBOX__TIMEOUT_S": "9"},
    )
    assert cfg.socket == Path("/from/flag.sock")  # flag beats file
    assert cfg.log_level == "debug"  # env beats file
    assert cfg.sandbox.timeout_s == 9.0  # env beats file
    assert cfg.sandbox.memory_bytes == 1 << 30  # file beats default
    assert cfg.sandbox.max_processes == config.SandboxConfig().max_processes


def test_xdg_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    cfg = config.load(environ={})
    assert cfg.socket == tmp_path / "run" / "goex" / "goexd.sock"
    assert cfg.state_dir == tmp_path / "state" / "goex"
    assert config.default_config_file() == tmp_path / "cfg" / "goex" / "goexd.toml"


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("bogus = 1\n", "unknown config key 'bogus'"),
        ("[sandbox]\nbogus = 1\n", "unknown config key [sandbox] 'bogus'"),
        ("[sandbox]\ntimeout_s = 'soon'\n", "sandbox.timeout_s"),
        ("[sandbox]\ntimeout_s = -1\n", "must be positive"),
        ("[sandbox]\ntimeout_s = 99999\n", "above its ceiling"),
        ('log_level = "loud"\n', "log_level"),
        ('[fs]\nchange_detection = "magic"\n', "fs.change_detection"),
        ("this is not toml", "invalid TOML"),
        ("sandbox = 3\n", "[sandbox] must be a table"),
        ('drain_on_stop = "maybe"\n', "'drain_on_stop': expected true or false"),
        ("drain_timeout_s = 0\n", "'drain_timeout_s': must be positive"),
        ("[gc]\noutput_keep_bytes = -1\n", "'gc.output_keep_bytes': must not be negative"),
        ("[container]\npool_size = 99\n", "'container.pool_size': must be between 0 and 64"),
        ('[container]\nimage = ""\n', "'container.image': must name an image"),
        ("[container]\ncpus = -1\n", "'container.cpus'"),
        ("[container]\nbogus = 1\n", "unknown config key [container] 'bogus'"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, toml: str, message: str) -> None:
    f = tmp_path / "goexd.toml"
    f.write_text(toml)
    with pytest.raises(SetupError, match=None) as info:
        config.load(f, environ={})
    assert message in str(info.value)


def test_drain_on_stop_from_toml_and_environment(tmp_path: Path) -> None:
    f = tmp_path / "goexd.toml"
    f.write_text("drain_on_stop = true\n")
    assert config.load(f, environ={}).drain_on_stop is True
    assert config.load(f, environ={"GOEXD_DRAIN_ON_STOP": "false"}).drain_on_stop is False
    assert config.load(None, environ={}).drain_on_stop is False


def test_explicit_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SetupError, match="does not exist"):
        config.load(tmp_path / "nope.toml", environ={})


def test_to_toml_round_trips(tmp_path: Path) -> None:
    cfg = config.load(overrides={"state_dir": str(tmp_path), "sandbox": {"memory_bytes": "256M"}}, environ={})
    f = tmp_path / "again.toml"
    f.write_text(config.to_toml(cfg))
    assert config.load(f, environ={}) == cfg
