"""The feature registry: every model feature, in words an analyst reads, with its risk direction.

A feature set is versioned by name (``pd_features_v1``); a model records the
name it was trained on. Each :class:`Feature` says what it measures, which
source it comes from, and its ``direction``: +1 when a higher value means a
higher risk of default, -1 when it means a safer customer, 0 when there is no
reason to expect one direction. The direction drives XGBoost's monotone
constraints (:func:`monotone_constraints`), so it is set only where the credit
rationale is firm; and :func:`reason_text` gives the words used for reason
codes.

Money in the model: raw currency amounts are scale dependent (they measure how
big a customer is, in a currency that inflates) and are kept out of the model
where a ratio says the same thing better. So ``exposure``, ``credit_limit`` and
``equity`` stay in the panel for the credit policy and for audit, but are not
model features (``utilization``, ``dso_days``, ``leverage`` carry their risk
signal); the aging buckets enter as shares of exposure; company size enters as
``log_revenue`` and ``avg_monthly_sales_12m`` (the latter converted from
Decimal to Float64 in base currency, direction 0). See
:data:`PANEL_CONTEXT_COLUMNS` for the panel columns that are deliberately not
features, and why.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from creditflow.core.schema import BUREAU_EVENT_TYPES

FEATURE_SET_VERSION = "pd_features_v1"
"""Name of the current feature set; models record it with their training run."""

Kind = Literal["numeric", "categorical"]
Source = Literal["ledger", "bureau", "events", "master"]

DIRECTIONS = (-1, 0, 1)
KINDS: tuple[str, ...] = ("numeric", "categorical")
SOURCES: tuple[str, ...] = ("ledger", "bureau", "events", "master")

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class Feature:
    """One model feature.

    ``direction``: +1 higher value = higher risk, -1 higher value = safer, 0 no
    monotone constraint. ``reason``: short wording for a reason code, phrased
    as what raises the PD (e.g. "Invoices far past due").
    """

    name: str
    description: str
    direction: int
    kind: Kind
    source: Source
    reason: str

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ValueError(f"feature name must be snake_case; got {self.name!r}")
        if self.direction not in DIRECTIONS or isinstance(self.direction, bool):
            raise ValueError(
                f"{self.name}: direction must be one of {DIRECTIONS}; got {self.direction!r}"
            )
        if self.kind not in KINDS:
            raise ValueError(f"{self.name}: kind must be one of {KINDS}; got {self.kind!r}")
        if self.source not in SOURCES:
            raise ValueError(f"{self.name}: source must be one of {SOURCES}; got {self.source!r}")
        if self.kind == "categorical" and self.direction != 0:
            raise ValueError(
                f"{self.name}: a categorical feature has no direction; got {self.direction}"
            )
        if not self.description.strip():
            raise ValueError(f"{self.name}: description must not be empty")
        if not self.reason.strip():
            raise ValueError(f"{self.name}: reason must not be empty")


def _num(name: str, source: Source, direction: int, description: str, reason: str) -> Feature:
    return Feature(name, description, direction, "numeric", source, reason)


_LEDGER: tuple[Feature, ...] = (
    _num(
        "utilization",
        "ledger",
        1,
        "Exposure at the as-of date divided by the credit limit in force then (null when the "
        "limit is 0). Above 1 means the customer is over its limit.",
        "High use of the credit limit",
    ),
    _num(
        "aging_current_share",
        "ledger",
        -1,
        "Share of the exposure that is not yet due (0..1).",
        "Little of the balance is still within terms",
    ),
    _num(
        "aging_1_30_share",
        "ledger",
        1,
        "Share of the exposure 1-30 days past due (0..1).",
        "Part of the balance 1-30 days past due",
    ),
    _num(
        "aging_31_90_share",
        "ledger",
        1,
        "Share of the exposure 31-90 days past due (0..1).",
        "Part of the balance 31-90 days past due",
    ),
    _num(
        "aging_91_180_share",
        "ledger",
        1,
        "Share of the exposure 91-180 days past due (0..1).",
        "Part of the balance 91-180 days past due",
    ),
    _num(
        "aging_over_180_share",
        "ledger",
        1,
        "Share of the exposure more than 180 days past due (0..1).",
        "Part of the balance over 180 days past due",
    ),
    _num(
        "dpd_max",
        "ledger",
        1,
        "Largest days past due among the customer's open invoices at the as-of date.",
        "Invoices far past due",
    ),
    _num(
        "dpd_weighted",
        "ledger",
        1,
        "Days past due of the open invoices, weighted by their outstanding amounts.",
        "Much of the balance is past due",
    ),
    _num(
        "invoices_past_30_12m",
        "ledger",
        1,
        "Number of invoices of the last 12 months that went more than 30 days past due.",
        "Repeatedly more than 30 days late",
    ),
    _num(
        "invoices_past_60_12m",
        "ledger",
        1,
        "Number of invoices of the last 12 months that went more than 60 days past due.",
        "Repeatedly more than 60 days late",
    ),
    _num(
        "avg_monthly_sales_12m",
        "ledger",
        0,
        "Average invoiced amount per month over the last 12 months, in base currency (Float64): "
        "the size of the trading relationship. No direction: size alone is not a risk signal.",
        "Trading volume",
    ),
    _num(
        "sales_growth_3m_vs_12m",
        "ledger",
        0,
        "Average monthly sales of the last 3 months relative to the last 12 months. No direction: "
        "falling orders and a sudden surge in buying can both precede a default.",
        "Change in buying pattern",
    ),
    _num(
        "pay_delay_avg_12m",
        "ledger",
        1,
        "Average days between due date and payment for invoices paid in the last 12 months "
        "(negative = paid early).",
        "Pays late on average",
    ),
    _num(
        "pay_delay_p90_12m",
        "ledger",
        1,
        "90th percentile of the payment delay in days over the last 12 months: how late the "
        "worst payments are.",
        "Some payments very late",
    ),
    _num(
        "share_paid_late_12m",
        "ledger",
        1,
        "Share of the invoices paid in the last 12 months that were paid after their due date.",
        "Often pays after the due date",
    ),
    _num(
        "pay_delay_trend",
        "ledger",
        1,
        "Recent payment delay minus the longer-run payment delay, in days: positive means the "
        "customer is paying slower than before.",
        "Paying slower than before",
    ),
    _num(
        "dso_days",
        "ledger",
        1,
        "Days sales outstanding: exposure relative to recent daily sales.",
        "Slow to turn sales into cash",
    ),
    _num(
        "credit_note_ratio_12m",
        "ledger",
        0,
        "Credit notes as a share of invoiced amount over the last 12 months (disputes, returns, "
        "price corrections). No direction: they also reflect the seller's own quality issues.",
        "Many credit notes (disputes or returns)",
    ),
    _num(
        "invoice_count_12m",
        "ledger",
        0,
        "Number of invoices in the last 12 months: how active the relationship is.",
        "Level of trading activity",
    ),
    _num(
        "months_since_last_invoice",
        "ledger",
        0,
        "Whole months since the customer's last invoice.",
        "Time since last purchase",
    ),
)

_MASTER: tuple[Feature, ...] = (
    _num(
        "months_since_onboarding",
        "master",
        -1,
        "Whole calendar months the customer has been onboarded: the length of the relationship.",
        "Short trading relationship",
    ),
    _num(
        "payment_terms_days",
        "master",
        0,
        "Agreed payment terms in days. No direction: longer terms are granted to stronger "
        "customers but also leave more time to build up exposure.",
        "Payment terms",
    ),
    Feature(
        "industry",
        "Industry code from the customer master (e.g. C13).",
        0,
        "categorical",
        "master",
        "Industry risk",
    ),
    Feature(
        "region",
        "Sales region from the customer master.",
        0,
        "categorical",
        "master",
        "Regional risk",
    ),
)

_BUREAU: tuple[Feature, ...] = (
    _num(
        "bureau_score",
        "bureau",
        -1,
        "Score of the latest bureau report on or before the as-of date (0..1000, higher is safer).",
        "Low bureau score",
    ),
    _num(
        "paydex",
        "bureau",
        -1,
        "Bureau payment index of the latest report (0..100; 80 = pays its suppliers on terms).",
        "Pays other suppliers late (low paydex)",
    ),
    _num(
        "lawsuits_12m",
        "bureau",
        1,
        "Court cases as defendant in the 12 months before the latest bureau report.",
        "Lawsuits against the company",
    ),
    _num(
        "tax_arrears",
        "bureau",
        1,
        "1 when the latest bureau report shows tax arrears, else 0.",
        "Tax arrears",
    ),
    _num(
        "bureau_report_age_days",
        "bureau",
        0,
        "Days from the latest bureau report to the as-of date: how fresh the bureau view is.",
        "Outdated bureau information",
    ),
    _num(
        "bureau_score_change_3m",
        "bureau",
        -1,
        "Bureau score now minus the score 3 calendar months earlier (negative = deteriorating).",
        "Bureau score fell in the last 3 months",
    ),
    _num(
        "bureau_score_change_6m",
        "bureau",
        -1,
        "Bureau score now minus the score 6 calendar months earlier (negative = deteriorating).",
        "Bureau score fell in the last 6 months",
    ),
    _num(
        "paydex_change_3m",
        "bureau",
        -1,
        "Paydex now minus the paydex 3 calendar months earlier (negative = paying suppliers slower).",
        "Paydex fell in the last 3 months",
    ),
    _num(
        "paydex_change_6m",
        "bureau",
        -1,
        "Paydex now minus the paydex 6 calendar months earlier (negative = paying suppliers slower).",
        "Paydex fell in the last 6 months",
    ),
    _num(
        "leverage",
        "bureau",
        1,
        "Total liabilities / total assets from the latest financial statement (null when assets "
        "are not positive).",
        "Highly indebted",
    ),
    _num(
        "current_ratio",
        "bureau",
        -1,
        "Current assets / current liabilities from the latest financial statement: short-term "
        "liquidity (null when current liabilities are not positive).",
        "Weak short-term liquidity",
    ),
    _num(
        "net_margin",
        "bureau",
        -1,
        "Net income / revenue from the latest financial statement (null when revenue is not "
        "positive).",
        "Low or negative profitability",
    ),
    _num(
        "log_revenue",
        "bureau",
        -1,
        "Natural log of annual revenue from the latest financial statement: company size on a "
        "scale that does not depend on currency units.",
        "Small company",
    ),
    _num(
        "years_in_business",
        "bureau",
        -1,
        "Years the company has been in business, per the latest bureau report.",
        "Young company",
    ),
)

# BANKRUPTCY_FILING is not here: a filing on or before t puts the customer in
# default at t (contract default trigger (c)), so its count is 0 on every
# modelling observation. OWNER_CHANGE has no firm direction.
_EVENT_WORDING: dict[str, tuple[int, str, str]] = {
    "LAWSUIT": (1, "lawsuits filed against the company", "Recent lawsuits"),
    "TAX_ARREARS": (1, "tax-arrears alerts", "Recent tax-arrears alerts"),
    "EXECUTION_ORDER": (1, "court execution orders against the company", "Recent execution orders"),
    "RATING_DOWNGRADE": (1, "bureau rating downgrades", "Recent rating downgrades"),
    "OWNER_CHANGE": (
        0,
        "ownership changes (no direction: a new owner can rescue or strip a company)",
        "Recent change of ownership",
    ),
}
EXCLUDED_EVENT_TYPES: tuple[str, ...] = ("BANKRUPTCY_FILING",)
"""Event types whose counts are computed but are not model features (see above)."""

_EVENTS: tuple[Feature, ...] = tuple(
    _num(
        f"events_{event_type.lower()}_{months}m",
        "events",
        direction,
        f"Number of bureau alerts for {what} dated in the {months} months up to the as-of date.",
        f"{reason} ({months} months)",
    )
    for event_type, (direction, what, reason) in _EVENT_WORDING.items()
    for months in (3, 12)
)

FEATURE_SETS: dict[str, tuple[Feature, ...]] = {
    "pd_features_v1": (*_LEDGER, *_MASTER, *_BUREAU, *_EVENTS),
}
"""Versioned feature sets: name -> features, in model column order."""

PANEL_CONTEXT_COLUMNS: dict[str, str] = {
    "exposure": "Money (base currency): used by the limit policy and for utilization; as a model "
    "feature it would mostly measure size, which utilization, dso_days and "
    "avg_monthly_sales_12m already cover.",
    "aging_current": "Money (base currency): outstanding not yet due; the model sees it as "
    "aging_current_share. Collections buckets are built from the aging amounts.",
    "aging_1_30": "Money: outstanding 1-30 days past due (model: aging_1_30_share).",
    "aging_31_90": "Money: outstanding 31-90 days past due (model: aging_31_90_share).",
    "aging_91_180": "Money: outstanding 91-180 days past due (model: aging_91_180_share).",
    "aging_over_180": "Money: outstanding over 180 days past due (model: aging_over_180_share).",
    "unapplied_credit": "Money: cash on account not yet applied to an invoice (audit).",
    "credit_limit": "Money (limit currency): policy input; enters the model only through utilization.",
    "currency": "Currency of the credit limit: bookkeeping, not a risk driver.",
    "equity": "Money: total assets - total liabilities, kept as Decimal(18, 2) for the policy's "
    "equity cap on limits; its risk signal is in leverage.",
    "registration_id": "Registry key linking the customer to bureau files.",
    "customer_name": "Identification only.",
    "onboarding_date": "Enters the model as months_since_onboarding.",
    "master_backfilled": "Data-quality flag: the customer master row came from the earliest "
    "snapshot, dated after the as-of date (see features.customers).",
    "events_bankruptcy_filing_3m": "Always 0 for a modelling observation (a filing is a default "
    "trigger); kept for audit.",
    "events_bankruptcy_filing_12m": "As events_bankruptcy_filing_3m.",
}
"""Panel columns that are deliberately not model features, with the reason."""


def feature_set(name: str = FEATURE_SET_VERSION) -> tuple[Feature, ...]:
    """The features of a named feature set, in model column order."""
    if name not in FEATURE_SETS:
        raise ValueError(
            f"unknown feature set {name!r}; known feature sets: {sorted(FEATURE_SETS)}"
        )
    return FEATURE_SETS[name]


def feature_names(name: str = FEATURE_SET_VERSION) -> tuple[str, ...]:
    """Column names of a feature set, in model column order."""
    return tuple(f.name for f in feature_set(name))


def monotone_constraints(name: str = FEATURE_SET_VERSION) -> dict[str, int]:
    """XGBoost ``monotone_constraints`` for a feature set: every numeric feature -> its direction.

    Categorical features are left out (XGBoost does not constrain them).
    """
    return {f.name: f.direction for f in feature_set(name) if f.kind == "numeric"}


def categorical_features(name: str = FEATURE_SET_VERSION) -> tuple[str, ...]:
    """Names of the categorical features of a feature set."""
    return tuple(f.name for f in feature_set(name) if f.kind == "categorical")


def get_feature(feature_name: str) -> Feature:
    """The registered feature called ``feature_name`` (searched in every feature set)."""
    for features in FEATURE_SETS.values():
        for f in features:
            if f.name == feature_name:
                return f
    known = sorted({f.name for fs in FEATURE_SETS.values() for f in fs})
    raise ValueError(f"{feature_name!r} is not a registered feature; known features: {known}")


def reason_text(feature_name: str) -> str:
    """Short analyst wording for a reason code, e.g. ``dpd_max`` -> "Invoices far past due"."""
    return get_feature(feature_name).reason


def _check_feature_sets() -> None:
    covered = set(_EVENT_WORDING) | set(EXCLUDED_EVENT_TYPES)
    if covered != set(BUREAU_EVENT_TYPES):
        raise ValueError(
            f"event types in the registry {sorted(covered)} differ from the schema's "
            f"{sorted(BUREAU_EVENT_TYPES)}: decide how each new type enters the model"
        )
    for set_name, features in FEATURE_SETS.items():
        names = [f.name for f in features]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"feature set {set_name!r} lists {dupes} more than once")
        overlap = sorted(set(names) & set(PANEL_CONTEXT_COLUMNS))
        if overlap:
            raise ValueError(f"feature set {set_name!r} lists context-only columns {overlap}")


_check_feature_sets()
