"""Typed configuration: defaults in code, overridden by ``creditflow.yaml``,
overridden by command-line flags; validated once at start-up.

Look-up order for the file: ``--config FILE``, then ``$CREDITFLOW_CONFIG``, then
``./creditflow.yaml`` when it exists. Secrets (tracking-server tokens, object
store keys) never go in this file: they come from the environment.
"""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

DEFAULT_WORKDIR = Path("creditflow-work")
CONFIG_ENV = "CREDITFLOW_CONFIG"
CONFIG_FILE_NAME = "creditflow.yaml"


class ConfigError(ValueError):
    """The configuration file or a flag is invalid; the message says which and why."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IngestSettings(_Section):
    quarantine_warn_rate: float = Field(
        0.02, ge=0, le=1, description="Share of a file's rows quarantined above which ingest warns."
    )
    quarantine_fail_rate: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Share of a file's rows quarantined above which the file counts as failed "
        "(its good rows are still accepted; the run ends in a failed state for the operator).",
    )
    data_docs: bool = Field(True, description="Build the Great Expectations Data Docs site.")


class FeatureSettings(_Section):
    feature_set: str = Field("pd_features_v1", description="Versioned feature set to build.")
    first_as_of: str | None = Field(
        None, description="Earliest month end (YYYY-MM-DD) of the panel; default: first full month of data."
    )


class TrainSettings(_Section):
    trials: int = Field(40, ge=1, description="Optuna trials per training.")
    timeout_seconds: int = Field(600, ge=10, description="Wall-clock budget of the Optuna study.")
    seed: int = Field(42, description="Seed for splits, sampler and XGBoost.")
    max_calibration_error: float = Field(
        0.03, gt=0, lt=1, description="Promotion gate: the challenger's expected calibration error bound."
    )
    model_name: str = Field("creditflow-pd-12m", description="Registered MLflow model name.")


class Settings(_Section):
    workdir: Path = Field(DEFAULT_WORKDIR, description="Lake, published tables, MLflow store and run state.")
    landing: Path | None = Field(None, description="Landing root; default WORKDIR/landing.")
    base_currency: str = Field("CNY", description="ISO 4217 base currency of exposures and limits.")
    materiality_threshold: Decimal = Field(
        Decimal("100"), ge=0, description="Default definition: past-due amount above this (base currency)."
    )
    mlflow_tracking_uri: str | None = Field(
        None, description="MLflow tracking URI; default sqlite:///WORKDIR/mlflow/mlflow.db."
    )
    policy_file: Path | None = Field(None, description="Credit policy YAML; default the packaged policy.")
    runner: Literal["local", "dask"] = Field("local", description="Task runner for scale-out.")
    dask_address: str | None = Field(None, description="Dask scheduler address; default a LocalCluster.")
    dask_workers: int = Field(2, ge=1, description="Workers of the LocalCluster when no address is given.")
    ingest: IngestSettings = IngestSettings()
    features: FeatureSettings = FeatureSettings()
    train: TrainSettings = TrainSettings()

    @field_validator("base_currency")
    @classmethod
    def _iso_currency(cls, v: str) -> str:
        if len(v) != 3 or not v.isalpha() or not v.isupper():
            raise ValueError(f"must be a 3-letter upper-case ISO 4217 code; got {v!r}")
        return v

    @property
    def landing_root(self) -> Path:
        return self.landing if self.landing is not None else self.workdir / "landing"

    @property
    def tracking_uri(self) -> str:
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        return f"sqlite:///{(self.workdir / 'mlflow' / 'mlflow.db').resolve()}"


def _find_config_file(explicit: Path | None) -> Path | None:
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError(f"config file {explicit} does not exist")
        return explicit
    env = os.environ.get(CONFIG_ENV)
    if env:
        p = Path(env)
        if not p.is_file():
            raise ConfigError(f"${CONFIG_ENV} points to {p}, which does not exist")
        return p
    local = Path.cwd() / CONFIG_FILE_NAME
    return local if local.is_file() else None


def _format_errors(err: ValidationError, source: str) -> str:
    lines = [f"invalid configuration ({source}):"]
    for e in err.errors():
        where = ".".join(str(x) for x in e["loc"]) or "(top level)"
        got = e.get("input")
        lines.append(f"  {where}: {e['msg']}; got {got!r}")
    return "\n".join(lines)


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build the settings: code defaults < config file < non-None ``overrides``.

    ``overrides`` are top-level keys (``workdir``, ``landing``, ...) or dotted
    section keys given as ``section__key`` (``train__trials=10``).
    """
    path = _find_config_file(config_file)
    data: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {path} is not valid YAML: {e}") from e
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping; got {type(loaded).__name__}")
        data = loaded or {}
    for key, value in overrides.items():
        if value is None:
            continue
        if "__" in key:
            section, sub = key.split("__", 1)
            data.setdefault(section, {})
            if not isinstance(data[section], dict):
                raise ConfigError(f"config section {section!r} must be a mapping")
            data[section][sub] = value
        else:
            data[key] = value
    try:
        return Settings.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_errors(e, str(path) if path else "defaults and flags")) from None
