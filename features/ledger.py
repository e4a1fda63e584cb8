"""Ledger features: cash application, exposure, days past due and payment behaviour, point in time.

Definitions (binding, ``../shared/contract.md``):

- "**Exposure** of a customer at date ``t``: the sum over its invoices of
  amount - applied payments - applied credit notes - applied write-offs, all
  with ``document_date <= t`` (cash on account applied as above)."
- "**Days past due** of an invoice at ``t``: ``t - due_date`` while its
  outstanding amount is positive, else 0." (Not yet due counts as 0.)
- "**Point in time**: every feature of an observation at ``t`` uses only
  ledger entries with ``document_date <= t`` [...]. Nothing later may change it."
- Ledger: "empty [``applies_to``] on a ``PAYMENT`` means cash on account,
  applied to the customer's open invoices oldest ``due_date`` first"; "Entries
  in another currency than the base currency are converted with the optional
  ``fx_rates/`` family [...], using the latest rate on or before
  ``document_date``."

Cash application, as implemented here (decisions a user must know):

1. **Base currency.** Every entry's base amount is its amount times the
   ``rate_to_base`` of the latest rate with ``rate_date <= document_date``
   (base currency: rate 1), rounded half to even to the cent. An entry with no
   such rate is *never* treated as rate 1: it is left out of cash application
   and of every feature, and counted (:attr:`CashApplication.unconverted_entries`,
   :func:`unconverted_entries`). An invoice left out takes the entries naming
   it along.
2. **Accounts per currency.** Money is applied in the invoice's currency, so a
   payment that settles an invoice in full in its currency settles its base
   amount in full: the exchange difference between invoice and payment dates
   is a realised fx gain or loss, not money the customer owes (taken
   literally, "convert each entry at its own date" leaves such differences
   open and, in the demo world, raised false 90-days-past-due defaults for
   about one default in five). What an invoice has had applied is valued at
   the invoice's own rate (rounded once, so settling it in full settles exactly
   its base amount). An entry in another currency than the invoice it names is
   converted through the base currency at its own and the invoice's rate.
   Credit on account belongs to the customer's account in the currency of the
   payment and is applied to that customer's invoices in that currency.
3. **Direct applications.** A ``PAYMENT`` with ``applies_to``, a
   ``CREDIT_NOTE`` and a ``WRITE_OFF`` apply to the invoice they name (an
   invoice of the same customer), dated ``max(document_date, the invoice's
   document_date)``. Per invoice they apply in date order (same day: payments,
   then credit notes, then write-offs, then by ``entry_id``), and never beyond
   the invoice amount: the excess of a payment or credit note becomes **credit
   on account** at its date; the excess of a write-off is dropped (writing off
   more than is owed creates no credit). An entry naming no such invoice is
   not applied (silver validation quarantines it; counted in
   :attr:`CashApplication.unmatched_entries`).
4. **Credit on account** (``PAYMENT`` without ``applies_to``, plus the excess
   above) is applied, *at every date* ``t``, to the account's invoices posted
   on or before ``t`` oldest due date first (ties: document date, then entry
   id), after their direct applications: each takes ``min(what it still owes,
   credit left after the older ones)``. Credit left over stays on account
   (``unapplied_credit``, valued at the latest rate on or before the as-of
   date) and goes to the next invoices as they are posted. So a credit
   department's "apply cash oldest due first to the open invoices on the
   payment date" holds, and two consequences are explicit, dated
   ``ON_ACCOUNT`` applications with a negative amount: a direct payment or
   credit note landing on an invoice the credit already covered *releases*
   that credit to the next open invoice; and an invoice posted later with an
   *earlier* due date than an invoice the credit covers takes the credit over
   (the oldest due is always covered first). Neither can touch an invoice past
   its due date: **after its due date an invoice's outstanding amount never
   increases** (a later invoice cannot be due earlier than it is posted).
5. **Point in time.** Outstanding of an invoice at ``t`` is a function of the
   entries dated ``<= t`` only; every application row carries the date it takes
   effect, and ``outstanding(invoice, t) = amount_base - sum(applied_amount_base
   where applied_date <= t)`` (always in ``[0, amount_base]``). Appending
   entries dated after ``t`` only adds application rows dated after ``t``.

Computation: the per-account state (credit received, the "frontier" invoice the
credit reaches) changes with every dated event, which is sequential by nature.
It runs as one numpy loop over the calendar days that carry an event, all
accounts of that day at once, and only for accounts that ever have credit on
account; everything else is Polars and vectorised numpy (per as-of window sums
are difference arrays over the as-of dates, the 90th-percentile delay is a walk
down a wavelet matrix of the delays, invoice timelines are merged by counting;
no per-customer Python; entries find the invoice they name with one join on the
text; ties on an entry id are broken by ledger position when each type's ids
ascend down the ledger, which is checked). :func:`ledger_features` computes the
90th percentile in a second thread (pure numpy: the result does not depend on
the interleaving).
Money is integer cents inside and ``Decimal(18, 2)`` (``core.schema.MONEY``) in
every output.

Windows: "12 months" is the 365 days ``(t - 365 days, t]`` (as in the
contract's observation rule), "3 months" the 91 days ``(t - 91 days, t]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from functools import cached_property

import numpy as np
import polars as pl

from creditflow.core.schema import ENTRY_TYPES, FX_RATES, LEDGER, MONEY
from creditflow.features.customers import (
    AS_OF_DATE,
    check_as_of_dates,
    months_between,
    require_columns,
    sort_by_keys,
    to_lazy,
)

INVOICE, PAYMENT, CREDIT_NOTE, WRITE_OFF = ENTRY_TYPES
ON_ACCOUNT = "ON_ACCOUNT"
APPLICATION_KINDS: tuple[str, ...] = (PAYMENT, CREDIT_NOTE, WRITE_OFF, ON_ACCOUNT)
"""``kind`` of an application row: the applying entry's type, or ``ON_ACCOUNT``
for credit on account (negative when credit is released or moves to an invoice
due earlier)."""

WINDOW_12M_DAYS = 365
WINDOW_3M_DAYS = 91

APPLICATION_COLUMNS: tuple[str, ...] = (
    "invoice_id",
    "customer_id",
    "applied_date",
    "applied_amount_base",
    "kind",
    "entry_id",
)
INVOICE_BASE_COLUMNS: tuple[str, ...] = (
    "invoice_id",
    "customer_id",
    "document_date",
    "due_date",
    "currency",
    "amount",
    "amount_base",
)
AGING_COLUMNS: tuple[str, ...] = (
    "aging_current",
    "aging_1_30",
    "aging_31_90",
    "aging_91_180",
    "aging_over_180",
)
LEDGER_FEATURE_COLUMNS: tuple[str, ...] = (
    "customer_id",
    AS_OF_DATE,
    "exposure",
    *AGING_COLUMNS,
    "dpd_max",
    "dpd_weighted",
    "invoices_past_30_12m",
    "invoices_past_60_12m",
    "avg_monthly_sales_12m",
    "sales_growth_3m_vs_12m",
    "pay_delay_avg_12m",
    "pay_delay_p90_12m",
    "share_paid_late_12m",
    "pay_delay_trend",
    "dso_days",
    "credit_note_ratio_12m",
    "invoice_count_12m",
    "months_since_last_invoice",
    "unapplied_credit",
)
"""Columns of :func:`ledger_features`, in order."""

_LEDGER_NEEDED = tuple(LEDGER.names)
_FX_NEEDED = tuple(FX_RATES.names)
_KIND_CODE = {k: i for i, k in enumerate(APPLICATION_KINDS)}
_TYPE_CODE = {t: i for i, t in enumerate(ENTRY_TYPES)}
_KIND_ORDER = np.array([9, 0, 1, 2], dtype=np.int64)  # same-day order of direct applications, by type code
_APP_CODE_OF_TYPE = np.array([-1, _KIND_CODE[PAYMENT], _KIND_CODE[CREDIT_NOTE], _KIND_CODE[WRITE_OFF]], dtype=np.int64)
_DAY_BIAS = 1 << 30  # keeps (customer, day) keys increasing for any day within +-2.9 million years
_NO_DAY = np.iinfo(np.int32).max
_STEP = 8  # invoices the frontier may pass per vectorised step


def check_base_currency(base_currency: object) -> str:
    """Validate an ISO 4217 base currency code (three upper-case letters)."""
    if not isinstance(base_currency, str) or len(base_currency) != 3 or not base_currency.isalpha() or not base_currency.isupper():
        raise ValueError(f"base_currency must be a 3-letter upper-case ISO 4217 code; got {base_currency!r}")
    return base_currency


def cents_to_money(expr: pl.Expr) -> pl.Expr:
    """Integer cents -> ``Decimal(18, 2)`` (exact)."""
    return (expr.cast(pl.Decimal(18, 0)) * Decimal("0.01")).cast(MONEY)


# ----------------------------------------------------------------------------- conversion


def _ledger_input(ledger: pl.LazyFrame | pl.DataFrame) -> pl.LazyFrame:
    lf = to_lazy(ledger, "ledger")
    require_columns(lf, _LEDGER_NEEDED, "ledger")
    return lf.select(
        pl.col("entry_id").cast(pl.String),
        pl.col("customer_id").cast(pl.String),
        pl.col("entry_type").cast(pl.String),
        pl.col("document_date").cast(pl.Date),
        pl.col("due_date").cast(pl.Date),
        pl.col("amount").cast(MONEY),
        pl.col("currency").cast(pl.String),
        pl.col("applies_to").cast(pl.String),
    )


def _fx_input(fx_rates: pl.LazyFrame | pl.DataFrame | None) -> pl.LazyFrame | None:
    if fx_rates is None:
        return None
    lf = to_lazy(fx_rates, "fx_rates")
    require_columns(lf, _FX_NEEDED, "fx_rates")
    return lf.select(
        pl.col("rate_date").cast(pl.Date),
        pl.col("currency").cast(pl.String),
        pl.col("rate_to_base").cast(FX_RATES.column("rate_to_base").dtype),
    ).filter(pl.col("rate_date").is_not_null() & pl.col("currency").is_not_null() & (pl.col("rate_to_base") > 0))


@dataclass(frozen=True)
class _Entries:
    """Collected ledger rows with integer codes and amounts in cents (numpy arrays by row)."""

    frame: pl.DataFrame
    """entry_id, customer_id, entry_type, document_date, applies_to, currency, amount."""
    cust: np.ndarray
    customer_ids: pl.Series
    cur: np.ndarray
    currencies: pl.Series
    kind: np.ndarray
    day: np.ndarray
    due: np.ndarray
    own: np.ndarray
    """Amount in the entry's own currency, in cents."""
    cents: np.ndarray
    """Amount in base currency, in cents (0 where not converted)."""
    rate_id: np.ndarray
    """Row of ``rates`` whose rate converts the entry (-1: base currency or no rate)."""
    converted: np.ndarray
    rates: pl.DataFrame
    """The fx rates (currency, rate_date, rate_to_base), sorted, one per currency and day."""


def _dense_codes(values: pl.Series) -> tuple[np.ndarray, pl.Series]:
    """Integer codes 0..k-1 of the text values, and the value of each code (no sorting of rows)."""
    codes = values.cast(pl.Categorical).to_physical().to_numpy().astype(np.int64)
    if codes.size == 0:
        return _EMPTY_I64, values.head(0)
    present = np.bincount(codes) > 0
    some_row = np.zeros(present.size, dtype=np.int64)
    some_row[codes] = np.arange(codes.size)  # any row of a code carries its text
    return (np.cumsum(present) - 1)[codes], values.gather(pl.Series(some_row[present]))


def _entries(
    ledger: pl.LazyFrame | pl.DataFrame, fx_rates: pl.LazyFrame | pl.DataFrame | None, base_currency: str
) -> _Entries:
    """Read the ledger once: customer and currency numbers, entry-type codes, days, cents."""
    fx = _fx_input(fx_rates)
    entry_type = pl.col("entry_type")
    kind = pl.lit(-1, pl.Int8)
    for code, name in reversed(list(enumerate(ENTRY_TYPES))):
        kind = pl.when(entry_type == name).then(pl.lit(code, pl.Int8)).otherwise(kind)
    frame = (
        _ledger_input(ledger)
        .filter(pl.col("customer_id").is_not_null() & pl.col("document_date").is_not_null())
        .with_columns(
            _kind=kind,
            _day=pl.col("document_date").cast(pl.Int32),
            _due=pl.coalesce(pl.col("due_date"), pl.col("document_date")).cast(pl.Int32),
            _cents=pl.col("amount").to_physical().cast(pl.Int64),  # Decimal(18, 2): the integer is the cents
            _base=(pl.col("currency") == base_currency).fill_null(False),
        )
        .collect()
    )
    cust, customer_ids = _dense_codes(frame.get_column("customer_id"))
    is_base = frame["_base"].to_numpy()
    # currency numbers: 0 is the base currency, the others only where they occur
    cur = np.zeros(frame.height, dtype=np.int64)
    foreign_rows = np.flatnonzero(~is_base)
    f_codes, f_names = _dense_codes(frame["currency"].gather(pl.Series(foreign_rows)).fill_null(""))
    cur[foreign_rows] = f_codes + 1
    currencies = pl.concat([pl.Series([base_currency]), f_names])
    rate_dtype = FX_RATES.column("rate_to_base").dtype
    rates = (
        fx.filter(pl.col("currency") != base_currency)
        .unique(subset=["currency", "rate_date"], keep="any")
        .sort("currency", "rate_date")
        .collect()
        if fx is not None
        else pl.DataFrame(schema={"rate_date": pl.Date, "currency": pl.String, "rate_to_base": rate_dtype})
    )

    own = frame["_cents"].fill_null(0).to_numpy().astype(np.int64)
    cents = own.copy()
    has_amount = frame["_cents"].is_not_null().to_numpy()
    converted = is_base & has_amount
    cents[~converted] = 0
    rate_id = np.full(frame.height, -1, dtype=np.int64)
    other = np.flatnonzero(~is_base & has_amount)
    if other.size and rates.height:
        idx = pl.Series(other)
        looked_up = (
            pl.DataFrame(
                {
                    "row": other,
                    "currency": frame["currency"].gather(idx),
                    "document_date": frame["document_date"].gather(idx),
                    "amount": frame["amount"].gather(idx),
                }
            )
            .sort("currency", "document_date")
            .join_asof(
                rates.with_row_index("rate_id"),
                left_on="document_date",
                right_on="rate_date",
                by="currency",
                strategy="backward",
                check_sortedness=False,
            )
            .filter(pl.col("rate_to_base").is_not_null())
            .select("row", "rate_id", cents=((pl.col("amount") * pl.col("rate_to_base")).round(2) * 100).cast(pl.Int64))
        )
        rows = looked_up["row"].to_numpy()
        cents[rows] = looked_up["cents"].to_numpy()
        converted[rows] = True
        rate_id[rows] = looked_up["rate_id"].to_numpy()
    return _Entries(
        frame=frame.select("entry_id", "customer_id", "entry_type", "document_date", "applies_to", "currency", "amount"),
        cust=cust,
        customer_ids=customer_ids,
        cur=cur,
        currencies=currencies,
        kind=frame["_kind"].to_numpy().astype(np.int64),
        day=frame["_day"].to_numpy().astype(np.int64),
        due=frame["_due"].to_numpy().astype(np.int64),
        own=own,
        cents=cents,
        rate_id=rate_id,
        converted=converted,
        rates=rates,
    )


def _to_base(cents: np.ndarray, rate: pl.Series) -> np.ndarray:
    """Cents of a foreign amount times ``rate``, rounded half to even to the cent."""
    if cents.size == 0:
        return _EMPTY_I64
    amount = pl.Series(cents).cast(pl.Decimal(18, 0)) * Decimal("0.01")
    return ((amount * rate).round(2) * 100).cast(pl.Int64).to_numpy()


def _from_base(cents: np.ndarray, rate: pl.Series) -> np.ndarray:
    """Cents of a base amount divided by ``rate`` (into that currency), rounded to the cent."""
    if cents.size == 0:
        return _EMPTY_I64
    amount = pl.Series(cents).cast(pl.Decimal(18, 0)) * Decimal("0.01")
    return ((amount / rate).round(2) * 100).cast(pl.Int64).to_numpy()


# ----------------------------------------------------------------------------- cash application

_EMPTY_I64 = np.empty(0, dtype=np.int64)


@dataclass(frozen=True)
class CashApplication:
    """The cash application of a ledger, computed once, shared by features and default dates.

    Integer ids inside: customers are numbered in ``customer_ids`` order,
    currencies in ``currencies`` order, invoices in ``invoices`` row order;
    days are days since 1970-01-01; ``cents`` are base-currency cents and
    ``own_cents`` cents of the invoice's (or credit's) own currency. Build it
    with :func:`cash_application`.
    """

    base_currency: str
    customer_ids: pl.Series
    """customer_id of each customer number."""
    currencies: pl.Series
    """Currency code of each currency number."""
    invoice_facts: pl.DataFrame
    """The invoices as numbers: cust, cur, doc_day, due_day, amount_cents (base), own_cents,
    rate_id (row of ``rates``, -1 for base currency), entry_row (position in ``entry_ids``);
    sorted by cust, cur, due_day, doc_day, invoice_id (the order credit is applied in)."""
    entry_frame: pl.DataFrame
    """entry_id, currency, amount of every ledger row read (the text of :attr:`invoices`)."""
    applications: pl.DataFrame
    """inv, day, cents (base), own_cents, kind_code, entry_row: every dated change of what is
    applied to an invoice (positive reduces what it owes), sorted by inv, day, kind_code;
    ``entry_row`` is the applying entry's position in ``entry_ids`` (-1 for ON_ACCOUNT)."""
    entry_ids: pl.Series
    """entry_id of every ledger row read (for ``applications``)."""
    credits: pl.DataFrame
    """cust, cur, day, own_cents: credit on account received (on-account payments and
    over-applications of payments and credit notes), in the currency of its account."""
    credit_notes: pl.DataFrame
    """cust, day, cents: credit notes by document date (base currency)."""
    rates: pl.DataFrame
    """The fx rates used: currency, rate_date, rate_to_base."""
    first_entry_day: np.ndarray
    """Per customer number, the document date of its first ledger entry (any entry)."""
    timeline_inv: np.ndarray
    """Invoice timelines, sorted by (invoice, day): the base-currency amount ``timeline_out``
    invoice ``timeline_inv`` owes from the end of ``timeline_day`` on."""
    timeline_day: np.ndarray
    timeline_out: np.ndarray
    unconverted_entries: int
    """Entries left out because no fx rate on or before their document date exists."""
    unmatched_entries: int
    """Payments with applies_to, credit notes and write-offs naming no invoice of their customer."""
    invoice_entry_cust: np.ndarray = field(default_factory=lambda: _EMPTY_I64)
    """Customer number of every ``INVOICE`` entry read (converted or not; see :func:`invoice_entries_in_window`)."""
    invoice_entry_day: np.ndarray = field(default_factory=lambda: _EMPTY_I64)
    """Document day of every ``INVOICE`` entry read, same order."""

    @cached_property
    def invoices(self) -> pl.DataFrame:
        """invoice_id, cust, cur, doc_day, due_day, amount_cents (base), own_cents, currency,
        amount, rate_id, in :attr:`invoice_facts` order (built on first use: the panel needs
        only the numbers)."""
        facts = self.invoice_facts
        text = self.entry_frame.select("entry_id", "currency", "amount").select(
            pl.all().gather(facts["entry_row"])
        )
        return pl.DataFrame(
            {
                "invoice_id": text["entry_id"],
                "cust": facts["cust"],
                "cur": facts["cur"],
                "doc_day": facts["doc_day"],
                "due_day": facts["due_day"],
                "amount_cents": facts["amount_cents"],
                "own_cents": facts["own_cents"],
                "currency": text["currency"],
                "amount": text["amount"],
                "rate_id": facts["rate_id"],
            }
        )

    @cached_property
    def _timeline_key(self) -> np.ndarray:
        """Sorted (invoice, day) keys of the timeline (built once; features ask several times)."""
        return _key(self.timeline_inv, self.timeline_day)

    @cached_property
    def _timeline_start(self) -> np.ndarray:
        """First timeline row of each invoice number (its rows are the next ``count``)."""
        count = np.bincount(self.timeline_inv, minlength=self.invoice_facts.height)
        return np.cumsum(count) - count

    def outstanding_of_every_invoice(self, day: np.ndarray) -> np.ndarray:
        """Outstanding base cents of every invoice (number order) at the end of ``day[invoice]``:
        :meth:`outstanding_at` of all invoices, by counting instead of searching."""
        n_inv = self.invoice_facts.height
        if np.asarray(day).size != n_inv:
            raise ValueError(f"day must hold one day per invoice ({n_inv}); got {np.asarray(day).size}")
        if self.timeline_inv.size == 0:
            return np.zeros(n_inv, dtype=np.int64)
        # an invoice's timeline days increase: the rows on or before its day are a prefix
        upto = np.bincount(self.timeline_inv[self.timeline_day <= np.asarray(day)[self.timeline_inv]], minlength=n_inv)
        last = self._timeline_start + upto - 1
        return np.where(upto > 0, self.timeline_out[np.maximum(last, 0)], 0)

    def outstanding_at(self, inv: np.ndarray, day: np.ndarray) -> np.ndarray:
        """Outstanding base cents of invoices ``inv`` at the end of ``day`` (0 before posting)."""
        if self.timeline_inv.size == 0:
            return np.zeros(np.asarray(inv).size, dtype=np.int64)
        key = self._timeline_key
        i = np.searchsorted(key, _key(inv, day), side="right") - 1
        j = np.maximum(i, 0)
        return np.where((i >= 0) & (self.timeline_inv[j] == inv), self.timeline_out[j], 0)


def cash_application(
    ledger: pl.LazyFrame | pl.DataFrame,
    fx_rates: pl.LazyFrame | pl.DataFrame | None,
    *,
    base_currency: str,
) -> CashApplication:
    """Apply every payment, credit note, write-off and credit on account to the invoices.

    Rules in the module docstring. ``ledger`` has the contract columns of
    ``core.schema.LEDGER`` (more columns are ignored); ``fx_rates`` those of
    ``FX_RATES``, or None (then only base-currency entries are used). Eager:
    the result holds collected frames and arrays.
    """
    base_currency = check_base_currency(base_currency)
    e = _entries(ledger, fx_rates, base_currency)
    entries = e.frame
    cust, cur, kind, day, own, cents, converted = e.cust, e.cur, e.kind, e.day, e.own, e.cents, e.converted
    n_cust, n_cur = e.customer_ids.len(), max(e.currencies.len(), 1)
    first_entry_day = np.full(n_cust, _NO_DAY, dtype=np.int64)
    np.minimum.at(first_entry_day, cust, day)
    unconverted = int((~converted).sum())
    entry_id = entries["entry_id"]
    all_invoices = np.flatnonzero(kind == _TYPE_CODE[INVOICE])

    # direct applications: entries naming an invoice of their customer, in the invoice's currency
    is_direct = (kind >= _TYPE_CODE[PAYMENT]) & (kind <= _TYPE_CODE[WRITE_OFF]) & converted
    names = entries["applies_to"].is_not_null().to_numpy()
    must_name = (kind >= _TYPE_CODE[CREDIT_NOTE]) & (kind <= _TYPE_CODE[WRITE_OFF]) & converted
    drows = np.flatnonzero(is_direct & names)
    rows = np.flatnonzero((kind == _TYPE_CODE[INVOICE]) & converted)
    d_pos, d_inv_row = _text_pairs(entries["applies_to"], drows, entry_id, rows)
    ascending = _ids_ascend_by_type(entry_id, kind)
    # invoices, in the order credit is applied: customer, currency, due date, document date, entry id
    keys = [cust[rows], cur[rows], e.due[rows], day[rows]]
    order = _order(keys, entry_id, rows, text_follows_rows=ascending[_TYPE_CODE[INVOICE]])
    rows = rows[order]
    # np.take: the same gather as indexing, faster for one 1-d index array
    inv_cust, inv_cur, inv_due, inv_doc = (np.take(k, order) for k in keys)
    inv_own, inv_cents, inv_rate_id = (np.take(a, rows) for a in (own, cents, e.rate_id))
    rate_values = e.rates["rate_to_base"]
    invoice_facts = pl.DataFrame(
        {
            "cust": inv_cust,
            "cur": inv_cur,
            "doc_day": inv_doc,
            "due_day": inv_due,
            "amount_cents": inv_cents,
            "own_cents": inv_own,
            "rate_id": inv_rate_id,
            "entry_row": rows,
        }
    )
    inv_foreign = inv_rate_id >= 0

    d_inv = _renumber(d_inv_row, rows, entries.height)
    d_rows = drows[d_pos]
    same = cust[d_rows] == inv_cust[d_inv]
    d_rows, d_inv = d_rows[same], d_inv[same]
    unmatched = int((is_direct & names).sum() + (must_name & ~names).sum()) - d_rows.size
    d_day = np.maximum(day[d_rows], inv_doc[d_inv])
    d_kind = kind[d_rows]
    # rows that tie here have one entry type: its ids ascending down the ledger decide the ties
    order = _order([d_inv, d_day, _KIND_ORDER[d_kind]], entry_id, d_rows,
                   text_follows_rows=all(ascending[_TYPE_CODE[t]] for t in (PAYMENT, CREDIT_NOTE, WRITE_OFF)))
    d_rows, d_inv, d_day, d_kind = (np.take(a, order) for a in (d_rows, d_inv, d_day, d_kind))
    x = own[d_rows].copy()
    cross = np.flatnonzero(cur[d_rows] != inv_cur[d_inv])
    if cross.size:  # another currency than the invoice's: via base currency, at the invoice's rate
        x[cross] = _from_base(cents[d_rows[cross]], _rates_of(rate_values, inv_rate_id[d_inv[cross]]))
    owed_before = _grouped_cumsum(d_inv, x) - x
    applied = np.minimum(x, np.maximum(inv_own[d_inv] - owed_before, 0))
    excess = x - applied

    # credit on account, per customer and currency
    on_acc = np.flatnonzero((kind == _TYPE_CODE[PAYMENT]) & converted & ~names)
    keep_excess = (excess > 0) & (d_kind != _TYPE_CODE[WRITE_OFF])
    credits = pl.DataFrame(
        {
            "cust": np.concatenate([cust[on_acc], inv_cust[d_inv[keep_excess]]]),
            "cur": np.concatenate([cur[on_acc], inv_cur[d_inv[keep_excess]]]),
            "day": np.concatenate([day[on_acc], d_day[keep_excess]]),
            "own_cents": np.concatenate([own[on_acc], excess[keep_excess]]),
        }
    )
    cn = np.flatnonzero((kind == _TYPE_CODE[CREDIT_NOTE]) & converted)
    credit_notes = pl.DataFrame({"cust": cust[cn], "day": day[cn], "cents": cents[cn]})

    has = applied > 0
    inv_acct = inv_cust * n_cur + inv_cur
    c_acct = credits["cust"].to_numpy() * n_cur + credits["cur"].to_numpy()
    acct, n_acct = _dense_ints(np.concatenate([inv_acct, c_acct]))
    inv_acct, c_acct = acct[: inv_acct.size], acct[inv_acct.size :]
    # rank of each invoice in its account (1, 2, ...): the invoices come sorted by account
    inv_rank = _grouped_cumsum(inv_acct, np.ones(inv_acct.size, dtype=np.int64))
    oa_inv, oa_day, oa_own = _apply_credit(
        n_acct,
        inv_acct,
        inv_rank,
        inv_doc,
        inv_own,
        d_inv[has],
        d_day[has],
        applied[has],
        c_acct,
        credits["day"].to_numpy(),
        credits["own_cents"].to_numpy(),
    )

    # direct rows are already in (invoice, day, kind) order; on-account rows (kind last, one
    # per invoice and day) are merged in: the same order as a stable sort of both
    a_inv = np.concatenate([d_inv[has], oa_inv])
    a_day = np.concatenate([d_day[has], oa_day])
    a_kind = np.concatenate(
        [_APP_CODE_OF_TYPE[d_kind[has]], np.full(oa_inv.size, _KIND_CODE[ON_ACCOUNT], dtype=np.int64)]
    )
    merge = _stable_order([a_inv, a_day, a_kind])
    a_inv, a_day = a_inv[merge], a_day[merge]
    apps = pl.DataFrame(
        {
            "inv": a_inv,
            "day": a_day,
            "own_cents": np.concatenate([applied[has], oa_own])[merge],
            "kind_code": a_kind[merge].astype(np.int8),
            "entry_row": np.concatenate([d_rows[has], np.full(oa_inv.size, -1, dtype=np.int64)])[merge],
        }
    )
    # base amounts: what an invoice has had applied, at its own rate, rounded once per step so
    # that settling it in full in its currency settles exactly its base amount (an fx
    # difference between invoice and payment dates is not money the customer owes)
    cum_own = _grouped_cumsum(a_inv, apps["own_cents"].to_numpy())
    cum_base = cum_own.copy()
    foreign = np.flatnonzero(inv_foreign[a_inv])
    if foreign.size:
        cum_base[foreign] = _to_base(cum_own[foreign], rate_values.gather(pl.Series(inv_rate_id[a_inv[foreign]])))
    prev = np.zeros_like(cum_base)
    if cum_base.size:
        prev[1:] = cum_base[:-1]
        prev[np.concatenate([[True], a_inv[1:] != a_inv[:-1]])] = 0
    applications = apps.with_columns(cents=pl.Series(cum_base - prev))
    tl_inv, tl_day, tl_out = _timeline(inv_doc, inv_cents, a_inv, a_day, cum_base)
    return CashApplication(
        base_currency=base_currency,
        customer_ids=e.customer_ids,
        currencies=e.currencies,
        invoice_facts=invoice_facts,
        entry_frame=entries.select("entry_id", "currency", "amount"),
        applications=applications,
        entry_ids=entry_id,
        credits=credits,
        credit_notes=credit_notes,
        rates=e.rates,
        first_entry_day=first_entry_day,
        timeline_inv=tl_inv,
        timeline_day=tl_day,
        timeline_out=tl_out,
        unconverted_entries=unconverted,
        unmatched_entries=unmatched,
        invoice_entry_cust=cust[all_invoices],
        invoice_entry_day=day[all_invoices],
    )


def _rates_of(rate_values: pl.Series, rate_id: np.ndarray) -> pl.Series:
    """The rate of each id (-1: the base currency, rate 1)."""
    return rate_values.gather(pl.Series(np.maximum(rate_id, 0))).scatter(np.flatnonzero(rate_id < 0), Decimal(1))


def _dense_ints(values: np.ndarray) -> tuple[np.ndarray, int]:
    """Codes 0..k-1 of non-negative integers, in increasing order of the values."""
    if values.size == 0:
        return _EMPTY_I64, 0
    present = np.bincount(values) > 0
    return (np.cumsum(present) - 1)[values], int(present.sum())


def _order(
    keys: list[np.ndarray], tiebreak: pl.Series, rows: np.ndarray, text_follows_rows: bool = False
) -> np.ndarray:
    """Indices sorting rows by the integer ``keys`` (lexicographic), then by their ``tiebreak`` text.

    Row ``i``'s text is ``tiebreak[rows[i]]``; it is read only for rows whose keys tie.
    ``text_follows_rows`` promises that of two rows whose keys tie, the one earlier in
    ``tiebreak`` has the smaller text (no nulls): then, when ``rows`` increase, the
    position is the tiebreak and no text is read.
    """
    n = keys[0].size
    if n == 0:
        return _EMPTY_I64
    if text_follows_rows and (n == 1 or bool(np.all(rows[1:] > rows[:-1]))):
        position = np.arange(n, dtype=np.int64)
        unique_key = _composite_key([*keys, position])
        if unique_key is not None:
            return pl.Series(unique_key).arg_sort().to_numpy().astype(np.int64)
        return np.lexsort([position, *keys[::-1]])
    composite = _composite_key(keys)
    if composite is not None:
        order = pl.Series(composite).arg_sort().to_numpy().astype(np.int64)
        sorted_keys = [composite[order]]
    else:
        order = np.lexsort(keys[::-1])
        sorted_keys = [k[order] for k in keys]
    same = np.ones(n - 1, dtype=bool)
    for k in sorted_keys:
        same &= k[1:] == k[:-1]
    if same.any():
        # equal keys sit next to each other: order each such run by the tiebreak text, in place
        run = np.cumsum(np.concatenate([[True], ~same]))
        tied = np.zeros(n, dtype=bool)
        tied[1:] |= same
        tied[:-1] |= same
        pos = np.flatnonzero(tied)
        sub = pl.DataFrame({"run": run[pos], "t": tiebreak.gather(pl.Series(rows[order[pos]])), "o": order[pos]}).sort(
            "run", "t", maintain_order=True
        )
        order[pos] = sub["o"].to_numpy()
    return order


def _ids_ascend_by_type(entry_ids: pl.Series, kind: np.ndarray) -> dict[int, bool]:
    """Per entry-type code: True when that type's entry ids strictly increase down the ledger
    (no nulls), so their row order is their text order (one sequential pass, no sort)."""
    out = {}
    for code in _TYPE_CODE.values():
        ids = entry_ids.filter(pl.Series(kind == code))
        out[code] = ids.null_count() == 0 and (ids.len() < 2 or bool((ids.slice(1) > ids.slice(0, ids.len() - 1)).all()))
    return out


def _renumber(rows: np.ndarray, numbered_rows: np.ndarray, n: int) -> np.ndarray:
    """Position in ``numbered_rows`` of each of ``rows`` (each must be one of them)."""
    number_of_row = np.full(n, -1, dtype=np.int64)
    number_of_row[numbered_rows] = np.arange(numbered_rows.size, dtype=np.int64)
    return number_of_row[rows]


def _text_pairs(
    applies_to: pl.Series, naming: np.ndarray, entry_ids: pl.Series, candidate_rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (position in ``naming``, ledger row ``r`` in ``candidate_rows``) where
    ``applies_to[naming[i]] == entry_ids[r]``, sorted by (i, r).

    One Polars join on the text (exact equality; nulls never match). Both sides are taken
    in ledger row order (a mask, not a random gather of text).
    """
    if naming.size == 0 or candidate_rows.size == 0:
        return _EMPTY_I64, _EMPTY_I64
    n = applies_to.len()
    if naming.size > 1 and not bool(np.all(naming[1:] > naming[:-1])):
        left_text = applies_to.gather(pl.Series(naming))
    else:
        mask = np.zeros(n, dtype=bool)
        mask[naming] = True
        left_text = applies_to.filter(pl.Series(mask))
    candidate = np.zeros(n, dtype=bool)
    candidate[candidate_rows] = True
    pairs = pl.DataFrame({"t": left_text, "i": np.arange(naming.size, dtype=np.int64)}).join(
        pl.DataFrame({"t": entry_ids.filter(pl.Series(candidate)), "r": np.flatnonzero(candidate)}), on="t", how="inner"
    )
    i, r = pairs["i"].to_numpy(), pairs["r"].to_numpy()
    # the join's row order is not defined: put the pairs in (i, r) order
    slot = np.full(naming.size, -1, dtype=np.int64)
    slot[i] = np.arange(i.size, dtype=np.int64)
    order = slot[slot >= 0]
    if order.size != i.size:  # a position matched several rows (duplicate entry ids)
        order = np.lexsort([r, i])
    return i[order], r[order]


def _stable_order(keys: list[np.ndarray]) -> np.ndarray:
    """Stable indices sorting rows by the non-negative integer ``keys`` (lexicographic).

    Cheap when the rows are mostly in order already (a merge of sorted runs).
    """
    if keys[0].size == 0:
        return _EMPTY_I64
    composite = _composite_key(keys)
    return np.lexsort(keys[::-1]) if composite is None else np.argsort(composite, kind="stable")


def _composite_key(keys: list[np.ndarray]) -> np.ndarray | None:
    """One int64 per row that sorts like the integer ``keys`` (lexicographic), each shifted to
    start at 0 and packed into its bit width; None when they need more than 62 bits."""
    composite = np.zeros(keys[0].size, dtype=np.int64)
    bits = 0
    for k in keys:
        lo = int(k.min())
        width = max(int(k.max()) - lo, 0).bit_length()
        bits += width
        if bits > 62:
            return None
        composite = (composite << width) | (k - lo)
    return composite


def _key(group: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Sortable int64 key of (group, day)."""
    return (np.asarray(group, dtype=np.int64) << 32) + (np.asarray(day, dtype=np.int64) + _DAY_BIAS)


def _grouped_cumsum(groups: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Inclusive running sum of ``values`` restarting where ``groups`` (sorted) changes."""
    values = np.asarray(values, dtype=np.int64)
    if values.size == 0:
        return values
    cum = np.cumsum(values)
    start = np.empty(values.size, dtype=bool)
    start[0] = True
    np.not_equal(groups[1:], groups[:-1], out=start[1:])
    first = np.maximum.accumulate(np.where(start, np.arange(values.size), 0))
    return cum - cum[first] + values[first]


def _unique_in_place(values: np.ndarray, scratch: np.ndarray) -> np.ndarray:
    """Distinct ``values`` (small non-negative ints, last occurrence kept) without sorting."""
    idx = np.arange(values.size)
    scratch[values] = idx
    return values[scratch[values] == idx]


def _argsort_days(day: np.ndarray) -> np.ndarray:
    """Stable argsort of day numbers (a radix sort when they span less than 32768 days)."""
    if day.size and int(day.max()) - int(day.min()) < 32768:
        return np.argsort((day - day.min()).astype(np.int16), kind="stable")
    return np.argsort(day, kind="stable")


def _apply_credit(
    n_cust: int,
    inv_cust: np.ndarray,
    inv_rank: np.ndarray,
    inv_doc: np.ndarray,
    inv_cents: np.ndarray,
    d_inv: np.ndarray,
    d_day: np.ndarray,
    d_cents: np.ndarray,
    c_cust: np.ndarray,
    c_day: np.ndarray,
    c_cents: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ON_ACCOUNT applications (invoice, day, cents) of the customers' credit on account.

    State per customer at the end of each day: ``C`` credit received so far,
    ``n[r]`` what its invoice of rank ``r`` (application order) still owes after
    direct applications (0 before it is posted), ``top`` its highest posted
    rank, the frontier ``f`` = the first rank with ``n[1] + ... + n[f] > C``
    but at most ``top + 1``, and ``P = n[1] + ... + n[f-1] <= C``. Credit
    covers ranks below ``f`` in full and ``min(n[f], C - P)`` of rank ``f``;
    ``C - P`` beyond that is credit left on account. Each day with events
    updates ``n``, ``P``, ``C`` and ``top`` of its customers, moves their
    frontier back (a newly posted invoice below it) or forward, and records the
    change in coverage of every invoice it touched.
    """
    if c_cust.size == 0:
        return _EMPTY_I64, _EMPTY_I64, _EMPTY_I64
    first = np.full(n_cust, _NO_DAY, dtype=np.int64)
    np.minimum.at(first, c_cust, c_day)
    has_credit = first < _NO_DAY
    n_inv = np.bincount(inv_cust, minlength=n_cust) * has_credit
    off = np.concatenate([[0], np.cumsum(n_inv + 1)[:-1]])
    size = int((n_inv + 1).sum()) + 1
    pos_cust = np.concatenate([np.repeat(np.arange(n_cust), n_inv + 1), [0]])
    pos_rank = np.concatenate([np.arange(size - 1) - np.repeat(off, n_inv + 1), [0]])
    pos_inv = np.full(size, -1, dtype=np.int64)
    sel_i = has_credit[inv_cust]
    pos_inv[off[inv_cust[sel_i]] + inv_rank[sel_i]] = np.flatnonzero(sel_i)

    # updates of what invoices owe: postings (+amount) and direct applications (-applied);
    # before a customer's first credit nothing is covered, so they all land on that day
    sel_d = has_credit[inv_cust[d_inv]]
    u_cust = np.concatenate([inv_cust[sel_i], inv_cust[d_inv[sel_d]]])
    u_rank = np.concatenate([inv_rank[sel_i], inv_rank[d_inv[sel_d]]])
    u_delta = np.concatenate([inv_cents[sel_i], -d_cents[sel_d]])
    u_day = np.maximum(np.concatenate([inv_doc[sel_i], d_day[sel_d]]), first[u_cust])
    days = np.unique(np.concatenate([u_day, c_day]))
    u_order = _argsort_days(u_day)
    u_cust, u_rank, u_delta, u_day = u_cust[u_order], u_rank[u_order], u_delta[u_order], u_day[u_order]
    u_pos = off[u_cust] + u_rank
    c_order = _argsort_days(c_day)
    c_cust, c_cents, c_day = c_cust[c_order], c_cents[c_order], c_day[c_order]
    u_bounds = np.searchsorted(u_day, days, side="left").tolist() + [u_day.size]
    c_bounds = np.searchsorted(c_day, days, side="left").tolist() + [c_day.size]

    n = np.zeros(size, dtype=np.int64)
    cov = np.zeros(size, dtype=np.int64)
    f = np.ones(n_cust, dtype=np.int64)
    top = np.zeros(n_cust, dtype=np.int64)
    P = np.zeros(n_cust, dtype=np.int64)
    C = np.zeros(n_cust, dtype=np.int64)
    scratch_c = np.zeros(n_cust, dtype=np.int64)
    scratch_p = np.zeros(size, dtype=np.int64)
    out_pos: list[np.ndarray] = []
    out_val: list[np.ndarray] = []
    out_day: list[np.ndarray] = []
    steps = np.arange(_STEP)[None, :]

    for r, day in enumerate(days.tolist()):
        us, ue, cs, ce = u_bounds[r], u_bounds[r + 1], c_bounds[r], c_bounds[r + 1]
        cu, cc = u_cust[us:ue], c_cust[cs:ce]
        custs = _unique_in_place(np.concatenate([cu, cc]), scratch_c)
        touched = [off[custs] + f[custs]]
        back = False
        if ue > us:
            pos, delta, rank = u_pos[us:ue], u_delta[us:ue], u_rank[us:ue]
            np.add.at(n, pos, delta)
            below = rank < f[cu]
            if below.any():
                np.add.at(P, cu[below], delta[below])
                back = bool((delta[below] > 0).any())
            posted = delta > 0
            np.maximum.at(top, cu[posted], rank[posted])
            touched.append(pos)
        if ce > cs:
            np.add.at(C, cc, c_cents[cs:ce])
        if back:
            # an invoice posted below the frontier: credit may no longer cover all below it
            idx = custs[P[custs] > C[custs]]
            while idx.size:
                f[idx] -= 1
                p = off[idx] + f[idx]
                touched.append(p)
                P[idx] -= n[p]
                idx = idx[P[idx] > C[idx]]
        # credit covers the frontier invoice in full: move forward (up to _STEP ranks per pass),
        # at most past the top posted rank
        idx = custs[f[custs] <= top[custs]]
        idx = idx[P[idx] + n[off[idx] + f[idx]] <= C[idx]]
        while idx.size:
            first = off[idx] + f[idx]
            pos2 = first[:, None] + steps
            valid = steps < np.minimum(top[idx] - f[idx] + 1, _STEP)[:, None]
            reach = P[idx][:, None] + np.cumsum(np.where(valid, n[np.where(valid, pos2, 0)], 0), axis=1)
            ok = valid & (reach <= C[idx][:, None])  # a prefix of each row: n >= 0
            k = ok.sum(axis=1)
            touched.append(pos2[ok])
            P[idx] = reach[np.arange(idx.size), k - 1]
            f[idx] += k
            idx = idx[k == _STEP]
            idx = idx[f[idx] <= top[idx]]
            idx = idx[P[idx] + n[off[idx] + f[idx]] <= C[idx]]
        touched.append(off[custs] + f[custs])
        t = _unique_in_place(np.concatenate(touched), scratch_p)
        t = t[pos_rank[t] > 0]
        lt, rt = pos_cust[t], pos_rank[t]
        ft = f[lt]
        new = np.where(rt < ft, n[t], np.where(rt == ft, np.minimum(n[t], C[lt] - P[lt]), 0))
        change = new - cov[t]
        nz = change != 0
        if nz.any():
            out_pos.append(t[nz])
            out_val.append(change[nz])
            out_day.append(np.full(int(nz.sum()), day, dtype=np.int64))
        cov[t] = new

    if not out_pos:
        return _EMPTY_I64, _EMPTY_I64, _EMPTY_I64
    rec_pos = np.concatenate(out_pos)
    return pos_inv[rec_pos], np.concatenate(out_day), np.concatenate(out_val)


def _timeline(
    inv_doc: np.ndarray, inv_cents: np.ndarray, a_inv: np.ndarray, a_day: np.ndarray, a_cum: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Base amount each invoice owes after each day it changes: (invoice, day, outstanding), sorted.

    ``a_*`` are the applications sorted by (invoice, day) with ``a_cum`` the base amount
    applied so far after each; a day's last row counts, the posting day starts at the amount.
    """
    n_inv = inv_doc.size
    last = np.ones(a_inv.size, dtype=bool)
    last[:-1] = (a_inv[1:] != a_inv[:-1]) | (a_day[1:] != a_day[:-1])
    c_inv, c_day = a_inv[last], a_day[last]
    c_out = inv_cents[c_inv] - a_cum[last]
    if n_inv == 0:
        return _EMPTY_I64, _EMPTY_I64, _EMPTY_I64
    # merge the postings (one per invoice, sorted by invoice) and the changes (sorted by
    # invoice, day) by counting, straight into arrays of the final size: a change on the
    # posting day replaces the posting row; changes dated before the posting day come first
    doc_le = inv_doc[c_inv] <= c_day
    posting_day = np.zeros(n_inv, dtype=bool)
    posting_day[c_inv[c_day == inv_doc[c_inv]]] = True
    kept = ~posting_day
    kept_before = np.cumsum(kept) - kept  # kept postings of earlier invoices
    changes_before = np.zeros(n_inv + 1, dtype=np.int64)
    np.cumsum(np.bincount(c_inv, minlength=n_inv), out=changes_before[1:])
    early = np.bincount(c_inv[~doc_le], minlength=n_inv)  # changes dated before the posting day
    n = int(kept.sum()) + c_inv.size
    t_inv = np.empty(n, dtype=np.int64)
    t_day = np.empty(n, dtype=np.int64)
    t_out = np.empty(n, dtype=np.int64)
    p = np.flatnonzero(kept)
    p_pos = kept_before[p] + changes_before[p] + early[p]
    t_inv[p_pos], t_day[p_pos], t_out[p_pos] = p, inv_doc[p], inv_cents[p]
    c_pos = np.arange(c_inv.size, dtype=np.int64) + kept_before[c_inv] + (doc_le & kept[c_inv])
    t_inv[c_pos], t_day[c_pos], t_out[c_pos] = c_inv, c_day, c_out
    return t_inv, t_day, t_out


# ----------------------------------------------------------------------------- public frames


def ensure_cash_application(
    ledger: pl.LazyFrame | pl.DataFrame | None,
    fx_rates: pl.LazyFrame | pl.DataFrame | None,
    base_currency: str,
    cash: CashApplication | None,
) -> CashApplication:
    """``cash`` when given (checked against ``base_currency``), else the cash application of ``ledger``."""
    base_currency = check_base_currency(base_currency)
    if cash is None:
        if ledger is None:
            raise ValueError("ledger is required when no cash application is given")
        return cash_application(ledger, fx_rates, base_currency=base_currency)
    if not isinstance(cash, CashApplication):
        raise TypeError(f"cash must be a CashApplication from cash_application(); got {type(cash).__name__}")
    if cash.base_currency != base_currency:
        raise ValueError(f"cash was computed in base currency {cash.base_currency}; got base_currency={base_currency}")
    return cash


def _id_frame(ids: pl.Series) -> pl.DataFrame:
    return pl.DataFrame({"cust": np.arange(ids.len(), dtype=np.int64), "customer_id": ids})


def applications(
    ledger: pl.LazyFrame | pl.DataFrame | None,
    fx_rates: pl.LazyFrame | pl.DataFrame | None,
    *,
    base_currency: str,
    cash: CashApplication | None = None,
) -> pl.LazyFrame:
    """Every application of money to an invoice, dated: the silver cash application.

    Columns :data:`APPLICATION_COLUMNS`: ``invoice_id``, ``customer_id``,
    ``applied_date`` (the day it takes effect), ``applied_amount_base``
    (Decimal(18, 2), base currency; negative for credit on account released or
    moved to an invoice due earlier), ``kind`` (:data:`APPLICATION_KINDS`),
    ``entry_id`` (the applying entry; null for ``ON_ACCOUNT``). For any invoice
    and date ``t``: ``outstanding = amount_base - sum(applied_amount_base where
    applied_date <= t)``, always between 0 and ``amount_base``. Sorted by
    invoice_id, applied_date, kind. ``cash`` reuses a :func:`cash_application`.
    """
    cash = ensure_cash_application(ledger, fx_rates, base_currency, cash)
    apps = cash.applications
    rows = apps["entry_row"].to_numpy()
    entry = cash.entry_ids.gather(pl.Series(np.maximum(rows, 0))).scatter(np.flatnonzero(rows < 0), None)
    inv = apps["inv"].to_numpy()
    return (
        pl.DataFrame(
            {
                "invoice_id": cash.entry_ids.gather(pl.Series(cash.invoice_facts["entry_row"].to_numpy()[inv])),
                "customer_id": cash.customer_ids.gather(pl.Series(cash.invoice_facts["cust"].to_numpy()[inv])),
                "applied_date": pl.Series(apps["day"].to_numpy(), dtype=pl.Int32).cast(pl.Date),
                "cents": apps["cents"],
                "kind": apps["kind_code"].replace_strict(dict(enumerate(APPLICATION_KINDS)), return_dtype=pl.String),
                "entry_id": entry,
            }
        )
        .select(
            "invoice_id",
            "customer_id",
            "applied_date",
            applied_amount_base=cents_to_money(pl.col("cents")),
            kind="kind",
            entry_id="entry_id",
        )
        .sort("invoice_id", "applied_date", "kind")
        .lazy()
    )


def invoices_base(
    ledger: pl.LazyFrame | pl.DataFrame | None,
    fx_rates: pl.LazyFrame | pl.DataFrame | None,
    *,
    base_currency: str,
    cash: CashApplication | None = None,
) -> pl.LazyFrame:
    """The invoices with their amount in base currency (columns :data:`INVOICE_BASE_COLUMNS`).

    ``amount`` is in the invoice ``currency``; ``amount_base`` (Decimal(18, 2))
    is converted with the latest fx rate on or before ``document_date``.
    Invoices without such a rate are not listed (see :func:`unconverted_entries`).
    Sorted by customer_id, due_date, document_date, invoice_id.
    """
    cash = ensure_cash_application(ledger, fx_rates, base_currency, cash)
    return (
        cash.invoices.join(_id_frame(cash.customer_ids), on="cust", how="left")
        .select(
            "invoice_id",
            "customer_id",
            document_date=pl.col("doc_day").cast(pl.Date),
            due_date=pl.col("due_day").cast(pl.Date),
            currency="currency",
            amount="amount",
            amount_base=cents_to_money(pl.col("amount_cents")),
        )
        .sort("customer_id", "due_date", "document_date", "invoice_id")
        .lazy()
    )


def unconverted_entries(
    ledger: pl.LazyFrame | pl.DataFrame,
    fx_rates: pl.LazyFrame | pl.DataFrame | None,
    *,
    base_currency: str,
) -> pl.LazyFrame:
    """Ledger entries in a foreign currency with no fx rate on or before their document date.

    They are left out of cash application and features (never converted at
    rate 1); this lists them (entry_id, customer_id, entry_type,
    document_date, currency, amount) so a run can report their count.
    """
    base_currency = check_base_currency(base_currency)
    e = _entries(ledger, fx_rates, base_currency)
    return (
        e.frame.filter(pl.Series(~e.converted))
        .select("entry_id", "customer_id", "entry_type", "document_date", "currency", "amount")
        .sort("entry_id")
        .lazy()
    )


# ----------------------------------------------------------------------------- per as-of sums


class _AsOfSums:
    """Sums over events per (customer, as-of date) with difference arrays: no sorting.

    An event dated ``e`` counts at as-of ``t`` when ``t - window < e <= t``,
    i.e. for the as-of dates in ``[e, e + window)``.
    """

    def __init__(self, n_cust: int, asof_days: np.ndarray) -> None:
        self.n_cust = n_cust
        self.asof = asof_days
        self.width = asof_days.size + 1
        # index of the first as-of date on or after each day from the day before the first
        # as-of date to the day after the last (days outside are clipped to the ends: same answer)
        self.lut_start = int(asof_days[0]) - 1
        self.lut = np.searchsorted(asof_days, np.arange(self.lut_start, int(asof_days[-1]) + 2), side="left")

    def first_at_or_after(self, day: np.ndarray) -> np.ndarray:
        """Index of the first as-of date on or after ``day`` (``len(as-of dates)`` when none)."""
        return np.take(self.lut, np.asarray(day, dtype=np.int64) - self.lut_start, mode="clip")

    def ranges(self, cust: np.ndarray, lo: np.ndarray, hi: np.ndarray, weight: np.ndarray | None = None) -> np.ndarray:
        """Matrix (customers x as-of) of the weights summed over as-of index ranges ``[lo, hi)``."""
        flat = self.n_cust * self.width
        base = np.asarray(cust, dtype=np.int64) * self.width
        w = None if weight is None else np.asarray(weight, dtype=np.float64)
        acc = np.bincount(base + lo, weights=w, minlength=flat) - np.bincount(
            base + np.maximum(hi, lo), weights=w, minlength=flat
        )
        return np.cumsum(acc.reshape(self.n_cust, self.width), axis=1)[:, :-1]

    def prefixes(
        self, cust: np.ndarray, lo: np.ndarray, uppers: list[np.ndarray], weight: np.ndarray
    ) -> list[np.ndarray]:
        """:meth:`ranges` over ``[lo, upper)`` for each of ``uppers`` (each ``>= lo``), sharing the ``lo`` part."""
        flat = self.n_cust * self.width
        base = np.asarray(cust, dtype=np.int64) * self.width
        w = np.asarray(weight, dtype=np.float64)
        start = np.bincount(base + lo, weights=w, minlength=flat)
        return [
            np.cumsum((start - np.bincount(base + up, weights=w, minlength=flat)).reshape(self.n_cust, self.width), axis=1)[:, :-1]
            for up in uppers
        ]

    def window(
        self,
        cust: np.ndarray,
        day: np.ndarray,
        window: int | None,
        weight: np.ndarray | None = None,
        lo: np.ndarray | None = None,
    ) -> np.ndarray:
        """Matrix of the weights (or counts) of the events dated in ``(t - window, t]`` (all up to t if None)."""
        lo = self.first_at_or_after(day) if lo is None else lo
        hi = np.full_like(lo, self.width - 1) if window is None else self.first_at_or_after(np.asarray(day) + window)
        return self.ranges(cust, lo, hi, weight)


def _grid(
    cash: CashApplication, customers_asof: pl.LazyFrame | pl.DataFrame | None, dates: list[date]
) -> tuple[np.ndarray, np.ndarray, pl.Series]:
    """The observation grid as (customer number, as-of index) arrays, and the ids of the numbers."""
    asof_days = _days(dates)
    ids = cash.customer_ids
    if customers_asof is None:
        first = np.searchsorted(asof_days, cash.first_entry_day, side="left")
        cnt = len(dates) - first
        cust = np.repeat(np.arange(ids.len(), dtype=np.int64), cnt)
        start = np.repeat(np.cumsum(cnt) - cnt, cnt)
        return cust, np.repeat(first, cnt) + (np.arange(cust.size) - start), ids
    grid_lf = to_lazy(customers_asof, "customers_asof")
    require_columns(grid_lf, ("customer_id", AS_OF_DATE), "customers_asof")
    g = (
        grid_lf.select(pl.col("customer_id").cast(pl.String), pl.col(AS_OF_DATE).cast(pl.Date))
        .filter(pl.col(AS_OF_DATE).is_in(pl.Series(dates, dtype=pl.Date).implode()) & pl.col("customer_id").is_not_null())
        .collect(engine="in-memory")
    )
    if not in_strict_key_order(g):  # a master in key order has no duplicates to drop
        g = g.unique(maintain_order=True)
    seen = g.get_column("customer_id").unique()
    all_ids = pl.concat([ids, seen.filter(~seen.is_in(ids.implode())).sort()])
    day_idx = pl.DataFrame({AS_OF_DATE: pl.Series(dates, dtype=pl.Date), "asof": np.arange(len(dates), dtype=np.int64)})
    # in customer_id, as_of_date order (a master in that order stays as it is): the features
    # come out sorted without sorting them again
    g = sort_by_keys(g).join(_id_frame(all_ids), on="customer_id", maintain_order="left").join(
        day_idx, on=AS_OF_DATE, maintain_order="left"
    )
    return g["cust"].to_numpy(), g["asof"].to_numpy(), all_ids


def in_strict_key_order(frame: pl.DataFrame) -> bool:
    """True when (customer_id, as_of_date) strictly increases down ``frame`` and has no nulls
    (then the keys are unique)."""
    c, d = pl.col("customer_id"), pl.col(AS_OF_DATE)
    if frame.height < 2:
        return frame.height == 0 or frame.select(c.is_not_null().all() & d.is_not_null().all()).item()
    return frame.select(
        ((c.shift(-1) > c) | ((c.shift(-1) == c) & (d.shift(-1) > d))).head(frame.height - 1).all(ignore_nulls=False)
        & c.is_not_null().all()
        & d.is_not_null().all()
    ).item() is True


def _days(dates: list[date]) -> np.ndarray:
    return np.array([(d - date(1970, 1, 1)).days for d in dates], dtype=np.int64)


def _open_segments(cash: CashApplication) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(invoice, from day, to day exclusive, outstanding) of every stretch an invoice owes something."""
    t_inv, t_day, t_out = cash.timeline_inv, cash.timeline_day, cash.timeline_out
    nxt = np.full(t_day.size, np.iinfo(np.int64).max // 4, dtype=np.int64)
    same = t_inv[1:] == t_inv[:-1]
    nxt[:-1] = np.where(same, t_day[1:], nxt[:-1])
    keep = t_out > 0
    return t_inv[keep], t_day[keep], nxt[keep], t_out[keep]


def _settlements(cash: CashApplication) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(customer, close day, delay days) of every settled invoice.

    An invoice is settled on the first day its outstanding reaches 0 after its
    due date or, when it owed nothing at the end of its due date, on the day
    that last run of zero began. It *closes* (counts for payment behaviour) on
    ``max(settled, due date)``: only then is its settlement final, because
    outstanding can rise again only before the due date. Delay = settled - due.
    """
    t_inv, t_day, t_out = cash.timeline_inv, cash.timeline_day, cash.timeline_out
    n = t_day.size
    if n == 0:
        return _EMPTY_I64, _EMPTY_I64, _EMPTY_I64
    due = cash.invoice_facts["due_day"].to_numpy().astype(np.int64)
    inv_cust = cash.invoice_facts["cust"].to_numpy()
    first_row = np.ones(n, dtype=bool)
    first_row[1:] = t_inv[1:] != t_inv[:-1]
    zero = t_out == 0
    prev_owed = np.ones(n, dtype=bool)
    prev_owed[1:] = t_out[:-1] > 0
    run_start = zero & (first_row | prev_owed)
    start_idx = np.maximum.accumulate(np.where(run_start, np.arange(n), 0))
    d = due[t_inv]
    next_after_due = np.ones(n, dtype=bool)
    next_after_due[:-1] = (t_inv[1:] != t_inv[:-1]) | (t_day[1:] > d[:-1])
    last_by_due = (t_day <= d) & next_after_due
    cand = np.flatnonzero(zero & ((t_day > d) | last_by_due))
    if cand.size == 0:
        return _EMPTY_I64, _EMPTY_I64, _EMPTY_I64
    first = cand[np.concatenate([[True], t_inv[cand][1:] != t_inv[cand][:-1]])]
    inv = t_inv[first]
    settled = t_day[start_idx[first]]
    return inv_cust[inv], np.maximum(settled, due[inv]), settled - due[inv]


def _unapplied_credit(
    cash: CashApplication, sums: _AsOfSums, q_cust: np.ndarray, q_asof: np.ndarray, dates: list[date]
) -> np.ndarray:
    """Base cents of credit on account not applied at each query (customer, as-of index).

    Credit sits in the currency of its account; what is left at ``t`` is valued at the
    latest rate on or before ``t``.
    """
    out = np.zeros(q_cust.size, dtype=np.int64)
    cr = cash.credits
    if cr.height == 0:
        return out
    inv_cust = cash.invoice_facts["cust"].to_numpy()
    inv_cur = cash.invoice_facts["cur"].to_numpy()
    oa = cash.applications.filter(pl.col("kind_code") == _KIND_CODE[ON_ACCOUNT])
    oa_inv = oa["inv"].to_numpy().astype(np.int64)
    oa_cur = inv_cur[oa_inv]
    c_cur = cr["cur"].to_numpy()
    for code in np.unique(c_cur).tolist():
        m = c_cur == code
        got = sums.window(cr["cust"].to_numpy()[m], cr["day"].to_numpy()[m], None, cr["own_cents"].to_numpy()[m])
        u = oa_cur == code
        used = sums.window(inv_cust[oa_inv[u]], oa["day"].to_numpy()[u], None, oa["own_cents"].to_numpy()[u])
        left = np.rint((got - used)[q_cust, q_asof]).astype(np.int64)
        currency = cash.currencies[code]
        if currency == cash.base_currency:
            out += left
            continue
        nz = np.flatnonzero(left)
        if nz.size == 0:
            continue
        at_dates = (
            pl.DataFrame({"as_of_date": pl.Series(dates, dtype=pl.Date)})
            .join_asof(
                cash.rates.filter(pl.col("currency") == currency).sort("rate_date"),
                left_on="as_of_date",
                right_on="rate_date",
                strategy="backward",
            )
            .get_column("rate_to_base")
        )
        out[nz] += _to_base(left[nz], at_dates.gather(pl.Series(q_asof[nz])))
    return out


def invoice_entries_in_window(
    cash: CashApplication, customer_ids: pl.Series, as_of: pl.Series, as_of_dates: Sequence[date], window_days: int
) -> np.ndarray:
    """Per (customer_ids[i], as_of[i]): the ``INVOICE`` entries (any currency, converted or not)
    of that customer with ``document_date`` in ``(t - window_days, t]``.

    ``as_of`` values must be among ``as_of_dates``; a customer without ledger entries counts 0.
    """
    dates = check_as_of_dates(as_of_dates)
    if not isinstance(window_days, int) or window_days < 1:
        raise ValueError(f"window_days must be a whole number >= 1; got {window_days!r}")
    asof_days = _days(dates)
    q = pl.DataFrame({"customer_id": customer_ids.cast(pl.String), "t": as_of.cast(pl.Date).cast(pl.Int32)})
    q = q.join(_id_frame(cash.customer_ids), on="customer_id", how="left", maintain_order="left")
    t = q["t"].to_numpy().astype(np.int64)
    asof_idx = np.searchsorted(asof_days, t)
    if np.any(asof_idx >= asof_days.size) or np.any(asof_days[np.minimum(asof_idx, asof_days.size - 1)] != t):
        raise ValueError("as_of holds dates that are not in as_of_dates")
    found = q["cust"].is_not_null().to_numpy()
    cust = q["cust"].fill_null(0).to_numpy().astype(np.int64)
    n_cust = max(cash.customer_ids.len(), 1)
    counts = _AsOfSums(n_cust, asof_days).window(cash.invoice_entry_cust, cash.invoice_entry_day, window_days)
    return np.where(found, np.rint(counts[cust, asof_idx]).astype(np.int64), 0)


def _p90_by_asof(
    cust: np.ndarray, close_day: np.ndarray, delay: np.ndarray, q_cust: np.ndarray, q_day: np.ndarray
) -> np.ndarray:
    """90th percentile (linear interpolation) of the delays closed in ``(t - 365 days, t]`` per query."""
    return _window_quantile(cust, close_day, delay, q_cust, q_day, WINDOW_12M_DAYS, 0.9)


def _window_quantile(
    cust: np.ndarray,
    day: np.ndarray,
    value: np.ndarray,
    q_cust: np.ndarray,
    q_day: np.ndarray,
    window_days: int,
    quantile: float,
) -> np.ndarray:
    """Per query (q_cust[i], q_day[i]): the ``quantile`` (linear interpolation, as Polars'
    ``quantile(..., "linear")``) of the integer ``value`` of that customer's events dated in
    ``(t - window_days, t]``; NaN when there are none.

    The events of one customer and window are a contiguous range once sorted by (customer,
    day), so the k-th smallest value of a range is a walk down a wavelet matrix of the
    values' ranks: one binary level per bit, every query at once.
    """
    out = np.full(q_cust.size, np.nan)
    if cust.size == 0 or q_cust.size == 0:
        return out
    lo_day = min(int(np.min(day)), int(np.min(q_day))) - window_days
    key = (np.asarray(cust, dtype=np.int64) << 32) + (np.asarray(day, dtype=np.int64) - lo_day)
    order = np.argsort(key, kind="stable")  # cheap: settlements come by customer already
    key = key[order]
    q_key = (np.asarray(q_cust, dtype=np.int64) << 32) + (np.asarray(q_day, dtype=np.int64) - lo_day)
    a = np.searchsorted(key, q_key - window_days, side="right")
    b = np.searchsorted(key, q_key, side="right")
    has = np.flatnonzero(b > a)
    a, b = a[has], b[has]
    pos = (b - a - 1).astype(np.float64) * quantile
    lo = pos.astype(np.int64)  # floor: pos >= 0
    hi = np.ceil(pos).astype(np.int64)

    # values as ranks 0..k-1 of the distinct values (order kept, so order statistics carry over)
    v = np.asarray(value, dtype=np.int64)[order]
    v_min, v_span = int(v.min()), int(v.max()) - int(v.min())
    if v_span <= 4 * v.size + 1024:
        present = np.bincount(v - v_min) > 0
        distinct = np.flatnonzero(present) + v_min
        rank = (np.cumsum(present) - 1)[v - v_min]
    else:
        distinct, rank = np.unique(v, return_inverse=True)
    levels = max(int(distinct.size - 1).bit_length(), 1)
    idx = np.int32 if v.size < np.iinfo(np.int32).max else np.int64
    zeros_before, zeros_total = [], []
    cur = rank.astype(np.int32 if levels < 31 else np.int64)
    for level in range(levels - 1, -1, -1):
        zero = ((cur >> level) & 1) == 0
        z = np.zeros(v.size + 1, dtype=idx)
        np.cumsum(zero, out=z[1:])
        zeros_before.append(z)
        zeros_total.append(int(z[-1]))
        cur = np.concatenate([cur[zero], cur[~zero]])  # stable: zeros first

    def kth(a: np.ndarray, b: np.ndarray, k: np.ndarray) -> np.ndarray:
        a, b, k = a.astype(idx), b.astype(idx), k.astype(idx)
        r = np.zeros(a.size, dtype=np.int64)
        for i, level in enumerate(range(levels - 1, -1, -1)):
            z = zeros_before[i]
            za, zb = z[a], z[b]
            zeros = zb - za
            one = k >= zeros
            k = np.where(one, k - zeros, k)
            a = np.where(one, a - za + zeros_total[i], za)
            b = np.where(one, b - zb + zeros_total[i], zb)
            r |= one.astype(np.int64) << level
        return distinct[r]

    below = kth(a, b, lo).astype(np.float64)
    res = below.copy()
    m = np.flatnonzero(hi != lo)
    above = kth(a[m], b[m], hi[m]).astype(np.float64)
    res[m] = (pos[m] - lo[m]) * (above - below[m]) + below[m]  # Polars' formula, same rounding
    out[has] = res
    return out


def ledger_features(
    ledger: pl.LazyFrame | pl.DataFrame | None,
    fx_rates: pl.LazyFrame | pl.DataFrame | None,
    customers_asof: pl.LazyFrame | pl.DataFrame | None,
    as_of_dates: Sequence[date],
    *,
    base_currency: str,
    cash: CashApplication | None = None,
) -> pl.LazyFrame:
    """Point-in-time ledger features per (customer_id, as_of_date), columns :data:`LEDGER_FEATURE_COLUMNS`.

    Rows: the (customer_id, as_of_date) pairs of ``customers_asof`` at the given
    dates, or, when it is None, every customer with a ledger entry dated on or
    before the as-of date. Amounts are Decimal(18, 2) in base currency. ``cash``
    (from :func:`cash_application`) avoids recomputing the cash application.
    Every value at ``t`` uses only entries dated ``<= t``.

    - ``exposure``: the contract's exposure at ``t`` (sum of outstanding amounts).
    - ``aging_current`` (not yet due), ``aging_1_30``, ``aging_31_90``,
      ``aging_91_180``, ``aging_over_180``: exposure by the invoices' days past
      due at ``t``; they add up to ``exposure``.
    - ``dpd_max`` (Int32): largest days past due of an invoice at ``t`` (0 if
      none); ``dpd_weighted``: outstanding-weighted mean days past due (0 when
      there is no exposure).
    - ``invoices_past_30_12m``, ``invoices_past_60_12m``: invoices that reached
      30 / 60 days past due (still owing at the end of ``due_date + 30 / 60``),
      that day falling in the last 12 months.
    - ``avg_monthly_sales_12m`` (Decimal): invoiced in the last 12 months / 12,
      rounded half up to the cent; ``invoice_count_12m``;
      ``sales_growth_3m_vs_12m``: daily sales rate of the last 3 months over
      that of the last 12, minus 1 (null without sales in 12 months);
      ``credit_note_ratio_12m``: credit notes / invoiced, last 12 months;
      ``months_since_last_invoice``: whole calendar months (null if none).
    - Payment behaviour over the invoices *closed* in the window (an invoice
      closes on the day it is settled, or on its due date if it was settled
      before; delay = settled - due, in days, negative = early):
      ``pay_delay_avg_12m``, ``pay_delay_p90_12m`` (linear interpolation),
      ``share_paid_late_12m`` (delay > 0), ``pay_delay_trend`` (average of the
      last 3 months minus that of the last 12); null when nothing closed.
    - ``dso_days``: exposure / invoiced in the last 12 months x 365 (null without sales).
    - ``unapplied_credit`` (Decimal): credit on account not applied to any invoice at ``t``.

    ``utilization`` needs the limit in force and is left to the panel.
    """
    dates = check_as_of_dates(as_of_dates)
    cash = ensure_cash_application(ledger, fx_rates, base_currency, cash)
    asof_days = _days(dates)
    q_cust, q_asof, ids = _grid(cash, customers_asof, dates)
    q_day = asof_days[q_asof]
    c_cust, c_day, c_delay = _settlements(cash)
    # the 90th percentile (numpy, most of it outside the GIL) runs next to everything else
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger") as pool:
        p90_job = pool.submit(_p90_by_asof, c_cust, c_day, c_delay, q_cust, q_day)
        sums = _AsOfSums(ids.len(), asof_days)

        def at(matrix: np.ndarray) -> np.ndarray:
            return matrix[q_cust, q_asof]

        inv = cash.invoice_facts
        inv_cust = inv["cust"].to_numpy()
        inv_doc = inv["doc_day"].to_numpy().astype(np.int64)
        inv_due = inv["due_day"].to_numpy().astype(np.int64)
        inv_amt = inv["amount_cents"].to_numpy()

        doc_lo = sums.first_at_or_after(inv_doc)
        s12 = np.rint(at(sums.window(inv_cust, inv_doc, WINDOW_12M_DAYS, inv_amt, lo=doc_lo))).astype(np.int64)
        s3 = np.rint(at(sums.window(inv_cust, inv_doc, WINDOW_3M_DAYS, inv_amt, lo=doc_lo))).astype(np.int64)
        n12 = np.rint(at(sums.window(inv_cust, inv_doc, WINDOW_12M_DAYS, lo=doc_lo))).astype(np.int64)
        # last invoice on or before t: a running maximum over the as-of dates
        last = np.full((ids.len(), asof_days.size + 1), -1, dtype=np.int64)
        np.maximum.at(last, (inv_cust, doc_lo), inv_doc)
        last_inv = at(np.maximum.accumulate(last, axis=1)[:, :-1])

        cn = cash.credit_notes
        cn12 = np.rint(at(sums.window(cn["cust"].to_numpy(), cn["day"].to_numpy(), WINDOW_12M_DAYS, cn["cents"].to_numpy())))

        past = {}
        for days in (30, 60):
            owed = cash.outstanding_of_every_invoice(inv_due + days) > 0
            past[days] = np.rint(at(sums.window(inv_cust[owed], inv_due[owed] + days, WINDOW_12M_DAYS))).astype(np.int64)

        late = (c_delay > 0).astype(np.float64)
        c_lo = sums.first_at_or_after(c_day)
        k12 = at(sums.window(c_cust, c_day, WINDOW_12M_DAYS, lo=c_lo))
        d12 = at(sums.window(c_cust, c_day, WINDOW_12M_DAYS, c_delay, lo=c_lo))
        l12 = at(sums.window(c_cust, c_day, WINDOW_12M_DAYS, late, lo=c_lo))
        k3 = at(sums.window(c_cust, c_day, WINDOW_3M_DAYS, lo=c_lo))
        d3 = at(sums.window(c_cust, c_day, WINDOW_3M_DAYS, c_delay, lo=c_lo))

        unapplied = _unapplied_credit(cash, sums, q_cust, q_asof, dates)

        # aging: each stretch an invoice owes money counts at the as-of dates inside it, in the
        # bucket its days past due put it in then (bucket edges are fixed days after the due date)
        s_inv, s_from, s_to, s_out = _open_segments(cash)
        s_cust, s_due = inv_cust[s_inv], inv_due[s_inv]
        lo, hi = sums.first_at_or_after(s_from), sums.first_at_or_after(s_to)
        edges = [sums.first_at_or_after(s_due + k) for k in (1, 31, 91, 181)]
        bounds = [lo, *[np.clip(e, lo, hi) for e in edges], hi]
        # sums over [lo, bound) for each upper bound: a bucket is the difference of two of them
        upto = [np.rint(at(m)).astype(np.int64) for m in sums.prefixes(s_cust, lo, bounds[1:], s_out)]
        buckets = [upto[0], *[upto[j + 1] - upto[j] for j in range(4)]]
        past_lo = bounds[1]
        due_rel = (s_due - asof_days[0]).astype(np.float64)
        w_out = (upto[4] - upto[0]).astype(np.float64)  # outstanding past due: exposure - not yet due
        w_due = at(sums.ranges(s_cust, past_lo, hi, s_out * due_rel))
        dpd_sum = w_out * (q_day - asof_days[0]) - w_due
        # the largest days past due: the earliest due date among past-due stretches at t
        cnt = hi - past_lo
        has = cnt > 0
        rep = np.repeat(np.flatnonzero(has), cnt[has])
        step = np.arange(rep.size) - np.repeat(np.cumsum(cnt[has]) - cnt[has], cnt[has])
        min_due = np.full((ids.len(), asof_days.size), np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(min_due, (s_cust[rep], past_lo[rep] + step), s_due[rep])
        md = at(min_due)
        dpd_max = np.where(md == np.iinfo(np.int64).max, 0, q_day - np.minimum(md, q_day))

        p90 = p90_job.result()
    exposure = np.sum(buckets, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        frame = pl.DataFrame(
            {
                "cust": q_cust,
                "asof": q_asof,
                "exposure": exposure,
                **{name: b for name, b in zip(AGING_COLUMNS, buckets, strict=True)},
                "dpd_max": dpd_max,
                "dpd_weighted": np.where(exposure > 0, dpd_sum / exposure, 0.0),
                "invoices_past_30_12m": past[30],
                "invoices_past_60_12m": past[60],
                "s12": s12,
                "sales_growth_3m_vs_12m": np.where(s12 > 0, (s3 / WINDOW_3M_DAYS) / (s12 / WINDOW_12M_DAYS) - 1.0, np.nan),
                "pay_delay_avg_12m": np.where(k12 > 0, d12 / k12, np.nan),
                "pay_delay_p90_12m": p90,
                "share_paid_late_12m": np.where(k12 > 0, l12 / k12, np.nan),
                "pay_delay_trend": np.where((k3 > 0) & (k12 > 0), d3 / k3 - d12 / k12, np.nan),
                "dso_days": np.where(s12 > 0, exposure / s12 * WINDOW_12M_DAYS, np.nan),
                "credit_note_ratio_12m": np.where(s12 > 0, cn12 / s12, np.nan),
                "invoice_count_12m": n12,
                "last_inv": np.where(last_inv < 0, 0, last_inv),
                "has_inv": last_inv >= 0,
                "unapplied": unapplied,
            }
        )
    floats = ("sales_growth_3m_vs_12m", "pay_delay_avg_12m", "pay_delay_p90_12m", "share_paid_late_12m", "pay_delay_trend", "dso_days", "credit_note_ratio_12m")
    return (
        frame.with_columns(pl.col(c).fill_nan(None) for c in floats)
        .with_columns(
            customer_id=ids.gather(pl.Series(q_cust)),
            as_of_date=pl.Series(dates, dtype=pl.Date).gather(pl.Series(q_asof)),
        )
        .select(
            "customer_id",
            AS_OF_DATE,
            *[cents_to_money(pl.col(c)).alias(c) for c in ("exposure", *AGING_COLUMNS)],
            pl.col("dpd_max").cast(pl.Int32),
            "dpd_weighted",
            pl.col("invoices_past_30_12m").cast(pl.Int32),
            pl.col("invoices_past_60_12m").cast(pl.Int32),
            avg_monthly_sales_12m=cents_to_money((pl.col("s12") + 6) // 12),
            sales_growth_3m_vs_12m="sales_growth_3m_vs_12m",
            pay_delay_avg_12m="pay_delay_avg_12m",
            pay_delay_p90_12m="pay_delay_p90_12m",
            share_paid_late_12m="share_paid_late_12m",
            pay_delay_trend="pay_delay_trend",
            dso_days="dso_days",
            credit_note_ratio_12m="credit_note_ratio_12m",
            invoice_count_12m=pl.col("invoice_count_12m").cast(pl.Int32),
            months_since_last_invoice=pl.when(pl.col("has_inv"))
            .then(months_between(pl.col("last_inv").cast(pl.Int32).cast(pl.Date), pl.col(AS_OF_DATE)))
            .otherwise(None)
            .cast(pl.Int32),
            unapplied_credit=cents_to_money(pl.col("unapplied")),
        )
        .pipe(sort_by_keys)
        .lazy()
    )


def dpd_default_dates(cash: CashApplication, materiality_threshold: Decimal) -> pl.DataFrame:
    """Per customer, the first day an invoice is 90 days past due and owes more than the threshold.

    Columns customer_id, default_date. Outstanding never rises after the due
    date, so an invoice triggers exactly on ``due_date + 90`` when it still owes
    more than ``materiality_threshold`` (base currency) at the end of that day,
    and never later.
    """
    if not isinstance(materiality_threshold, Decimal) or not materiality_threshold.is_finite() or materiality_threshold < 0:
        raise ValueError(f"materiality_threshold must be a finite Decimal >= 0; got {materiality_threshold!r}")
    threshold_cents = int((materiality_threshold * 100).to_integral_value(rounding="ROUND_FLOOR"))
    inv = cash.invoice_facts
    due90 = inv["due_day"].to_numpy().astype(np.int64) + 90
    owed = cash.outstanding_of_every_invoice(due90)
    hit = owed > threshold_cents
    return (
        pl.DataFrame({"cust": inv["cust"].to_numpy()[hit], "day": due90[hit]})
        .group_by("cust")
        .agg(pl.col("day").min())
        .join(_id_frame(cash.customer_ids), on="cust", how="left")
        .select("customer_id", default_date=pl.col("day").cast(pl.Int32).cast(pl.Date))
        .sort("customer_id")
    )
