"""Property: a recommended limit never exceeds any ceiling of the policy that applies.

The ceilings are recomputed here independently, in exact rational arithmetic
(``fractions.Fraction``), from the policy and the inputs; the engine computes them in
integer cents. For random customers the recommendation must be >= 0, at most every
applicable ceiling, a multiple of the rounding step (unless the current limit is kept),
and consistent with its action, binding rule and expected loss.
"""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal as D
from fractions import Fraction as F

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from creditflow.policy.limits import recommend_limits
from creditflow.policy.policy import load_policy

AS_OF = dt.date(2026, 1, 31)
POLICY = load_policy()
SCHEMA = {
    "as_of_date": pl.Date,
    "customer_id": pl.String,
    "pd_12m": pl.Float64,
    "exposure": pl.Decimal(18, 2),
    "credit_limit": pl.Decimal(18, 2),
    "currency": pl.String,
    "fx_to_limit_currency": pl.Decimal(18, 8),
    "payment_terms_days": pl.Int64,
    "avg_monthly_sales_12m": pl.Decimal(18, 2),
    "equity": pl.Decimal(18, 2),
    "dpd_max": pl.Int32,
    "events_lawsuit_3m": pl.Int64,
    "events_execution_order_3m": pl.Int64,
    "default_date": pl.Date,
}


def money(max_units: int = 10**9) -> st.SearchStrategy[D]:
    """Amounts spread over every order of magnitude up to ``max_units``, in cents."""
    top = len(str(max_units * 100)) - 1
    return (
        st.integers(0, top).flatmap(lambda k: st.integers(0, 10**k)).map(lambda c: D(c).scaleb(-2))
    )


def sometimes(strategy: st.SearchStrategy, otherwise=None, one_in: int = 8) -> st.SearchStrategy:
    """``strategy`` about once in ``one_in`` draws, else ``otherwise``: rare events stay rare."""
    # Hypothesis favours the first entries of sampled_from, so the rare branch goes last
    return st.sampled_from([False] * (one_in - 1) + [True]).flatmap(
        lambda hit: strategy if hit else st.just(otherwise)
    )


fx_rates = st.one_of(
    st.just(D(1)),
    st.integers(1, 200 * 10**8).map(lambda u: D(u).scaleb(-8)),
)
pds = st.one_of(
    # log-uniform over [1e-4, 0.999]: every grade gets its share
    st.integers(0, 10**6).map(
        lambda i: math.exp(math.log(1e-4) + i / 10**6 * (math.log(0.999) - math.log(1e-4)))
    ),
    st.sampled_from(
        [0.001, 0.0025, 0.005, 0.02, 0.05, 0.3, 1 / 51]
    ),  # band edges, exact-looking values
)


@st.composite
def customers(draw) -> dict:
    """A random customer; limits and exposure are often near its sales so every rule gets to bind."""
    # half the customers are "clean" (no events, no default, no equity, paying on time), with
    # big sales, so the capacity ceilings (GRADE_CAP, MAX_EXPECTED_LOSS, MAX_INCREASE) bind too
    clean = draw(st.booleans())
    sales = draw(
        money(10**8).map(lambda d: d * 1000) if clean else st.one_of(st.none(), money(10**8))
    )
    base = sales if sales is not None else D(0)
    related = st.integers(0, 300).map(lambda pct: (base * pct / 100).quantize(D("0.01")))
    limit = draw(
        st.one_of(
            st.just(D(0)), money(10**7), related, st.integers(0, 10**4).map(lambda k: D(k * 1000))
        )
    )
    exposure = draw(
        st.one_of(
            money(), st.integers(0, 150).map(lambda pct: (limit * pct / 100).quantize(D("0.01")))
        )
    )
    row = {
        "pd_12m": draw(pds),
        "exposure": exposure,
        "credit_limit": limit,
        "fx_to_limit_currency": draw(fx_rates),
        "payment_terms_days": draw(
            st.one_of(st.sampled_from([30, 45, 60, 90, 0]), st.integers(0, 365))
        ),
        "avg_monthly_sales_12m": sales,
        "equity": draw(
            sometimes(st.one_of(money(10**9), money(10**6).map(lambda d: -d)), one_in=3)
        ),
        "dpd_max": draw(st.one_of(st.integers(0, 30), sometimes(st.integers(0, 200), otherwise=0))),
        "events_lawsuit_3m": draw(sometimes(st.integers(1, 2), otherwise=0)),
        "events_execution_order_3m": draw(sometimes(st.just(1), otherwise=0)),
        "default_date": draw(
            sometimes(st.integers(-400, 60).map(lambda d: AS_OF + dt.timedelta(days=d)))
        ),
    }
    if clean:
        row.update(
            equity=None,
            dpd_max=0,
            events_lawsuit_3m=0,
            events_execution_order_3m=0,
            default_date=None,
        )
    return row


policies = st.builds(
    lambda step, max_el, inc: POLICY.model_copy(
        update={
            "limits": POLICY.limits.model_copy(
                update={
                    "rounding_step": step,
                    "max_expected_loss": max_el,
                    "max_increase_share": inc,
                }
            )
        }
    ),
    st.sampled_from([D("0.01"), D(1), D(500), D(1000), D(10000)]),
    st.sampled_from([D(1000), D(20000), D(150000), None]),
    st.sampled_from([D("0.5"), D(0), None]),
)


def _grade(pd: float) -> int:
    return 1 + sum(pd >= e for e in POLICY.pd_edges)


def _ceilings(row: dict, policy, published_exposure: D) -> dict[str, F]:
    """Every applicable ceiling, exact, in limit currency."""
    lp = policy.limits
    g = POLICY.grades[_grade(row["pd_12m"]) - 1]
    fx = F(row["fx_to_limit_currency"])
    current = F(row["credit_limit"])
    sales = max(F(row["avg_monthly_sales_12m"] or 0), F(0))
    caps = {
        "GRADE_CAP": F(g.max_limit) * fx,
        "SALES_MULTIPLE": sales * fx * row["payment_terms_days"] / 30 * F(g.sales_multiple),
    }
    if row["equity"] is not None:
        caps["EQUITY_CAP"] = max(F(row["equity"]), F(0)) * fx * F(lp.equity_share)
    if lp.max_expected_loss is not None:
        caps["MAX_EXPECTED_LOSS"] = (
            F(lp.max_expected_loss) * fx / (F(row["pd_12m"]) * F(g.lgd)) * F(1 + 1e-12)
        )
    capacity = min(caps.values())
    if row["events_lawsuit_3m"] > 0 or row["events_execution_order_3m"] > 0:
        caps["LEGAL_EVENT_CUT"] = min(current, capacity * F(lp.legal_event_cut_factor))
    if row["dpd_max"] > lp.dpd_hold_over_days:
        caps["DPD_HOLD"] = current
    if F(published_exposure) > current:
        caps["OVER_LIMIT_HOLD"] = current
    if lp.max_increase_share is not None and current > 0:
        caps["MAX_INCREASE"] = current * (1 + F(lp.max_increase_share))
    return caps


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(customers(), min_size=1, max_size=12), policy=policies)
def test_recommended_limit_respects_every_ceiling(rows, policy):
    frame = pl.DataFrame(
        [
            {"as_of_date": AS_OF, "customer_id": f"C{i:03d}", "currency": "XXX", **r}
            for i, r in enumerate(rows)
        ],
        schema=SCHEMA,
    )
    out = recommend_limits(frame, policy)
    assert out.height == len(rows)
    step = F(policy.limits.rounding_step)
    for row, rec in zip(rows, out.iter_rows(named=True), strict=True):
        limit = F(rec["recommended_limit"])
        current = F(row["credit_limit"])
        assert limit >= 0
        in_default = row["default_date"] is not None and row["default_date"] <= AS_OF
        if in_default:
            assert (limit, rec["action"], rec["binding_rule"]) == (0, "SUSPEND", "DEFAULT_SUSPEND")
            continue
        caps = _ceilings(row, policy, rec["exposure"])
        for rule, cap in caps.items():
            assert limit <= cap, f"{rule}: {limit} > {cap} for {row}"
        kept = limit == current and rec["action"] == "HOLD"
        assert (limit / step).denominator == 1 or kept, f"{limit} is not a multiple of {step}"
        # action agrees with the numbers
        expected_action = (
            "INCREASE" if limit > current else "DECREASE" if limit < current else "HOLD"
        )
        assert rec["action"] == expected_action
        # the binding rule's ceiling is the lowest one (to the cent; float PD ceilings to 1e-9)
        if rec["binding_rule"] != "ROUNDING":
            lowest = min(caps.values())
            assert caps[rec["binding_rule"]] <= lowest + F(1, 100) + lowest * F(1, 10**9)
            assert limit > lowest - step or kept
        else:
            assert kept and current < min(caps.values())
        # expected loss never above the policy's maximum (in limit currency)
        if policy.limits.max_expected_loss is not None:
            fx = F(row["fx_to_limit_currency"])
            assert F(rec["expected_loss"]) <= F(policy.limits.max_expected_loss) * fx + F(1, 100)


@settings(max_examples=100, deadline=None)
@given(
    pd_values=st.lists(pds, min_size=1, max_size=20),
    max_el=st.integers(1, 10**8).map(lambda c: D(c).scaleb(-2)),
    fx=fx_rates,
)
def test_expected_loss_ceiling_is_tight_and_never_exceeded(pd_values, max_el, fx):
    """With every other ceiling out of the way, the limit is MAX_EXPECTED_LOSS to the cent."""
    policy = POLICY.model_copy(
        update={
            "limits": POLICY.limits.model_copy(
                update={
                    "rounding_step": D("0.01"),
                    "max_expected_loss": max_el,
                    "max_increase_share": None,
                }
            ),
            "grades": tuple(
                g.model_copy(
                    update={
                        "max_limit": D(10**12),
                        "lgd": max(g.lgd, D("0.1")),
                        "sales_multiple": D(1),
                    }
                )
                for g in POLICY.grades
            ),
        }
    )
    rows = [
        {
            "as_of_date": AS_OF,
            "customer_id": f"C{i:03d}",
            "currency": "XXX",
            "pd_12m": pd,
            "exposure": D(0),
            "credit_limit": D(0),
            "fx_to_limit_currency": fx,
            "payment_terms_days": 365,
            "avg_monthly_sales_12m": D(10**13),
            "equity": None,
            "dpd_max": 0,
            "events_lawsuit_3m": 0,
            "events_execution_order_3m": 0,
            "default_date": None,
        }
        for i, pd in enumerate(pd_values)
    ]
    out = recommend_limits(pl.DataFrame(rows, schema=SCHEMA), policy)
    for row, rec in zip(rows, out.iter_rows(named=True), strict=True):
        lgd = F(policy.grades[_grade(row["pd_12m"]) - 1].lgd)
        cap = F(max_el) * F(fx) / (F(row["pd_12m"]) * lgd)
        limit = F(rec["recommended_limit"])
        if cap < F(10**12) * F(fx) - 1:  # the grade ceiling is far above; EL must bind
            assert rec["binding_rule"] == "MAX_EXPECTED_LOSS"
            assert cap - F(1, 100) - cap * F(1, 10**11) <= limit <= cap * F(1 + 1e-12)
        assert F(rec["expected_loss"]) <= F(max_el) * F(fx) + F(1, 200)
