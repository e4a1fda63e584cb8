"""Train / validation / test windows of a labelled observation table.

Out of time (the default whenever a time column is given): the distinct as-of
dates are sorted; the oldest ones form the training window, a later block the
validation window (tuning, early stopping, calibration) and the latest block
the test window (reporting only). Whole periods move together, so no as-of
date, and no customer's observation at a given date, is ever split across
windows. Window sizes are fractions of the *periods*, not of the rows:
``n_test = max(1, round(P * test_fraction))``, likewise for validation, and the
training window keeps the rest (minus optional gap periods dropped between
windows, useful when a 12-month target window overlaps the next window).

Without a time column (a modeler's cross-sectional table) the split falls
back to a seeded stratified random split; when group columns (customer ids)
are given, whole groups go to one window, stratified by "group ever
defaulted". The result says which method was used.

Rows with a null target (not yet matured) are left out and counted in the
summary.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np
import polars as pl

SplitMethod = Literal["out_of_time", "stratified_random", "grouped_stratified_random"]
WINDOWS = ("train", "validation", "test")


class SplitError(ValueError):
    """The table cannot be split into usable windows; the message says why."""


@dataclass(frozen=True)
class SplitConfig:
    """How to cut the windows.

    ``valid_fraction`` / ``test_fraction``: share of distinct periods (or of
    rows/groups without a time column) for validation and test.
    ``gap_periods``: periods dropped between train|validation and
    validation|test (out-of-time only). ``min_train_periods``: the training
    window must keep at least this many periods.
    """

    valid_fraction: float = 0.2
    test_fraction: float = 0.2
    gap_periods: int = 0
    min_train_periods: int = 3

    def __post_init__(self) -> None:
        for name in ("valid_fraction", "test_fraction"):
            v = getattr(self, name)
            if not 0.0 < v < 0.5:
                raise ValueError(f"{name} must be in (0, 0.5); got {v}")
        if self.valid_fraction + self.test_fraction >= 0.8:
            raise ValueError(
                "valid_fraction + test_fraction must leave at least 20% for training; "
                f"got {self.valid_fraction} + {self.test_fraction}"
            )
        if not isinstance(self.gap_periods, int) or self.gap_periods < 0:
            raise ValueError(f"gap_periods must be an integer >= 0; got {self.gap_periods!r}")
        if not isinstance(self.min_train_periods, int) or self.min_train_periods < 1:
            raise ValueError(
                f"min_train_periods must be an integer >= 1; got {self.min_train_periods!r}"
            )


@dataclass(frozen=True)
class WindowSummary:
    """One window: its date range (as text; None without a time column), size and default rate."""

    name: str
    first_period: str | None
    last_period: str | None
    n_periods: int | None
    n_rows: int
    n_defaults: int
    default_rate: float


@dataclass(frozen=True)
class SplitSummary:
    """How the table was split, for the training report."""

    method: SplitMethod
    note: str
    time_column: str | None
    windows: tuple[WindowSummary, ...]
    n_unlabelled_dropped: int
    n_gap_rows_dropped: int
    seed: int | None = None

    def window(self, name: str) -> WindowSummary:
        for w in self.windows:
            if w.name == name:
                return w
        raise KeyError(f"no window {name!r}; windows: {[w.name for w in self.windows]}")

    def to_dict(self) -> dict:
        """A JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class Split:
    """The three windows (Polars frames, target cast to Int8 0/1) and their summary."""

    train: pl.DataFrame
    validation: pl.DataFrame
    test: pl.DataFrame
    summary: SplitSummary = field(repr=False)

    def window(self, name: str) -> pl.DataFrame:
        if name not in WINDOWS:
            raise KeyError(f"no window {name!r}; windows: {list(WINDOWS)}")
        return getattr(self, name)


def _checked_target(frame: pl.DataFrame, target: str) -> tuple[pl.DataFrame, int]:
    if target not in frame.columns:
        raise SplitError(f"target column {target!r} is not in the table; columns: {frame.columns}")
    dtype = frame.schema[target]
    if not (dtype == pl.Boolean or dtype.is_integer() or dtype.is_float()):
        raise SplitError(f"target {target!r} must be 0/1 (boolean or numeric); got dtype {dtype}")
    n_null = int(frame[target].is_null().sum())
    if dtype.is_float():
        n_null += int(frame[target].is_nan().sum())
    labelled = frame.filter(
        pl.col(target).is_not_null() & ~pl.col(target).cast(pl.Float64).is_nan()
    )
    if labelled.height == 0:
        raise SplitError(f"target {target!r} has no labelled rows (all {frame.height} are null)")
    values = labelled[target].cast(pl.Float64)
    bad = values.filter((values != 0) & (values != 1))
    if bad.len() > 0:
        raise SplitError(
            f"target {target!r} must be 0/1; got values such as {bad.unique().sort().head(5).to_list()}"
        )
    n_pos = int(values.sum())
    if n_pos == 0 or n_pos == labelled.height:
        raise SplitError(
            f"target {target!r} is constant ({'all 1' if n_pos else 'all 0'} in {labelled.height} "
            "labelled rows): a default model needs both defaulters and non-defaulters"
        )
    return labelled.with_columns(pl.col(target).cast(pl.Int8)), n_null


def _summarise(name: str, df: pl.DataFrame, target: str, time_column: str | None) -> WindowSummary:
    n_defaults = int(df[target].sum()) if df.height else 0
    if time_column is not None and df.height:
        first, last = df[time_column].min(), df[time_column].max()
        n_periods: int | None = df[time_column].n_unique()
        first_s, last_s = str(first), str(last)
    else:
        first_s = last_s = None
        n_periods = None if time_column is None else 0
    return WindowSummary(
        name=name,
        first_period=first_s,
        last_period=last_s,
        n_periods=n_periods,
        n_rows=df.height,
        n_defaults=n_defaults,
        default_rate=n_defaults / df.height if df.height else float("nan"),
    )


def _check_both_classes(summaries: dict[str, WindowSummary]) -> None:
    for name in WINDOWS:
        s = summaries[name]
        if s.n_defaults == 0 or s.n_defaults == s.n_rows:
            where = (
                f" ({s.first_period}..{s.last_period}, {s.n_periods} periods)"
                if s.first_period is not None
                else ""
            )
            only = "defaulters" if s.n_defaults else "non-defaulters"
            raise SplitError(
                f"the {name} window{where} has only {only} ({s.n_defaults} defaults in {s.n_rows} rows); "
                "it needs both classes: use more periods, larger windows (valid_fraction/test_fraction) "
                "or a longer history"
            )


def split_windows(
    frame: pl.DataFrame | pl.LazyFrame,
    *,
    target: str,
    time_column: str | None,
    config: SplitConfig | None = None,
    group_columns: Sequence[str] = (),
    seed: int = 42,
) -> Split:
    """Split labelled observations into train / validation / test windows.

    With ``time_column``: out of time, by distinct as-of dates (oldest = train,
    latest = test). Without: a seeded stratified split, by whole groups when
    ``group_columns`` (e.g. customer id) are given. Raises :class:`SplitError`
    with the reason when the target is not 0/1, is constant, there are too few
    periods, or a window ends up with a single class.
    """
    config = config or SplitConfig()
    df = frame.collect() if isinstance(frame, pl.LazyFrame) else frame
    if not isinstance(df, pl.DataFrame):
        raise TypeError(
            f"frame must be a polars DataFrame or LazyFrame; got {type(frame).__name__}"
        )
    labelled, n_null = _checked_target(df, target)
    if time_column is not None:
        return _split_out_of_time(labelled, target, time_column, config, n_null)
    missing = [c for c in group_columns if c not in df.columns]
    if missing:
        raise SplitError(f"group columns {missing} are not in the table; columns: {df.columns}")
    return _split_stratified(labelled, target, config, list(group_columns), seed, n_null)


def _split_out_of_time(
    df: pl.DataFrame, target: str, time_column: str, config: SplitConfig, n_null: int
) -> Split:
    if time_column not in df.columns:
        raise SplitError(f"time column {time_column!r} is not in the table; columns: {df.columns}")
    n_time_null = int(df[time_column].is_null().sum())
    if n_time_null:
        raise SplitError(
            f"time column {time_column!r} has {n_time_null} null values; every observation needs a date"
        )
    periods = df[time_column].unique().sort()
    n_periods = periods.len()
    n_test = max(1, round(n_periods * config.test_fraction))
    n_valid = max(1, round(n_periods * config.valid_fraction))
    n_train = n_periods - n_test - n_valid - 2 * config.gap_periods
    needed = config.min_train_periods + 2 + 2 * config.gap_periods
    if n_train < config.min_train_periods:
        raise SplitError(
            f"too few periods for an out-of-time split: {n_periods} distinct {time_column!r} values "
            f"({periods.min()}..{periods.max()}); need at least {needed} "
            f"({config.min_train_periods} train + validation + test + {2 * config.gap_periods} gap periods) "
            f"and with valid_fraction={config.valid_fraction}, test_fraction={config.test_fraction} "
            f"this table leaves {max(n_train, 0)} training periods"
        )
    g = config.gap_periods
    train_periods = periods.slice(0, n_train)
    valid_periods = periods.slice(n_train + g, n_valid)
    test_periods = periods.slice(n_periods - n_test, n_test)
    windows = {
        "train": df.filter(pl.col(time_column).is_in(train_periods.implode())),
        "validation": df.filter(pl.col(time_column).is_in(valid_periods.implode())),
        "test": df.filter(pl.col(time_column).is_in(test_periods.implode())),
    }
    n_gap_rows = df.height - sum(w.height for w in windows.values())
    summaries = {k: _summarise(k, v, target, time_column) for k, v in windows.items()}
    _check_both_classes(summaries)
    note = (
        f"out of time on {time_column!r}: {n_train} train, {n_valid} validation, {n_test} test periods"
        + (f", {g} gap period(s) dropped before validation and before test" if g else "")
    )
    return Split(
        **windows,
        summary=SplitSummary(
            method="out_of_time",
            note=note,
            time_column=time_column,
            windows=tuple(summaries[k] for k in WINDOWS),
            n_unlabelled_dropped=n_null,
            n_gap_rows_dropped=n_gap_rows,
        ),
    )


def _stratified_assignment(
    strata: np.ndarray, config: SplitConfig, rng: np.random.Generator
) -> np.ndarray:
    """0/1/2 (train/validation/test) per unit, the same shares within each stratum."""
    out = np.zeros(strata.size, dtype=np.int8)
    for value in (0, 1):
        idx = np.flatnonzero(strata == value)
        idx = idx[rng.permutation(idx.size)]
        n_test = int(round(idx.size * config.test_fraction))
        n_valid = int(round(idx.size * config.valid_fraction))
        out[idx[:n_test]] = 2
        out[idx[n_test : n_test + n_valid]] = 1
    return out


def _split_stratified(
    df: pl.DataFrame,
    target: str,
    config: SplitConfig,
    group_columns: list[str],
    seed: int,
    n_null: int,
) -> Split:
    rng = np.random.default_rng(seed)
    if group_columns:
        groups = (
            df.group_by(group_columns)
            .agg(pl.col(target).max().alias("_ever_defaulted"))
            .sort(group_columns)
        )
        assignment = _stratified_assignment(groups["_ever_defaulted"].to_numpy(), config, rng)
        keyed = groups.select(group_columns).with_columns(pl.Series("_window", assignment))
        assigned = df.with_row_index("_row").join(keyed, on=group_columns, how="left").sort("_row")
        window_of_row = assigned["_window"].to_numpy()
        method: SplitMethod = "grouped_stratified_random"
        note = (
            f"no time column: seeded (seed={seed}) stratified random split of whole groups "
            f"{group_columns} by 'ever defaulted'; NOT out of time"
        )
    else:
        window_of_row = _stratified_assignment(df[target].to_numpy(), config, rng)
        method = "stratified_random"
        note = (
            f"no time column: seeded (seed={seed}) stratified random split of rows; NOT out of time"
        )
    windows = {name: df.filter(pl.Series(window_of_row == i)) for i, name in enumerate(WINDOWS)}
    summaries = {k: _summarise(k, v, target, None) for k, v in windows.items()}
    for name in WINDOWS:
        if windows[name].height == 0:
            raise SplitError(
                f"the {name} window is empty: the table has too few rows ({df.height}) to split"
            )
    _check_both_classes(summaries)
    return Split(
        **windows,
        summary=SplitSummary(
            method=method,
            note=note,
            time_column=None,
            windows=tuple(summaries[k] for k in WINDOWS),
            n_unlabelled_dropped=n_null,
            n_gap_rows_dropped=0,
            seed=seed,
        ),
    )
