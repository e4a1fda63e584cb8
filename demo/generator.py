"""Demo data generator: a synthetic B2B trade-credit world written as landing files.

``generate(out_dir, ...)`` simulates customers month by month and writes, under
``out_dir``, one folder per landing family in the contract's formats
(``customers/``, ``ledger/``, ``bureau/``, ``bureau_events/``, ``fx_rates/``),
plus the ground truth the tests use (``generator_truth.json`` and
``generator_truth/*.parquet``), which ingest never reads.

The data-generating process, its parameters and why risk is learnable but not
trivially so are described in ``docs/demo-data.md``. In short: every company
has a latent risk log-odds that drifts month to month; a healthy company falls
into distress with a hazard that depends on it and an unobserved macro factor;
distress shows up (noisily, with a lag) in payment delays, partial payments,
bureau scores, paydex, lawsuits and other bureau events; a distressed customer
may recover or default, and a defaulted customer stops paying, so its open
invoices go 90+ days past due.

Money is integer cents throughout (never a float on its way to the file);
dates are integer days since 1970-01-01 until they are formatted.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from creditflow.core import schema
from creditflow.demo import badrows
from creditflow.demo.world import (
    CURRENCY_VALUE_CNY,
    DEFAULT_WORLD,
    EPOCH,
    INDUSTRIES,
    OVERSEAS_REGION,
    REGIONS,
    TERM_OPTIONS,
    World,
    WorldParameters,
    build_world,
)
from creditflow.demo.writers import (
    FileFormat,
    bureau_format,
    column_order,
    customers_format,
    day_series,
    events_format,
    fx_format,
    ledger_format,
    money,
    padded,
    write_frame,
)

FAMILIES = ("customers", "ledger", "bureau", "bureau_events", "fx_rates")
TRUTH_JSON = "generator_truth.json"
TRUTH_DIR = "generator_truth"
MAX_CUSTOMERS = 999_999  # customer ids are C + 6 digits

INVOICE, PAYMENT, CREDIT_NOTE, WRITE_OFF = 0, 1, 2, 3
EVENT_LAWSUIT, EVENT_TAX, EVENT_EXECUTION, EVENT_OWNER, EVENT_DOWNGRADE, EVENT_BANKRUPTCY = range(6)
_EVENT_NAMES = ("LAWSUIT", "TAX_ARREARS", "EXECUTION_ORDER", "OWNER_CHANGE", "RATING_DOWNGRADE", "BANKRUPTCY_FILING")
_NO_DAY = np.iinfo(np.int64).max


@dataclass(frozen=True)
class GenerationSummary:
    """What ``generate`` wrote: files, row counts, injected bad input and world statistics.

    File paths are relative to ``out_dir`` with ``/`` separators. ``rows_by_file``
    counts data rows (header excluded) including injected bad rows;
    ``bad_rows_by_file`` maps a file to ``{reason_code: rows}`` and lists only
    files that received bad rows. ``bad_files`` are extra files ingest must
    reject whole, each with its reason code.
    """

    parameters: Mapping[str, Any]
    files: Mapping[str, tuple[str, ...]]
    file_formats: Mapping[str, str]
    rows_by_file: Mapping[str, int]
    bad_rows_by_file: Mapping[str, Mapping[str, int]]
    bad_rows_by_reason: Mapping[str, int]
    bad_files: tuple[Mapping[str, str], ...]
    customers: int
    customers_initial: int
    bureau_companies: int
    defaults: int
    defaults_with_write_off: int
    bankruptcies: int
    customer_years: float
    annual_default_rate: float
    ledger_entries_by_type: Mapping[str, int]

    @property
    def bad_rows_total(self) -> int:
        return sum(self.bad_rows_by_reason.values())

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict (tuples become lists)."""
        return {
            "parameters": dict(self.parameters),
            "files": {k: list(v) for k, v in self.files.items()},
            "file_formats": dict(self.file_formats),
            "rows_by_file": dict(self.rows_by_file),
            "bad_rows_by_file": {k: dict(v) for k, v in self.bad_rows_by_file.items()},
            "bad_rows_by_reason": dict(self.bad_rows_by_reason),
            "bad_files": [dict(b) for b in self.bad_files],
            "customers": self.customers,
            "customers_initial": self.customers_initial,
            "bureau_companies": self.bureau_companies,
            "defaults": self.defaults,
            "defaults_with_write_off": self.defaults_with_write_off,
            "bankruptcies": self.bankruptcies,
            "customer_years": self.customer_years,
            "annual_default_rate": self.annual_default_rate,
            "ledger_entries_by_type": dict(self.ledger_entries_by_type),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GenerationSummary:
        kw = dict(d)
        kw["files"] = {k: tuple(v) for k, v in d["files"].items()}
        kw["bad_files"] = tuple(dict(b) for b in d["bad_files"])
        return cls(**kw)


def _check_arguments(customers: int, months: int, seed: int, bad_rows: float, start: date, base_currency: str) -> None:
    if not isinstance(customers, int) or not 1 <= customers <= MAX_CUSTOMERS:
        raise ValueError(f"customers must be an integer 1..{MAX_CUSTOMERS}; got {customers!r}")
    if not isinstance(months, int) or not 1 <= months <= 600:
        raise ValueError(f"months must be an integer 1..600; got {months!r}")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}")
    if not 0.0 <= bad_rows <= 0.5:
        raise ValueError(f"bad_rows must be a rate in 0..0.5; got {bad_rows!r}")
    if not isinstance(start, date) or start.day != 1:
        raise ValueError(f"start must be the first day of a month; got {start!r}")
    if base_currency not in CURRENCY_VALUE_CNY:
        raise ValueError(f"base_currency must be one of {sorted(CURRENCY_VALUE_CNY)}; got {base_currency!r}")


def _prepare_out_dir(out_dir: Path, overwrite: bool) -> None:
    ours = [out_dir / f for f in FAMILIES] + [out_dir / TRUTH_DIR, out_dir / TRUTH_JSON]
    existing = [p for p in ours if p.exists()]
    if existing and not overwrite:
        names = ", ".join(p.name for p in existing)
        raise FileExistsError(f"{out_dir} already holds generated data ({names}); pass overwrite=True or use an empty directory")
    for p in existing:
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)


def generate(
    out_dir: Path,
    *,
    customers: int = 500,
    months: int = 36,
    seed: int = 7,
    bad_rows: float = 0.0,
    start: date = date(2022, 1, 1),
    base_currency: str = "CNY",
    progress: Callable[[str], None] | None = None,
    world: WorldParameters | None = None,
    overwrite: bool = False,
) -> GenerationSummary:
    """Write a synthetic landing zone of ``customers`` customers over ``months`` months to ``out_dir``.

    The same arguments always give byte-identical files. ``bad_rows`` is the
    share of extra bad rows injected into each data file (plus a few bad files);
    the good rows do not depend on it. ``world`` overrides the process
    parameters (``WorldParameters``); ``overwrite`` replaces the generator's own
    folders in a non-empty ``out_dir`` (nothing else is touched).
    """
    _check_arguments(customers, months, seed, bad_rows, start, base_currency)
    out_dir = Path(out_dir)
    _prepare_out_dir(out_dir, overwrite)
    sim = _Simulation(
        out_dir=out_dir,
        n_customers=customers,
        months=months,
        seed=seed,
        bad_rate=float(bad_rows),
        start=start,
        base_currency=base_currency,
        progress=progress or (lambda _msg: None),
        p=world or DEFAULT_WORLD,
    )
    return sim.run()


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _day(d: int) -> date:
    return EPOCH + timedelta(days=int(d))


@dataclass
class _Pending:
    """Ledger entries planned for a later month (payments, credit notes, write-offs)."""

    kind: np.ndarray = field(default_factory=lambda: np.empty(0, np.int8))
    cust: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    inv: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    day: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    amount: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    due: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    seq: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))

    _cols = ("kind", "cust", "inv", "day", "amount", "due", "seq")

    def add(self, **cols: np.ndarray) -> None:
        for c in self._cols:
            setattr(self, c, np.concatenate([getattr(self, c), cols[c].astype(getattr(self, c).dtype)]))

    def take(self, mask: np.ndarray) -> _Pending:
        """Split off the rows in ``mask``; they are removed from ``self`` and returned."""
        out = _Pending(**{c: getattr(self, c)[mask] for c in self._cols})
        keep = ~mask
        for c in self._cols:
            setattr(self, c, getattr(self, c)[keep])
        return out


class _Simulation:
    def __init__(self, *, out_dir: Path, n_customers: int, months: int, seed: int, bad_rate: float,
                 start: date, base_currency: str, progress: Callable[[str], None], p: WorldParameters):
        self.out = out_dir
        self.months = months
        self.seed = seed
        self.bad_rate = bad_rate
        self.start = start
        self.base = base_currency
        self.progress = progress
        self.p = p
        world_seq, bad_seq = np.random.SeedSequence([seed, 20_221]).spawn(2)
        self.rng = np.random.default_rng(world_seq)
        self.bad_rng = np.random.default_rng(bad_seq)

        # calendar
        self.month_start = np.empty(months + 1, dtype=np.int64)
        self.labels: list[str] = []
        self.cal_month = np.empty(months, dtype=np.int64)
        y, mo = start.year, start.month
        for i in range(months + 1):
            self.month_start[i] = (date(y, mo, 1) - EPOCH).days
            if i < months:
                self.labels.append(f"{y:04d}-{mo:02d}")
                self.cal_month[i] = mo
            mo += 1
            if mo == 13:
                y, mo = y + 1, 1
        self.end_day = int(self.month_start[-1])
        self.snapshot_months = np.arange(0, months, p.snapshot_every_months, dtype=np.int64)
        self.snapshot_days = self.month_start[self.snapshot_months]

        foreign = [c for c in ("USD", "EUR", "CNY") if c != base_currency][:2]
        self.currencies = [base_currency, *foreign]
        self.currency_level = np.array([CURRENCY_VALUE_CNY[c] / CURRENCY_VALUE_CNY[base_currency] for c in self.currencies])

        self.w: World = build_world(
            self.rng,
            n_customers=n_customers,
            snapshot_days=self.snapshot_days,
            snapshot_months=self.snapshot_months,
            start_day=int(self.month_start[0]),
            chinese_names=base_currency == "CNY",
            p=p,
        )
        self._init_state()
        self.customer_ids = pl.select(padded("C", pl.int_range(1, n_customers + 1), 6)).to_series()
        self.currency_codes = pl.Series(self.currencies, dtype=pl.String)
        self.registration_ids = pl.Series([r or None for r in self.w.registration_id.tolist()], dtype=pl.String)
        self.ctx = badrows.BadRowContext(rng=self.bad_rng, rate=bad_rate)
        self.files: dict[str, list[str]] = {f: [] for f in FAMILIES}
        self.formats: dict[str, str] = {}
        self.rows: dict[str, int] = {}
        self.entries_by_type = np.zeros(4, dtype=np.int64)

    # ------------------------------------------------------------------ state

    def _init_state(self) -> None:
        w, p, rng = self.w, self.p, self.rng
        n, c = w.n_customers, w.n_companies
        self.is_cust = np.arange(c) < n
        stationary_sd = p.risk_walk_sd / np.sqrt(2 * p.risk_mean_reversion)
        self.x = w.base_risk + stationary_sd * rng.standard_normal(c)
        self.distress = np.zeros(c, dtype=bool)
        self.status = np.ones(c, dtype=np.int8)  # 0 not yet trading, 1 active, 2 defaulted, 3 churned
        self.status[:n][w.trade_start_month > 0] = 0
        self.r_prev = self.x.copy()
        self.delay_prev = self._mean_delay(self.x, self.distress)
        self.default_day = np.full(c, _NO_DAY, dtype=np.int64)
        self.default_month = np.full(c, -1, dtype=np.int64)
        self.bankruptcy_day = np.full(c, _NO_DAY, dtype=np.int64)
        self.last_score = np.full(c, -1, dtype=np.int64)
        self.lawsuits = np.zeros((12, c), dtype=np.int16)
        self.last_tax_month = np.full(c, -100, dtype=np.int64)
        self.fin = np.zeros((c, 6), dtype=np.int64)
        self.fin_null = np.ones((c, 6), dtype=bool)
        self.macro = 0.0
        self.macro_beta = np.array([i.macro_beta for i in INDUSTRIES])[w.industry_risk]
        # customers
        self.size_cur = w.size[:n] / self.currency_level[w.currency]
        self.terms = w.terms.copy()
        self.limit = np.zeros(n, dtype=np.int64)
        self.bf_carry = np.zeros(n, dtype=np.int64)
        self.expected_default_day = np.full(n, _NO_DAY, dtype=np.int64)
        self.dpd90_day = np.full(n, _NO_DAY, dtype=np.int64)
        self.write_off_day = np.full(n, _NO_DAY, dtype=np.int64)
        self.churn_month = np.full(n, -1, dtype=np.int64)
        self.x_at_start = np.full(n, np.nan)
        self.x_at_start[w.trade_start_month == 0] = self.x[:n][w.trade_start_month == 0]
        self.pending = _Pending()
        self.seq = 0
        self.inv_counter = 0
        self.id_counters = np.zeros(4, dtype=np.int64)
        self.pending_bk_comp = np.empty(0, dtype=np.int64)
        self.pending_bk_day = np.empty(0, dtype=np.int64)
        self.fx_log = np.zeros(len(self.currencies))
        self.active_months = 0
        self.prev_ledger_good: pl.DataFrame | None = None
        self.fx_sample: pl.DataFrame | None = None
        self.ledger_sample: pl.DataFrame | None = None

    def _mean_delay(self, r: np.ndarray, distress: np.ndarray) -> np.ndarray:
        p = self.p
        return (
            p.delay_base_days
            + p.delay_risk_days * np.exp(p.delay_risk_slope * (r - p.risk_mean_logit))
            + p.delay_distress_days * distress
            + self.w.delay_offset
        )

    def _score(self, r: np.ndarray, noise: np.ndarray) -> np.ndarray:
        p = self.p
        raw = p.score_center - p.score_slope * (r - p.risk_mean_logit) + self.w.score_noise + p.score_noise * noise
        return np.clip(np.round(raw), 0, 1000).astype(np.int64)

    # ------------------------------------------------------------------- run

    def run(self) -> GenerationSummary:
        self.truth_writer: pq.ParquetWriter | None = None
        (self.out / TRUTH_DIR).mkdir(parents=True, exist_ok=True)
        try:
            for m in range(self.months):
                self._month(m)
        finally:
            if self.truth_writer is not None:
                self.truth_writer.close()
        bad_files: list[dict[str, str]] = []
        if self.bad_rate > 0:
            bad_files = badrows.write_bad_files(
                self.out,
                rng=self.bad_rng,
                ledger_sample=self.ledger_sample,
                fx_sample=self.fx_sample,
                months=self.labels,
                snapshot_date=_day(self.snapshot_days[-1]).isoformat(),
            )
        summary = self._summary(bad_files)
        self._write_truth(summary)
        return summary

    def _month(self, m: int) -> None:
        s, e = int(self.month_start[m]), int(self.month_start[m + 1])
        n = self.w.n_customers
        p, rng = self.p, self.rng
        # macro factor (unobserved): AR(1)
        self.macro = p.macro_ar * self.macro + p.macro_sd * rng.standard_normal()
        # customers whose first trading month this is
        newly = np.zeros(self.w.n_companies, dtype=bool)
        newly[:n] = (self.status[:n] == 0) & (self.w.trade_start_month == m)
        self.status[newly] = 1
        self.x_at_start[newly[:n]] = self.x[:n][newly[:n]]
        if m % self.p.snapshot_every_months == 0:
            self._customers_snapshot(m, s)
        downgrades = self._bureau(m, s, e)
        self._transitions(m, s, e)
        invoices = self._invoices(m, s, e)
        self._defaults(m)
        ledger_rows = self._ledger(m, s, e, invoices)
        self._events(m, s, e, downgrades)
        self._fx(m, s, e)
        self._truth_panel(m, s)
        self.active_months += int((self.status[:n] == 1).sum())
        self.progress(f"{self.labels[m]}: {ledger_rows} ledger rows")

    # ------------------------------------------------------------ processes

    def _transitions(self, m: int, s: int, e: int) -> None:
        p, rng, w = self.p, self.rng, self.w
        c = w.n_companies
        eps = rng.standard_normal(c)
        u = rng.random((4, c))
        day = s + rng.integers(0, e - s, c)
        self.x = self.x + p.risk_mean_reversion * (w.base_risk - self.x) + p.risk_walk_sd * eps
        self.hazard = _sigmoid(self.x + self.macro_beta * self.macro)
        active = self.status == 1
        healthy = active & ~self.distress
        new_distress = healthy & (u[0] < self.hazard)
        sudden = new_distress & (u[1] < p.p_sudden_default)
        was_distressed = active & self.distress
        distress_default = was_distressed & (u[2] < p.p_distress_default)
        recover = was_distressed & ~distress_default & (u[2] < p.p_distress_default + p.p_distress_recover)
        default_now = sudden | distress_default
        churn = healthy & ~new_distress & self.is_cust & (u[3] < p.churn_monthly)
        self.distress = (self.distress | new_distress) & ~recover
        self.status[default_now] = 2
        self.status[churn] = 3
        self.default_day[default_now] = day[default_now]
        self.default_month[default_now] = m
        self.churn_month[churn[: w.n_customers]] = m
        self.default_now = default_now
        self.r = self.x + p.distress_jump * self.distress

    def _invoices(self, m: int, s: int, e: int) -> dict[str, np.ndarray]:
        p, rng, w = self.p, self.rng, self.w
        n = w.n_customers
        dim = e - s
        trading = np.flatnonzero((self.status[:n] == 1) | self.default_now[:n])
        distress = self.distress[trading]
        mu = (
            w.invoice_rate[trading]
            * p.season[self.cal_month[m] - 1]
            * w.growth[trading] ** (m / 12)
            * np.where(distress, p.distress_volume_factor, 1.0)
        )
        count = rng.poisson(mu)
        defaulting = self.default_now[trading]
        count[defaulting] = np.maximum(count[defaulting], 1)
        cust = np.repeat(trading, count)
        k = cust.size
        doc = s + rng.integers(0, dim, k)
        first = np.cumsum(count) - count  # index of each customer's first invoice
        forced = first[defaulting & (count > 0)]
        doc[forced] = self.default_day[cust[forced]]  # the customer still orders on the day it stops paying
        amount_noise = rng.standard_normal(k)
        amount = np.maximum(
            np.round(self.size_cur[cust] * np.exp(-0.5 * p.invoice_amount_log_sd**2 + p.invoice_amount_log_sd * amount_noise) * 100),
            p.min_invoice_cents,
        ).astype(np.int64)
        order = np.lexsort((cust, doc))
        cust, doc, amount = cust[order], doc[order], amount[order]
        inv = self.inv_counter + 1 + np.arange(k, dtype=np.int64)
        self.inv_counter += k
        due = doc + self.terms[cust]

        # credit notes: a share of invoices, a few of them credited in full
        u_cn = rng.random(k)
        cn_frac = rng.uniform(0.05, 0.30, k)
        cn_day = doc + rng.integers(1, 11, k)
        no_cn = self.default_now[cust]  # keep a defaulter's last invoices fully outstanding
        has_cn = (u_cn < p.credit_note_rate) & ~no_cn
        full = (u_cn < p.full_credit_rate) & ~no_cn
        cn_amount = np.where(full, amount, np.maximum(np.round(amount * cn_frac), 1)).astype(np.int64)
        remaining = np.where(has_cn, amount - cn_amount, amount)

        # payment plan: delay after due date depends on current risk and distress
        mean_delay = self._mean_delay(self.r, self.distress)[cust]
        delay = np.clip(np.round(mean_delay + p.delay_noise_days * rng.standard_normal(k)), -10, p.max_delay_days)
        pay = np.maximum(due + delay.astype(np.int64), doc + 1)
        pay = np.where(has_cn, np.maximum(pay, cn_day + 1), pay)
        pay = np.minimum(pay, due + p.max_delay_days)
        rel = self.r[cust] - p.risk_mean_logit
        p_partial = p.partial_base + p.partial_risk * _sigmoid(rel) + p.partial_distress * self.distress[cust]
        partial = (rng.random(k) < p_partial) & ~full
        frac = rng.uniform(0.3, 0.7, k)
        p1_amount = np.maximum(np.round(remaining * frac), 1).astype(np.int64)
        p1_day = doc + 1 + np.floor(rng.random(k) * np.maximum(pay - doc - 1, 0)).astype(np.int64)
        p1_day = np.where(has_cn, np.maximum(p1_day, cn_day + 1), p1_day)
        p1_day = np.minimum(p1_day, pay)

        # balance-forward customers pay cash on account: make their payments settle invoices in
        # due-date order, so the contract's oldest-due-first application matches the plan
        bf = self.w.is_balance_forward[cust]
        if bf.any():
            idx = np.flatnonzero(bf)
            o = idx[np.lexsort((inv[idx], due[idx], cust[idx]))]
            cu = cust[o]
            chain = np.where(full[o], cn_day[o], pay[o])
            val = np.maximum(chain, self.bf_carry[cu])
            starts = np.concatenate([[True], cu[1:] != cu[:-1]])
            g = np.cumsum(starts) - 1
            big = np.int64(1) << 24
            cm = np.maximum.accumulate(g * big + val) - g * big
            prev = np.empty_like(cm)
            prev[1:] = cm[:-1]
            prev[starts] = self.bf_carry[cu[starts]]
            pay[o] = np.where(full[o], pay[o], cm)
            p1_day[o] = np.maximum(p1_day[o], prev)
            ends = np.concatenate([cu[1:] != cu[:-1], [True]])
            self.bf_carry[cu[ends]] = cm[ends]

        seq0 = self.seq
        self.pending.add(
            kind=np.full(int(has_cn.sum()), CREDIT_NOTE), cust=cust[has_cn], inv=inv[has_cn],
            day=cn_day[has_cn], amount=cn_amount[has_cn], due=due[has_cn],
            seq=seq0 + np.flatnonzero(has_cn) * 3,
        )
        self.pending.add(
            kind=np.full(int(partial.sum()), PAYMENT), cust=cust[partial], inv=inv[partial],
            day=p1_day[partial], amount=p1_amount[partial], due=due[partial],
            seq=seq0 + np.flatnonzero(partial) * 3 + 1,
        )
        paid = ~full
        final_amount = np.where(partial, remaining - p1_amount, remaining)
        self.pending.add(
            kind=np.full(int(paid.sum()), PAYMENT), cust=cust[paid], inv=inv[paid],
            day=pay[paid], amount=final_amount[paid], due=due[paid],
            seq=seq0 + np.flatnonzero(paid) * 3 + 2,
        )
        self.seq += 3 * k
        return {"cust": cust, "inv": inv, "doc": doc, "due": due, "amount": amount}

    def _defaults(self, m: int) -> None:
        """Customers defaulting this month stop paying; plan write-offs and bankruptcy filings."""
        p, rng, w = self.p, self.rng, self.w
        n, c = w.n_customers, w.n_companies
        u_wo = rng.random(c)
        u_bk = rng.random(c)
        wo_lag = rng.integers(p.write_off_lag_days[0], p.write_off_lag_days[1] + 1, c)
        bk_lag = rng.integers(p.bankruptcy_lag_days[0], p.bankruptcy_lag_days[1] + 1, c)
        d_all = self.default_now
        bk = d_all & w.has_registration & (u_bk < p.bankruptcy_share)
        self.bankruptcy_day[bk] = self.default_day[bk] + bk_lag[bk]
        self.pending_bk_comp = np.concatenate([self.pending_bk_comp, np.flatnonzero(bk)])
        self.pending_bk_day = np.concatenate([self.pending_bk_day, self.bankruptcy_day[bk]])

        d = d_all[:n]
        if not d.any():
            return
        pend = self.pending
        sel = (pend.kind == PAYMENT) & d[pend.cust] & (pend.day >= self.default_day[pend.cust])
        cancelled = pend.take(sel)
        inv_ids, first, inverse = np.unique(cancelled.inv, return_index=True, return_inverse=True)
        outstanding = np.zeros(inv_ids.size, dtype=np.int64)
        np.add.at(outstanding, inverse, cancelled.amount)
        inv_cust = cancelled.cust[first]
        inv_due = cancelled.due[first]
        inv_seq = cancelled.seq[first]
        material = outstanding * self.currency_level[w.currency[inv_cust]] > 100 * 100
        dpd90 = np.full(n, _NO_DAY, dtype=np.int64)
        np.minimum.at(dpd90, inv_cust[material], inv_due[material] + 90)
        self.dpd90_day[d] = dpd90[d]

        wo_cust = d & (u_wo[:n] < p.write_off_share)
        self.write_off_day[wo_cust] = self.default_day[:n][wo_cust] + wo_lag[:n][wo_cust]
        rows = wo_cust[inv_cust]
        self.pending.add(
            kind=np.full(int(rows.sum()), WRITE_OFF), cust=inv_cust[rows], inv=inv_ids[rows],
            day=self.write_off_day[inv_cust[rows]], amount=outstanding[rows], due=inv_due[rows], seq=inv_seq[rows],
        )
        self.expected_default_day[d] = np.minimum(
            np.minimum(self.dpd90_day[d], self.write_off_day[d]), self.bankruptcy_day[:n][d]
        )

    # --------------------------------------------------------------- ledger

    def _ledger(self, m: int, s: int, e: int, inv: dict[str, np.ndarray]) -> int:
        emitted = self.pending.take(self.pending.day < e)
        assert (emitted.day >= s).all(), "a planned entry fell into a month already written"
        k_inv = inv["cust"].size
        kind = np.concatenate([np.zeros(k_inv, dtype=np.int8), emitted.kind])
        cust = np.concatenate([inv["cust"], emitted.cust])
        ref = np.concatenate([inv["inv"], emitted.inv])
        day = np.concatenate([inv["doc"], emitted.day])
        due = np.concatenate([inv["due"], np.full(emitted.kind.size, -1, dtype=np.int64)])
        amount = np.concatenate([inv["amount"], emitted.amount])
        seq = np.concatenate([np.full(k_inv, -1, dtype=np.int64), emitted.seq])
        order = np.lexsort((seq, ref, kind, day))
        kind, cust, ref, day, due, amount = kind[order], cust[order], ref[order], day[order], due[order], amount[order]
        num = ref.copy()
        for t in (PAYMENT, CREDIT_NOTE, WRITE_OFF):
            sel = kind == t
            cnt = int(sel.sum())
            num[sel] = self.id_counters[t] + 1 + np.arange(cnt)
            self.id_counters[t] += cnt
            self.entries_by_type[t] += cnt
        self.entries_by_type[INVOICE] += k_inv

        fmt = ledger_format(m)
        is_cash = (kind == PAYMENT) & self.w.is_balance_forward[cust]
        num_col = pl.Series("num", num)
        good = pl.DataFrame(
            {
                # payment ids are 12-digit numbers with leading zeros ("00" + 10 digits)
                "entry_id": pl.Series(["INV", "00", "CN", "WO"]).gather(pl.Series(kind.astype(np.int64))),
                "customer_id": self.customer_ids.gather(pl.Series(cust)),
                "entry_type": pl.Series(list(schema.ENTRY_TYPES)).gather(pl.Series(kind.astype(np.int64))),
                "document_date": day_series(day, fmt.date_format),
                "due_date": day_series(due, fmt.date_format, due < 0),
                "amount": pl.Series(amount),
                "currency": self.currency_codes.gather(pl.Series(self.w.currency[cust].astype(np.int64))),
                "applies_to": _nullable(ref, (kind == INVOICE) | is_cash),
            }
        ).with_columns(
            entry_id=pl.concat_str([pl.col("entry_id"), num_col.cast(pl.String).str.zfill(10)]),
            amount=money(pl.col("amount")),
            applies_to=pl.concat_str([pl.lit("INV"), pl.col("applies_to").cast(pl.String).str.zfill(10)]),
        )
        if fmt.extra_column:
            batch = pl.concat_str([pl.lit(f"B{self.labels[m]}-"), (pl.int_range(pl.len()) // 500 + 1).cast(pl.String).str.zfill(4)])
            good = good.with_columns(batch.alias(fmt.extra_column))
        good = good.select(column_order(schema.LEDGER.names, fmt))
        rel = f"ledger/ledger_{self.labels[m]}{fmt.suffix}"
        if self.bad_rate > 0:
            self.ctx.prev_ledger = self.prev_ledger_good
            out = badrows.inject(good, "ledger", rel, fmt, self.ctx)
            sample_n = min(good.height, 2000)
            pick = np.sort(self.bad_rng.choice(good.height, sample_n, replace=False)) if sample_n else np.empty(0, np.int64)
            self.prev_ledger_good = good.select(schema.LEDGER.names)[pick]
            if self.ledger_sample is None and m >= min(2, self.months - 1):
                self.ledger_sample = good.select(schema.LEDGER.names).head(25)
        else:
            out = good
        self._write("ledger", rel, out, fmt)
        return out.height

    def _currency_expr(self, idx: pl.Expr) -> pl.Expr:
        c = self.currencies
        return pl.when(idx == 0).then(pl.lit(c[0])).when(idx == 1).then(pl.lit(c[1])).otherwise(pl.lit(c[2]))

    def _write(self, family: str, rel: str, df: pl.DataFrame, fmt: FileFormat) -> None:
        write_frame(df, self.out / rel, fmt)
        self.files[family].append(rel)
        self.formats[rel] = fmt.describe()
        self.rows[rel] = df.height

    # ------------------------------------------------------------ customers

    def _customers_snapshot(self, m: int, s: int) -> None:
        rng, w = self.rng, self.w
        n = w.n_customers
        k = int(np.searchsorted(self.snapshot_months, m))
        u_terms = rng.random(n)
        step = np.where(rng.random(n) < 0.5, -1, 1)
        score_noise = rng.standard_normal(w.n_companies)
        if k > 0:
            change = (self.status[:n] == 1) & ~w.is_balance_forward & (u_terms < 0.08)
            pos = np.searchsorted(TERM_OPTIONS, self.terms)
            pos = np.clip(pos + step, 1, TERM_OPTIONS.size - 1)  # never move to 0 days
            self.terms = np.where(change, TERM_OPTIONS[pos], self.terms).astype(np.int32)
        listed = np.flatnonzero(w.trade_start_month <= m)
        # the credit manager's view: last bureau score, else an internal rating of similar quality
        score = np.where(self.last_score[:n] >= 0, self.last_score[:n], self._score(self.r_prev, score_noise)[:n])
        factor = np.clip(0.5 + (score - 500) / 400, 0.25, 1.5)
        volume = w.invoice_rate * self.size_cur * w.growth ** (m / 12)
        unit = np.where(w.currency == 0, 10_000_00, 1_000_00)  # cents: round to 10,000 at home, 1,000 abroad
        raw = volume * 100 * (self.terms + 30) / 30 * factor
        limit = (np.ceil(raw / unit) * unit).astype(np.int64)
        in_default = self.expected_default_day < s
        self.limit = np.where(in_default, 0, limit)

        date_str = _day(s).isoformat()
        gb_index = 1 if self.snapshot_months.size > 1 else 0
        fmt = customers_format(k, gb_index)
        cur_codes = np.array(self.currencies, dtype=object)
        ind_codes = np.array([i.code for i in INDUSTRIES] + [None], dtype=object)
        reg_names = np.array([r.name for r in REGIONS] + [OVERSEAS_REGION], dtype=object)
        reg_idx = np.where(w.region[:n] >= 0, w.region[:n], len(REGIONS))
        df = pl.DataFrame(
            {
                "customer_id": self.customer_ids.gather(pl.Series(listed)),
                "customer_name": w.customer_name[listed].tolist(),
                "registration_id": [r or None for r in w.registration_id[listed].tolist()],
                "industry": ind_codes[w.industry[listed]].tolist(),
                "region": np.where(w.region_shown[listed], reg_names[reg_idx[listed]], None).tolist(),
                "onboarding_date": day_series(w.onboarding[listed], fmt.date_format),
                "credit_limit": pl.Series(self.limit[listed]),
                "payment_terms_days": [str(t) for t in self.terms[listed].tolist()],
                "currency": cur_codes[w.currency[listed]].tolist(),
            },
            schema_overrides={"customer_name": pl.String, "registration_id": pl.String, "industry": pl.String,
                              "region": pl.String},
        ).with_columns(credit_limit=money(pl.col("credit_limit")))
        if fmt.extra_column:
            managers = [f"AM{(i * 7) % 23 + 1:02d}" for i in listed]
            df = df.with_columns(pl.Series(fmt.extra_column, managers, dtype=pl.String))
        df = df.select(column_order(schema.CUSTOMERS.names, fmt))
        rel = f"customers/customers_{date_str}{fmt.suffix}"
        if self.bad_rate > 0:
            df = badrows.inject(df, "customers", rel, fmt, self.ctx)
        self._write("customers", rel, df, fmt)

    # --------------------------------------------------------------- bureau

    def _bureau(self, m: int, s: int, e: int) -> dict[str, np.ndarray]:
        p, rng, w = self.p, self.rng, self.w
        c = w.n_companies
        covered = w.has_registration & (rng.random(c) < p.bureau_coverage)
        score = self._score(self.r_prev, rng.standard_normal(c))
        score_missing = rng.random(c) < 0.02
        d = self.delay_prev
        paydex_raw = np.where(d <= 30, 80 - d, 50 - (d - 30) / 2) + p.paydex_noise * rng.standard_normal(c)
        paydex = np.clip(np.round(paydex_raw), 0, 100).astype(np.int64)
        paydex_missing = ~w.has_paydex | (rng.random(c) < 0.03)
        if m == 0 or self.cal_month[m] == 5:
            self._refresh_financials(self.r_prev)
        lawsuits = self.lawsuits.sum(axis=0).astype(np.int64)
        tax = self.last_tax_month >= m - 6
        report_day = s + np.minimum(w.report_day, e - s - 1)
        years = np.maximum((report_day - w.founded) // 365, 0)

        # a sharp drop of the reported score raises a RATING_DOWNGRADE alert on the report date
        reported = covered & ~score_missing
        down = reported & (self.last_score >= 0) & (self.last_score - score >= p.downgrade_drop)
        downgrades = {
            "comp": np.flatnonzero(down), "day": report_day[down],
            "old": self.last_score[down], "new": score[down],
        }
        self.last_score = np.where(reported, score, self.last_score)

        idx = np.flatnonzero(covered)
        fmt = bureau_format(m)
        fin_cols = ["revenue", "total_assets", "total_liabilities", "current_assets", "current_liabilities", "net_income"]
        data: dict[str, Any] = {
            "registration_id": self.registration_ids.gather(pl.Series(idx)),
            "report_date": day_series(report_day[idx], fmt.date_format),
            "bureau_score": _nullable(score[idx], score_missing[idx]),
            "paydex": _nullable(paydex[idx], paydex_missing[idx]),
            "lawsuits_12m": pl.Series(lawsuits[idx]),
            "tax_arrears": pl.Series(tax[idx]),
        }
        for j, col in enumerate(fin_cols):
            data[col] = _nullable(self.fin[idx, j], self.fin_null[idx, j])
        data["years_in_business"] = pl.Series(years[idx])
        yes, no = ("1", "0") if fmt.bool_digits else ("true", "false")
        df = pl.DataFrame(data).with_columns(
            bureau_score=pl.col("bureau_score").cast(pl.String),
            paydex=pl.col("paydex").cast(pl.String),
            lawsuits_12m=pl.col("lawsuits_12m").cast(pl.String),
            tax_arrears=pl.when(pl.col("tax_arrears")).then(pl.lit(yes)).otherwise(pl.lit(no)),
            years_in_business=pl.col("years_in_business").cast(pl.String),
            **{col: money(pl.col(col)) for col in fin_cols},
        )
        if fmt.extra_column:
            df = df.with_columns(pl.lit("Demo Credit Bureau, Inc.").alias(fmt.extra_column))
        df = df.select(column_order(schema.BUREAU.names, fmt))
        rel = f"bureau/bureau_{self.labels[m]}{fmt.suffix}"
        if self.bad_rate > 0:
            df = badrows.inject(df, "bureau", rel, fmt, self.ctx)
        self._write("bureau", rel, df, fmt)
        return downgrades

    def _refresh_financials(self, r: np.ndarray) -> None:
        """Annual statements (published in May): ratios lean on the risk known at publication."""
        rng, w, p = self.rng, self.w, self.p
        c = w.n_companies
        z = rng.standard_normal((6, c))
        rel = r - p.risk_mean_logit
        revenue = w.size * 150 * np.exp(0.4 * z[0])
        assets = revenue * 0.8 * np.exp(0.3 * z[1])
        leverage = 1.2 * _sigmoid(-0.3 + 0.45 * rel + 0.4 * z[2])
        liabilities = assets * leverage
        current_assets = assets * (0.55 + 0.2 * np.tanh(z[3]))
        current_ratio = np.exp(0.4 - 0.25 * rel + 0.25 * z[4])
        current_liabilities = np.minimum(current_assets / current_ratio, liabilities)
        net_income = revenue * (0.05 - 0.035 * rel + 0.04 * z[5])
        values = np.stack([revenue, assets, liabilities, current_assets, current_liabilities, net_income], axis=1)
        self.fin = (np.round(values) * 100).astype(np.int64)
        self.fin_null = (rng.random((c, 6)) < 0.03) | ~w.has_financials[:, None]

    # --------------------------------------------------------------- events

    def _events(self, m: int, s: int, e: int, downgrades: dict[str, np.ndarray]) -> None:
        p, rng, w = self.p, self.rng, self.w
        c = w.n_companies
        rel = self.r - p.risk_mean_logit
        base = np.array(p.event_base_logrates)[:, None]
        slope = np.array(p.event_risk_slopes)[:, None]
        eff = np.array(p.event_distress_effects)[:, None]
        rates = np.exp(base + slope * rel[None, :] + eff * self.distress[None, :]) * w.has_registration[None, :]
        counts = rng.poisson(rates)
        # bureau fields read the lawsuit/tax history of the months before their report
        self.lawsuits[m % 12] = counts[EVENT_LAWSUIT]
        self.last_tax_month[counts[EVENT_TAX] > 0] = m

        comp = [np.repeat(np.arange(c), counts[t]) for t in range(4)]
        types = [np.full(x.size, t) for t, x in enumerate(comp)]
        due_bk = self.pending_bk_day < e
        comp += [downgrades["comp"], self.pending_bk_comp[due_bk]]
        types += [np.full(downgrades["comp"].size, EVENT_DOWNGRADE), np.full(int(due_bk.sum()), EVENT_BANKRUPTCY)]
        comp_all = np.concatenate(comp).astype(np.int64)
        type_all = np.concatenate(types).astype(np.int64)
        n_random = sum(x.size for x in comp[:4])
        day = np.concatenate([s + rng.integers(0, e - s, n_random), downgrades["day"], self.pending_bk_day[due_bk]])
        self.pending_bk_comp = self.pending_bk_comp[~due_bk]
        self.pending_bk_day = self.pending_bk_day[~due_bk]
        extra = np.concatenate([np.zeros(n_random, np.int64), downgrades["old"] * 10_000 + downgrades["new"],
                                np.zeros(int(due_bk.sum()), np.int64)])
        amounts = np.round(np.exp(rng.normal(11.0, 1.2, comp_all.size)) / 100) * 100
        case_no = rng.integers(1000, 99999, comp_all.size)
        u_detail = rng.random(comp_all.size)
        order = np.lexsort((extra, type_all, comp_all, day))
        details = [
            _event_detail(int(t), int(a), int(cn), int(x), float(u), _day(dd).year)
            for t, a, cn, x, u, dd in zip(type_all[order], amounts[order], case_no[order], extra[order],
                                           u_detail[order], day[order], strict=True)
        ]
        fmt = events_format(m)
        df = pl.DataFrame(
            {
                "registration_id": self.registration_ids.gather(pl.Series(comp_all[order])),
                "event_date": day_series(day[order], fmt.date_format),
                "event_type": pl.Series([_EVENT_NAMES[t] for t in type_all[order]], dtype=pl.String),
                "detail": pl.Series(details, dtype=pl.String),
            }
        ).select(column_order(schema.BUREAU_EVENTS.names, fmt))
        rel_path = f"bureau_events/events_{self.labels[m]}{fmt.suffix}"
        if self.bad_rate > 0:
            df = badrows.inject(df, "bureau_events", rel_path, fmt, self.ctx)
        self._write("bureau_events", rel_path, df, fmt)

    # ------------------------------------------------------------------- fx

    def _fx(self, m: int, s: int, e: int) -> None:
        rng = self.rng
        days = np.arange(s, e)
        steps = 0.003 * rng.standard_normal((days.size, len(self.currencies) - 1))
        logs = self.fx_log[1:] + np.cumsum(steps, axis=0)
        self.fx_log[1:] = logs[-1]
        micro = np.round(self.currency_level[1:] * np.exp(logs) * 1_000_000).astype(np.int64)
        fmt = fx_format(m)
        rows_date, rows_cur, rows_rate = [], [], []
        for i, d in enumerate(days):
            for j, cur in enumerate(self.currencies[1:]):
                rows_date.append(_day(d).strftime(fmt.date_format))
                rows_cur.append(cur)
                v = int(micro[i, j])
                rows_rate.append(f"{v // 1_000_000}.{v % 1_000_000:06d}")
        df = pl.DataFrame({"rate_date": rows_date, "currency": rows_cur, "rate_to_base": rows_rate},
                          schema={"rate_date": pl.String, "currency": pl.String, "rate_to_base": pl.String})
        if self.fx_sample is None:
            self.fx_sample = df.head(10)
        if fmt.extra_column:
            df = df.with_columns(pl.lit("central bank reference rate").alias(fmt.extra_column))
        df = df.select(column_order(schema.FX_RATES.names, fmt))
        self._write("fx_rates", f"fx_rates/fx_{self.labels[m]}{fmt.suffix}", df, fmt)

    # ---------------------------------------------------------------- truth

    def _truth_panel(self, m: int, s: int) -> None:
        n = self.w.n_customers
        idx = np.flatnonzero(self.status[:n] != 0)
        status_names = pl.Series(["not_trading", "active", "defaulted", "churned"], dtype=pl.String)
        table = pl.DataFrame(
            {
                "customer_id": self.customer_ids.gather(pl.Series(idx)),
                "month": pl.Series(np.full(idx.size, s, dtype=np.int32)).cast(pl.Date),
                "latent_logit": self.x[idx],
                "effective_logit": self.r[idx],
                "distress_hazard": self.hazard[idx],
                "is_distressed": self.distress[idx],
                "status": status_names.gather(pl.Series(self.status[idx].astype(np.int64))),
            }
        ).to_arrow()
        if self.truth_writer is None:
            self.truth_writer = pq.ParquetWriter(self.out / TRUTH_DIR / "monthly_risk.parquet", table.schema,
                                                 compression="zstd")
        self.truth_writer.write_table(table)
        # the bureau of next month reports on this month's risk and payment behaviour
        self.r_prev = self.r
        self.delay_prev = self._mean_delay(self.r, self.distress)

    def _summary(self, bad_files: list[dict[str, str]]) -> GenerationSummary:
        n = self.w.n_customers
        by_file: dict[str, dict[str, int]] = {}
        by_reason: dict[str, int] = {}
        for _family, file, _line, reason in self.ctx.injected:
            by_file.setdefault(file, {})
            by_file[file][reason] = by_file[file].get(reason, 0) + 1
            by_reason[reason] = by_reason.get(reason, 0) + 1
        defaults = int((self.default_month[:n] >= 0).sum())
        years = self.active_months / 12
        return GenerationSummary(
            parameters={
                "customers": n,
                "months": self.months,
                "seed": self.seed,
                "bad_rows": self.bad_rate,
                "start": self.start.isoformat(),
                "end": _day(self.end_day).isoformat(),
                "base_currency": self.base,
                "currencies": list(self.currencies),
                "schema_version": schema.SCHEMA_VERSION,
            },
            files={f: tuple(self.files[f]) for f in FAMILIES},
            file_formats=dict(sorted(self.formats.items())),
            rows_by_file=dict(sorted(self.rows.items())),
            bad_rows_by_file={f: dict(sorted(v.items())) for f, v in sorted(by_file.items())},
            bad_rows_by_reason=dict(sorted(by_reason.items())),
            bad_files=tuple(bad_files),
            customers=n,
            customers_initial=int((self.w.trade_start_month == 0).sum()),
            bureau_companies=int(self.w.has_registration.sum()),
            defaults=defaults,
            defaults_with_write_off=int((self.write_off_day < self.end_day).sum()),
            bankruptcies=int((self.bankruptcy_day[:n] < self.end_day).sum()),
            customer_years=round(years, 3),
            annual_default_rate=round(defaults / years, 5) if years else 0.0,
            ledger_entries_by_type={t: int(v) for t, v in zip(schema.ENTRY_TYPES, self.entries_by_type, strict=True)},
        )

    def _write_truth(self, summary: GenerationSummary) -> None:
        w, n = self.w, self.w.n_customers

        def dates(a: np.ndarray, valid: np.ndarray) -> pa.Array:
            return pa.array(np.where(valid, a, 0).astype("datetime64[D]"), pa.date32(), mask=~valid)

        within = self.end_day
        dm = self.default_month[:n]
        table = pa.table(
            {
                "customer_id": pa.array([f"C{i + 1:06d}" for i in range(n)], pa.string()),
                "registration_id": pa.array([r or None for r in w.registration_id[:n].tolist()], pa.string()),
                "industry": pa.array([INDUSTRIES[i].code for i in w.industry_risk[:n]], pa.string()),
                "region": pa.array([REGIONS[r].name if r >= 0 else OVERSEAS_REGION for r in w.region[:n]], pa.string()),
                "currency": pa.array([self.currencies[c] for c in w.currency], pa.string()),
                "is_balance_forward": pa.array(w.is_balance_forward),
                "onboarding_date": dates(w.onboarding, np.ones(n, bool)),
                "first_trade_month": dates(self.month_start[w.trade_start_month], np.ones(n, bool)),
                "long_run_logit": pa.array(w.base_risk[:n], pa.float64()),
                "latent_logit_start": pa.array(self.x_at_start, pa.float64()),
                "default_month": pa.array([self.labels[v] if v >= 0 else None for v in dm], pa.string()),
                "default_trigger_date": dates(self.default_day[:n], dm >= 0),
                "dpd90_date": dates(self.dpd90_day, self.dpd90_day != _NO_DAY),
                "write_off_date": dates(self.write_off_day, self.write_off_day < within),
                "bankruptcy_date": dates(self.bankruptcy_day[:n], self.bankruptcy_day[:n] < within),
                "expected_default_date": dates(self.expected_default_day, self.expected_default_day != _NO_DAY),
                "churn_month": pa.array([self.labels[v] if v >= 0 else None for v in self.churn_month], pa.string()),
            }
        )
        pq.write_table(table, self.out / TRUTH_DIR / "customers.parquet", compression="zstd")
        bad = sorted(self.ctx.injected, key=lambda b: (b[1], b[2]))
        pq.write_table(
            pa.table(
                {
                    "family": pa.array([b[0] for b in bad], pa.string()),
                    "source_file": pa.array([b[1] for b in bad], pa.string()),
                    "line_number": pa.array([b[2] for b in bad], pa.int64()),
                    "reason_code": pa.array([b[3] for b in bad], pa.string()),
                }
            ),
            self.out / TRUTH_DIR / "bad_rows.parquet",
            compression="zstd",
        )
        doc = {"summary": summary.to_dict(), "world_parameters": self.p.to_dict()}
        (self.out / TRUTH_JSON).write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _nullable(values: np.ndarray, is_null: np.ndarray) -> pl.Series:
    """A polars Series of ``values`` with nulls where ``is_null``."""
    return pl.select(
        pl.when(pl.lit(pl.Series(is_null, dtype=pl.Boolean))).then(None).otherwise(pl.lit(pl.Series(values)))
    ).to_series()


def _event_detail(t: int, amount: int, case_no: int, extra: int, u: float, year: int) -> str | None:
    if u < 0.1:
        return None
    if t == EVENT_LAWSUIT:
        return f"({year}) civil case No. {case_no}: 买卖合同纠纷 sales contract dispute, claim {amount:,} CNY"
    if t == EVENT_TAX:
        return f"Overdue VAT and surcharges, {amount:,}.00 CNY"
    if t == EVENT_EXECUTION:
        return f"Enforcement order No. {case_no}, amount {amount:,} CNY"
    if t == EVENT_OWNER:
        if u < 0.3:
            return "Legal representative changed\nformer representative resigned"
        return "Major shareholder changed"
    if t == EVENT_DOWNGRADE:
        return f"Bureau score {extra // 10_000} -> {extra % 10_000}"
    return f"Bankruptcy petition accepted, case No. {case_no}"
