from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from creditflow.core.config import ConfigError, load_settings


def test_defaults_need_no_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = load_settings()
    assert s.workdir == Path("creditflow-work")
    assert s.landing_root == Path("creditflow-work/landing")
    assert s.base_currency == "CNY" and s.materiality_threshold == Decimal("100")
    assert s.tracking_uri == f"sqlite:///{(tmp_path / 'creditflow-work' / 'mlflow' / 'mlflow.db')}"


def test_file_overrides_defaults_and_flags_override_the_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "creditflow.yaml").write_text("base_currency: EUR\ntrain:\n  trials: 7\nworkdir: from-file\n")
    s = load_settings(workdir=Path("from-flag"), train__seed=3)
    assert s.base_currency == "EUR"
    assert s.train.trials == 7 and s.train.seed == 3
    assert s.workdir == Path("from-flag")


def test_invalid_values_name_the_key_the_rule_and_the_value(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("base_currency: yuan\ningest:\n  quarantine_warn_rate: 2\n")
    with pytest.raises(ConfigError) as err:
        load_settings(cfg)
    text = str(err.value)
    assert "base_currency" in text and "'yuan'" in text
    assert "ingest.quarantine_warn_rate" in text and "less than or equal to 1" in text


def test_unknown_keys_and_bad_files_are_refused(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("trian:\n  trials: 3\n")
    with pytest.raises(ConfigError, match="trian"):
        load_settings(cfg)
    cfg.write_text("- a list\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_settings(cfg)
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.yaml")


def test_env_variable_points_at_the_file(tmp_path, monkeypatch):
    cfg = tmp_path / "env.yaml"
    cfg.write_text("materiality_threshold: 250\n")
    monkeypatch.setenv("CREDITFLOW_CONFIG", str(cfg))
    assert load_settings().materiality_threshold == Decimal("250")
    monkeypatch.setenv("CREDITFLOW_CONFIG", str(tmp_path / "nope.yaml"))
    with pytest.raises(ConfigError, match="CREDITFLOW_CONFIG"):
        load_settings()
