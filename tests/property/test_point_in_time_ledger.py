"""Point in time for ledger features and labels, and cash application against its definition.

Contract: "every feature of an observation at t uses only ledger entries with
document_date <= t [...] and events with event_date <= t. Nothing later may
change it." So appending entries dated after t leaves every feature at an
as-of date <= t unchanged, and every label whose 12-month window ends on or
before t. The cash application is also checked against a plain-Python
reading of its definition (features.ledger docstring): at any date, direct
applications capped at the invoice amount, credit on account (on-account
payments plus over-payments) applied to the invoices posted by then, oldest
due date first.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from creditflow.core.schema import BUREAU_EVENTS, FX_RATES, LEDGER
from creditflow.features.labels import default_dates, labels, month_ends, observations
from creditflow.features.ledger import (
    AGING_COLUMNS,
    applications,
    cash_application,
    dpd_default_dates,
    invoices_base,
    ledger_features,
)

START, END = date(2023, 1, 1), date(2024, 6, 30)
CUSTOMERS = ["c1", "c2"]
RATES = [(date(2023, 2, 1), "USD", Decimal("7.12345678")), (date(2023, 9, 1), "USD", Decimal("6.5"))]
THRESHOLD = Decimal("100")
MONTH_ENDS = month_ends(START, END)
SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KEY = ["customer_id", "as_of_date"]


def _row(eid, cust, kind, doc, cents, *, due=None, cur="CNY", to=None):
    return {
        "entry_id": eid,
        "customer_id": cust,
        "entry_type": kind,
        "document_date": doc,
        "due_date": due,
        "amount": Decimal(cents) / 100,
        "currency": cur,
        "applies_to": to,
    }


@st.composite
def ledgers(draw, lo: date = START, hi: date = END, max_invoices: int = 7, max_others: int = 10):
    """Small ledgers of two customers: invoices in two currencies, then payments (direct and on
    account), credit notes and write-offs naming invoices (sometimes another customer's)."""
    rows = []
    for i in range(draw(st.integers(1, max_invoices))):
        doc = draw(st.dates(lo, hi))
        rows.append(
            _row(
                f"I{i}",
                draw(st.sampled_from(CUSTOMERS)),
                "INVOICE",
                doc,
                draw(st.integers(1, 60_000)),
                due=doc + timedelta(days=draw(st.integers(0, 60))),
                cur=draw(st.sampled_from(["CNY", "CNY", "USD"])),
            )
        )
    invoices = list(rows)
    for j in range(draw(st.integers(0, max_others))):
        kind = draw(st.sampled_from(["PAYMENT", "PAYMENT", "PAYMENT", "CREDIT_NOTE", "WRITE_OFF"]))
        target = draw(st.sampled_from(invoices))
        cust = target["customer_id"] if draw(st.integers(0, 9)) else draw(st.sampled_from(CUSTOMERS))
        on_account = kind == "PAYMENT" and draw(st.booleans())
        rows.append(
            _row(
                f"X{j}",
                cust,
                kind,
                draw(st.dates(lo, hi)),
                draw(st.integers(1, 60_000)),
                cur=draw(st.sampled_from(["CNY", "CNY", "CNY", "USD"])),
                to=None if on_account else target["entry_id"],
            )
        )
    return rows


def _ledger(rows) -> pl.LazyFrame:
    return pl.DataFrame(rows, schema=LEDGER.polars_schema).lazy()


def _fx() -> pl.LazyFrame:
    return pl.DataFrame(
        [{"rate_date": d, "currency": c, "rate_to_base": r} for d, c, r in RATES], schema=FX_RATES.polars_schema
    ).lazy()


# ------------------------------------------------------------------ the definition, in plain Python

CENT = Decimal("0.01")


def _rate(currency: str, day: date) -> Decimal | None:
    if currency == "CNY":
        return Decimal(1)
    rates = [rate for d, c, rate in RATES if c == currency and d <= day]
    return rates[-1] if rates else None


def _own(r) -> int:
    return int(r["amount"] * 100)


def _base(cents: int, rate: Decimal) -> int:
    return int((Decimal(cents) / 100 * rate).quantize(CENT, rounding=ROUND_HALF_EVEN) * 100)


def reference(rows, t: date) -> tuple[dict[str, int], dict[str, int]]:
    """(base cents owed per invoice posted by t, unapplied credit in base cents per customer) at the end of t.

    Plain reading of the rules: entries need a rate on their date; direct applications
    capped at the invoice amount in its currency (over-payments become credit); credit
    per (customer, currency) covers that account's invoices posted by t oldest due first;
    applied amounts valued at the invoice's rate; credit left valued at the rate of t.
    """
    known = [r for r in rows if r["document_date"] <= t and _rate(r["currency"], r["document_date"]) is not None]
    invoices = {r["entry_id"]: r for r in known if r["entry_type"] == "INVOICE"}
    inv_rate = {k: _rate(r["currency"], r["document_date"]) for k, r in invoices.items()}
    order = {"PAYMENT": 0, "CREDIT_NOTE": 1, "WRITE_OFF": 2}
    directs = defaultdict(list)
    credit: dict[tuple[str, str], int] = defaultdict(int)
    for r in known:
        if r["entry_type"] == "PAYMENT" and r["applies_to"] is None:
            credit[(r["customer_id"], r["currency"])] += _own(r)
        elif r["entry_type"] in order and r["applies_to"] in invoices:
            target = invoices[r["applies_to"]]
            if target["customer_id"] == r["customer_id"]:
                when = max(r["document_date"], target["document_date"])
                directs[target["entry_id"]].append((when, order[r["entry_type"]], r["entry_id"], r))
    owed = {}
    for inv_id, inv in invoices.items():
        left = _own(inv)
        for _, _, _, r in sorted(directs[inv_id]):
            if r["currency"] == inv["currency"]:
                x = _own(r)
            else:
                base = _base(_own(r), _rate(r["currency"], r["document_date"]))
                x = int((Decimal(base) / 100 / inv_rate[inv_id]).quantize(CENT, rounding=ROUND_HALF_EVEN) * 100)
            applied = min(x, left)
            left -= applied
            if r["entry_type"] != "WRITE_OFF":
                credit[(inv["customer_id"], inv["currency"])] += x - applied
        owed[inv_id] = left
    outstanding = {}
    for account in sorted({(r["customer_id"], r["currency"]) for r in invoices.values()}):
        mine = sorted(
            (r for r in invoices.values() if (r["customer_id"], r["currency"]) == account),
            key=lambda r: (r["due_date"], r["document_date"], r["entry_id"]),
        )
        for r in mine:
            k = r["entry_id"]
            cover = min(owed[k], credit[account])
            credit[account] -= cover
            applied_own = _own(r) - (owed[k] - cover)
            outstanding[k] = _base(_own(r), inv_rate[k]) - _base(applied_own, inv_rate[k])
    unapplied: dict[str, int] = defaultdict(int)
    for (cust, currency), left in credit.items():
        unapplied[cust] += _base(left, _rate(currency, t))
    return outstanding, dict(unapplied)


@SETTINGS
@given(rows=ledgers())
def test_cash_application_matches_its_definition_on_every_day(rows):
    led, fx = _ledger(rows), _fx()
    days = sorted({r["document_date"] for r in rows} | {d - timedelta(days=1) for d in (r["document_date"] for r in rows)})
    base = invoices_base(led, fx, base_currency="CNY").collect()
    apps = applications(led, fx, base_currency="CNY").collect()
    for t in days:
        want, _ = reference(rows, t)
        got = {r: int(a * 100) for r, a, d in base.select("invoice_id", "amount_base", "document_date").rows() if d <= t}
        for r in apps.filter(pl.col("applied_date") <= t).iter_rows(named=True):
            got[r["invoice_id"]] -= int(r["applied_amount_base"] * 100)
        assert got == want, t


@SETTINGS
@given(rows=ledgers())
def test_exposure_and_unapplied_credit_match_the_definition(rows):
    f = ledger_features(_ledger(rows), _fx(), None, MONTH_ENDS, base_currency="CNY").collect()
    for r in f.iter_rows(named=True):
        outstanding, credit = reference(rows, r["as_of_date"])
        cust = r["customer_id"]
        mine = sum(v for k, v in outstanding.items() if next(x for x in rows if x["entry_id"] == k)["customer_id"] == cust)
        assert int(r["exposure"] * 100) == mine
        assert int(r["unapplied_credit"] * 100) == credit.get(cust, 0)


@SETTINGS
@given(rows=ledgers())
def test_exposure_is_never_negative_and_equals_the_aging_buckets(rows):
    f = ledger_features(_ledger(rows), _fx(), None, MONTH_ENDS, base_currency="CNY").collect()
    assert (f["exposure"] >= 0).all()
    assert (f["dpd_max"] >= 0).all()
    total = f.select(pl.sum_horizontal(*[pl.col(c) for c in AGING_COLUMNS])).to_series()
    assert (total == f["exposure"]).all()
    assert ((f["exposure"] > 0) | (f["dpd_max"] == 0)).all()


@SETTINGS
@given(rows=ledgers(max_others=6))
def test_dpd_default_is_the_first_day_an_invoice_is_90_days_past_due_above_the_threshold(rows):
    cash = cash_application(_ledger(rows), _fx(), base_currency="CNY")
    got = dict(dpd_default_dates(cash, THRESHOLD).rows())
    invoices = [r for r in rows if r["entry_type"] == "INVOICE" and _rate(r["currency"], r["document_date"])]
    want = {}
    day = START
    while day <= END + timedelta(days=160):
        due = [r for r in invoices if r["due_date"] + timedelta(days=90) <= day and r["customer_id"] not in want]
        if due:
            outstanding, _ = reference(rows, day)
            for r in due:
                if outstanding[r["entry_id"]] > THRESHOLD * 100:
                    want.setdefault(r["customer_id"], day)
        day += timedelta(days=1)
    assert got == want


# ------------------------------------------------------------------ nothing after t changes anything at t


@st.composite
def ledger_and_cut(draw):
    rows = draw(ledgers())
    t = draw(st.dates(date(2024, 1, 1), END))
    return rows, t


def _features(rows):
    return ledger_features(_ledger(rows), _fx(), None, MONTH_ENDS, base_currency="CNY").collect()


@SETTINGS
@given(case=ledger_and_cut())
def test_entries_dated_after_t_never_change_features_at_or_before_t(case):
    rows, t = case
    before = [r for r in rows if r["document_date"] <= t]
    full = _features(rows).filter(pl.col("as_of_date") <= t)
    cut = _features(before).filter(pl.col("as_of_date") <= t) if before else full.clear()
    assert full.sort(KEY).equals(cut.sort(KEY))


def _events(evs) -> pl.LazyFrame:
    return pl.DataFrame(
        [{"registration_id": r, "event_date": d, "event_type": k, "detail": None} for r, d, k in evs],
        schema=BUREAU_EVENTS.polars_schema,
    ).lazy()


LINKS = pl.LazyFrame({"customer_id": ["c1", "c2", "c2"], "registration_id": ["R1", "R2", "R1"]})
GRID = pl.LazyFrame(
    {
        "customer_id": [c for c in CUSTOMERS for _ in MONTH_ENDS],
        "as_of_date": [d for _ in CUSTOMERS for d in MONTH_ENDS],
        "onboarding_date": [START] * (len(CUSTOMERS) * len(MONTH_ENDS)),
    }
)

events_strategy = st.lists(
    st.tuples(st.sampled_from(["R1", "R2", "R9"]), st.dates(START, END), st.sampled_from(["BANKRUPTCY_FILING", "LAWSUIT"])),
    max_size=3,
)


def _labels(rows, evs, data_end):
    led = _ledger(rows) if rows else _ledger([])
    dd = default_dates(led, _fx(), LINKS, _events(evs), base_currency="CNY", data_end=data_end).collect()
    obs = observations(led, GRID, dd, MONTH_ENDS)
    return dd, labels(obs, dd, data_end=END).collect()  # the same maturity rule for both


@SETTINGS
@given(case=ledger_and_cut(), evs=events_strategy)
def test_entries_and_events_after_t_never_change_labels_whose_window_ended_by_t(case, evs):
    rows, t = case
    dd_full, full = _labels(rows, evs, END)
    dd_cut, cut = _labels([r for r in rows if r["document_date"] <= t], [e for e in evs if e[1] <= t], t)
    assert dd_full.filter(pl.col("default_date") <= t).equals(dd_cut.filter(pl.col("default_date") <= t))
    ended = pl.col("as_of_date") + timedelta(days=365) <= t
    assert full.filter(ended).sort(KEY).equals(cut.filter(ended).sort(KEY))
    # and observations at t or before are the same rows
    obs_at = pl.col("as_of_date") <= t
    assert full.filter(obs_at).select(KEY).sort(KEY).equals(cut.filter(obs_at).select(KEY).sort(KEY))
