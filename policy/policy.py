"""The credit policy: a versioned YAML file the credit department owns.

:func:`load_policy` reads it (default: the packaged ``credit_policy.yaml``) into a
typed, frozen :class:`CreditPolicy` and fails with one readable message per
problem, e.g. ``grades.3.lgd: must be between 0 and 1; got 1.2``.

Units, so that nobody has to guess:

- PD band edges and PD thresholds are probabilities (floats, compared with the
  model's ``pd_12m``).
- Money in the policy (``max_limit``, ``max_expected_loss``,
  ``min_outstanding``) is in the **base currency**, at most 2 fraction digits;
  the limit engine converts it to a customer's limit currency with the
  ``fx_to_limit_currency`` rate. ``rounding_step`` is in the **limit currency**.
- Shares, multiples and LGDs are exact decimals with at most 6 fraction digits
  (the engine computes money in integer cents and needs them exact).

The module also holds the small input checks shared by the scoring, limit,
watchlist and collections builders.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import polars as pl
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from creditflow.core.schema import COLLECTION_ACTIONS, SEVERITIES, Table

DEFAULT_POLICY_RESOURCE = "credit_policy.yaml"
GRADE_COUNT = 10
"""The contract's master scale has exactly ten grades, ``R1`` (safest) .. ``R10``."""
RATIO_DIGITS = 6
"""Shares, multiples and LGDs are exact decimals with at most this many fraction digits."""

Severity = Literal["HIGH", "MEDIUM", "LOW"]
CollectionAction = Literal["DUNNING", "STOP_SUPPLY", "LEGAL_ACTION", "WRITE_OFF_REVIEW"]
assert set(SEVERITIES) == {"HIGH", "MEDIUM", "LOW"}
assert set(COLLECTION_ACTIONS) == {"DUNNING", "STOP_SUPPLY", "LEGAL_ACTION", "WRITE_OFF_REVIEW"}


class PolicyError(ValueError):
    """The credit policy file is invalid; the message lists every problem."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _fraction_digits(v: Decimal) -> int:
    exp = v.as_tuple().exponent
    return -exp if isinstance(exp, int) and exp < 0 else 0


def _check_money(v: Decimal | None) -> Decimal | None:
    if v is not None and _fraction_digits(v.normalize()) > 2:
        raise ValueError(f"money has at most 2 fraction digits; got {v}")
    return v


def _check_ratio(v: Decimal | None) -> Decimal | None:
    if v is not None and _fraction_digits(v.normalize()) > RATIO_DIGITS:
        raise ValueError(f"must have at most {RATIO_DIGITS} fraction digits; got {v}")
    return v


# ----------------------------------------------------------------------------- sections


class ScoringPolicy(_Section):
    """Score scaling: ``score = offset + factor * ln(odds good:bad)``."""

    base_score: float = Field(600, description="Points at the base odds.")
    base_odds: float = Field(
        50, gt=0, description="Good:bad odds that earn base_score (50 means 50:1)."
    )
    points_to_double_odds: float = Field(20, gt=0, description="PDO: points that double the odds.")


class Grade(_Section):
    """One row of the master scale: a PD band and everything the policy sets per grade."""

    grade: str = Field(description="R1 (safest) .. R10.")
    pd_below: float = Field(
        gt=0,
        le=1,
        description="Upper PD edge (exclusive): the band is [previous pd_below, pd_below).",
    )
    lgd: Decimal = Field(ge=0, le=1, description="Loss given default of a customer in this grade.")
    max_limit: Decimal = Field(ge=0, description="Maximum credit limit, base currency.")
    sales_multiple: Decimal = Field(
        ge=0, description="Limit base = avg monthly sales x (payment terms / 30) x this multiple."
    )

    @field_validator("max_limit")
    @classmethod
    def _money(cls, v: Decimal) -> Decimal | None:
        return _check_money(v)

    @field_validator("lgd", "sales_multiple")
    @classmethod
    def _ratios(cls, v: Decimal) -> Decimal | None:
        return _check_ratio(v)


class LimitPolicy(_Section):
    """Rules of the credit-limit engine; each one is a cap, the smallest cap wins."""

    rounding_step: Decimal = Field(
        Decimal(1000),
        gt=0,
        description="Limits are rounded down to a multiple of this (limit currency).",
    )
    equity_share: Decimal | None = Field(
        Decimal("0.10"),
        ge=0,
        description="EQUITY_CAP: limit <= this share of equity; null disables the cap. "
        "Customers without equity figures are not capped by it.",
    )
    max_expected_loss: Decimal | None = Field(
        Decimal(250000),
        gt=0,
        description="MAX_EXPECTED_LOSS: pd x LGD x limit <= this (base currency); null disables.",
    )
    max_increase_share: Decimal | None = Field(
        Decimal("0.50"),
        ge=0,
        description="MAX_INCREASE: limit <= current x (1 + this) per review; not applied when the "
        "current limit is 0; null disables.",
    )
    dpd_hold_over_days: int | None = Field(
        30, ge=0, description="DPD_HOLD: dpd_max above this -> no increase; null disables."
    )
    over_limit_hold: bool = Field(
        True, description="OVER_LIMIT_HOLD: exposure above the limit -> no increase."
    )
    legal_event_cut_factor: Decimal | None = Field(
        Decimal("0.50"),
        ge=0,
        le=1,
        description="LEGAL_EVENT_CUT: new lawsuit or execution order in the last 3 months -> "
        "limit <= current x this; null disables.",
    )

    @field_validator("rounding_step", "max_expected_loss")
    @classmethod
    def _money(cls, v: Decimal | None) -> Decimal | None:
        return _check_money(v)

    @field_validator("equity_share", "max_increase_share", "legal_event_cut_factor")
    @classmethod
    def _ratios(cls, v: Decimal | None) -> Decimal | None:
        return _check_ratio(v)


class _Trigger(_Section):
    enabled: bool = True
    severity: Severity


class PdJumpTrigger(_Trigger):
    severity: Severity = "HIGH"
    min_ratio: float = Field(2.0, gt=1, description="pd_12m / previous pd at least this ...")
    min_increase: float = Field(
        0.02, ge=0, lt=1, description="... and pd_12m - previous pd at least this."
    )


class GradeDownTrigger(_Trigger):
    severity: Severity = "MEDIUM"
    min_notches: int = Field(
        2, ge=1, description="Grade number worse by at least this vs the previous run."
    )


class DpdTrigger(_Trigger):
    over_days: int = Field(ge=0, description="Fires when dpd_max is above this.")


class OverLimitTrigger(_Trigger):
    severity: Severity = "MEDIUM"
    utilization_over: float = Field(1.0, gt=0, description="Fires when utilization is above this.")


class BureauDropTrigger(_Trigger):
    severity: Severity = "MEDIUM"
    min_drop: int = Field(50, gt=0, description="Fires when bureau_score_chg_3m <= -min_drop.")


class EventTrigger(_Trigger):
    """A trigger that fires on a flag or a positive count; no threshold."""


class WatchlistTriggers(_Section):
    PD_JUMP: PdJumpTrigger = PdJumpTrigger()
    GRADE_DOWN_2: GradeDownTrigger = GradeDownTrigger()
    DPD_30: DpdTrigger = DpdTrigger(severity="MEDIUM", over_days=30)
    DPD_60: DpdTrigger = DpdTrigger(severity="HIGH", over_days=60)
    OVER_LIMIT: OverLimitTrigger = OverLimitTrigger()
    BUREAU_SCORE_DROP: BureauDropTrigger = BureauDropTrigger()
    NEW_LAWSUIT: EventTrigger = EventTrigger(severity="MEDIUM")
    TAX_ARREARS: EventTrigger = EventTrigger(severity="LOW")
    EXECUTION_ORDER: EventTrigger = EventTrigger(severity="HIGH")

    @model_validator(mode="after")
    def _dpd_order(self) -> WatchlistTriggers:
        if self.DPD_60.over_days <= self.DPD_30.over_days:
            raise ValueError(
                f"DPD_60.over_days must be above DPD_30.over_days; got {self.DPD_60.over_days} "
                f"<= {self.DPD_30.over_days}"
            )
        return self


class WatchlistPolicy(_Section):
    escalate_at_trigger_count: int | None = Field(
        3,
        ge=2,
        description="With this many triggers or more, severity goes up one level; null disables.",
    )
    triggers: WatchlistTriggers = WatchlistTriggers()


class CollectionRule(_Section):
    """One row of the collections ladder: conditions that must all hold (none = catch-all)."""

    action: CollectionAction
    min_days_past_due: int | None = Field(None, ge=0)
    min_outstanding: Decimal | None = Field(None, ge=0, description="Base currency.")
    or_bankruptcy: bool = Field(
        False, description="Also matches any customer with a bankruptcy filing."
    )

    @field_validator("min_outstanding")
    @classmethod
    def _money(cls, v: Decimal | None) -> Decimal | None:
        return _check_money(v)

    @property
    def is_catch_all(self) -> bool:
        return self.min_days_past_due is None and self.min_outstanding is None


class LgdByAge(_Section):
    """Loss given default by age of the receivable (collections provisions)."""

    bucket_0_30: Decimal = Field(ge=0, le=1)
    bucket_31_90: Decimal = Field(ge=0, le=1)
    bucket_91_180: Decimal = Field(ge=0, le=1)
    bucket_over_180: Decimal = Field(ge=0, le=1)

    @field_validator("*")
    @classmethod
    def _ratios(cls, v: Decimal) -> Decimal | None:
        return _check_ratio(v)

    @model_validator(mode="after")
    def _non_decreasing(self) -> LgdByAge:
        values = list(self.as_dict().items())
        for (prev_name, prev), (name, cur) in zip(values, values[1:], strict=False):
            if cur < prev:
                raise ValueError(
                    f"LGD must not decrease with the age of the debt; {name} ({cur}) is below {prev_name} ({prev})"
                )
        return self

    def as_dict(self) -> dict[str, Decimal]:
        return {
            "bucket_0_30": self.bucket_0_30,
            "bucket_31_90": self.bucket_31_90,
            "bucket_91_180": self.bucket_91_180,
            "bucket_over_180": self.bucket_over_180,
        }


class CollectionsPolicy(_Section):
    lgd_by_age: LgdByAge
    actions: tuple[CollectionRule, ...] = Field(min_length=1)

    @field_validator("actions")
    @classmethod
    def _ends_with_catch_all(cls, v: tuple[CollectionRule, ...]) -> tuple[CollectionRule, ...]:
        if not v[-1].is_catch_all or v[-1].or_bankruptcy:
            raise ValueError(
                "the last collections rule must be a catch-all (no min_days_past_due, no min_outstanding), "
                f"so every defaulted customer gets an action; got {v[-1].model_dump(exclude_defaults=True)}"
            )
        for i, rule in enumerate(v[:-1]):
            if rule.is_catch_all and not rule.or_bankruptcy:
                raise ValueError(
                    f"rule {i} ({rule.action}) has no condition, so the rules after it never apply"
                )
        return v


class CreditPolicy(_Section):
    """The whole credit policy; see ``docs/credit-policy.md``."""

    version: str = Field(
        min_length=1, description="Policy version, recorded on every published limit."
    )
    effective_date: str | None = None
    owner: str | None = None
    description: str | None = None
    scoring: ScoringPolicy = ScoringPolicy()
    grades: tuple[Grade, ...]
    limits: LimitPolicy = LimitPolicy()
    watchlist: WatchlistPolicy = WatchlistPolicy()
    collections: CollectionsPolicy

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, v: Any) -> Any:
        # YAML reads `version: 1.0` as a float; keep what the author wrote
        return str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v

    @field_validator("effective_date", mode="before")
    @classmethod
    def _date_text(cls, v: Any) -> Any:
        return v.isoformat() if hasattr(v, "isoformat") else v

    @field_validator("grades")
    @classmethod
    def _master_scale(cls, v: tuple[Grade, ...]) -> tuple[Grade, ...]:
        names = [g.grade for g in v]
        expected = [f"R{i}" for i in range(1, GRADE_COUNT + 1)]
        if names != expected:
            raise ValueError(
                f"the master scale must list grades {', '.join(expected)} in that order; got {names}"
            )
        for prev, cur in zip(v, v[1:], strict=False):
            if cur.pd_below <= prev.pd_below:
                raise ValueError(
                    f"PD band edges must increase from R1 to R{GRADE_COUNT}: {cur.grade}.pd_below "
                    f"({cur.pd_below}) is not above {prev.grade}.pd_below ({prev.pd_below})"
                )
        if v[-1].pd_below != 1:
            raise ValueError(
                f"the worst grade must reach PD 1 (pd_below: 1.0); got {v[-1].pd_below}"
            )
        return v

    # ---- convenience views used by the engines

    @property
    def pd_edges(self) -> list[float]:
        """The inner band edges (R1|R2 .. R9|R10); a PD equal to an edge gets the worse grade."""
        return [g.pd_below for g in self.grades[:-1]]

    @property
    def grade_names(self) -> list[str]:
        return [g.grade for g in self.grades]


# ----------------------------------------------------------------------------- loading


def _where(loc: tuple[Any, ...], data: Mapping[str, Any]) -> str:
    parts = [str(x) for x in loc]
    # name a grade row by its grade (grades[R3].lgd), which is how the author thinks of it
    if len(loc) >= 2 and loc[0] == "grades" and isinstance(loc[1], int):
        rows = data.get("grades")
        if isinstance(rows, list) and loc[1] < len(rows) and isinstance(rows[loc[1]], Mapping):
            name = rows[loc[1]].get("grade")
            if name is not None:
                parts[0:2] = [f"grades[{name}]"]
    return ".".join(parts) or "(top level)"


def _format_errors(err: ValidationError, source: str, data: Mapping[str, Any]) -> str:
    lines = [f"invalid credit policy ({source}):"]
    for e in err.errors():
        where = _where(e["loc"], data)
        msg = e["msg"].removeprefix("Value error, ")
        line = f"  {where}: {msg}"
        if (
            e["type"] not in ("value_error", "missing")
            and "input" in e
            and not isinstance(e["input"], dict | list)
        ):
            line += f"; got {e['input']!r}"
        lines.append(line)
    return "\n".join(lines)


def policy_from_dict(data: Mapping[str, Any], source: str = "mapping") -> CreditPolicy:
    """Validate a policy given as a mapping (the parsed YAML); raise :class:`PolicyError`."""
    if not isinstance(data, Mapping):
        raise PolicyError(f"credit policy ({source}) must be a mapping; got {type(data).__name__}")
    try:
        return CreditPolicy.model_validate(dict(data))
    except ValidationError as e:
        raise PolicyError(_format_errors(e, source, data)) from None


def load_policy(path: Path | str | None = None) -> CreditPolicy:
    """Read and validate the credit policy YAML; ``None`` means the packaged default policy."""
    if path is None:
        text = (
            resources.files("creditflow.policy")
            .joinpath(DEFAULT_POLICY_RESOURCE)
            .read_text(encoding="utf-8")
        )
        source = f"packaged {DEFAULT_POLICY_RESOURCE}"
    else:
        p = Path(path)
        if not p.is_file():
            raise PolicyError(f"credit policy file {p} does not exist")
        text = p.read_text(encoding="utf-8")
        source = str(p)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise PolicyError(f"credit policy {source} is not valid YAML: {e}") from None
    if data is None:
        raise PolicyError(f"credit policy {source} is empty")
    return policy_from_dict(data, source)


# ------------------------------------------------------------------- shared input checks


def as_frame(frame: pl.DataFrame | pl.LazyFrame, what: str) -> pl.DataFrame:
    """Collect a lazy input; reject anything that is not a Polars frame."""
    if isinstance(frame, pl.LazyFrame):
        return frame.collect()
    if isinstance(frame, pl.DataFrame):
        return frame
    raise TypeError(f"{what} must be a polars DataFrame or LazyFrame; got {type(frame).__name__}")


def require_columns(frame: pl.DataFrame, columns: Iterable[str], what: str) -> None:
    """Fail when any of ``columns`` is missing from ``frame``."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} is missing columns {missing}; has {frame.columns}")


def require_money(
    frame: pl.DataFrame, columns: Iterable[str], what: str, max_scale: int = 2
) -> None:
    """Money (and fx rates) must arrive as Decimal, never as float, with at most ``max_scale`` digits."""
    for c in columns:
        dt = frame.schema[c]
        if not isinstance(dt, pl.Decimal) or (dt.scale or 0) > max_scale:
            raise ValueError(
                f"{what}.{c} must be a Decimal with at most {max_scale} fraction digits "
                f"(money stays exact); got {dt}"
            )


def require_unique_key(frame: pl.DataFrame, what: str) -> None:
    """One row per customer and as-of date.

    ``frame`` must already be sorted by ``as_of_date, customer_id`` (the builders check
    their sorted output), so duplicates are neighbours: a linear scan, no hashing.
    """
    same = (pl.col("as_of_date") == pl.col("as_of_date").shift(1)) & (
        pl.col("customer_id") == pl.col("customer_id").shift(1)
    )
    dup = frame.select("as_of_date", "customer_id").filter(same)
    if dup.height:
        first = dup.row(0, named=True)
        raise ValueError(
            f"{what} must have one row per customer_id and as_of_date; got {dup.height} duplicate rows, "
            f"e.g. {first['customer_id']!r} at {first['as_of_date']}"
        )


def to_output(frame: pl.DataFrame, table: Table, what: str) -> pl.DataFrame:
    """The published shape: exactly ``table``'s columns, in order, with its dtypes, sorted by
    as_of_date, customer_id, and one row per customer and as-of date."""
    out = (
        frame.select(table.names).cast(dict(table.polars_schema)).sort("as_of_date", "customer_id")
    )
    require_unique_key(out, what)
    return out


def require_pd(frame: pl.DataFrame, what: str, column: str = "pd_12m") -> None:
    """PDs must be probabilities strictly inside (0, 1), as the contract says."""
    s = frame.get_column(column)
    if not s.dtype.is_float():
        raise ValueError(f"{what}.{column} must be Float64; got {s.dtype}")
    bad = frame.filter(
        ~(pl.col(column).is_not_null() & (pl.col(column) > 0) & (pl.col(column) < 1))
    )
    if bad.height:
        row = bad.row(0, named=True)
        raise ValueError(
            f"{what}.{column} must be in (0, 1) (contract); got {bad.height} rows outside it or null, "
            f"e.g. {row.get('customer_id')!r}: {row[column]!r}"
        )
