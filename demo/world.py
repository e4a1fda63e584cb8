"""The static part of the demo world: parameters, companies, customers and their names.

Everything random is drawn from a ``numpy.random.Generator`` handed in by the
caller, in a fixed order, so the same seed builds the same world. The monthly
simulation (``creditflow.demo.generator``) evolves the state built here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date

import numpy as np

EPOCH = date(1970, 1, 1)

# Units of CNY per unit of currency: the level around which the demo fx rates move.
CURRENCY_VALUE_CNY: dict[str, float] = {
    "CNY": 1.0,
    "USD": 7.1,
    "EUR": 7.8,
    "GBP": 9.0,
    "HKD": 0.91,
    "JPY": 0.048,
}


@dataclass(frozen=True)
class Industry:
    code: str
    risk_effect: float
    """Added to a company's long-run risk log-odds."""
    macro_beta: float
    """Loading of the distress hazard on the (unobserved) macro factor."""
    name_zh: str
    name_en: str
    weight: float


INDUSTRIES: tuple[Industry, ...] = (
    Industry("A01", 0.20, 0.6, "农业", "Agriculture", 3),
    Industry("C13", 0.00, 0.8, "食品", "Foods", 8),
    Industry("C17", 0.30, 1.2, "纺织", "Textiles", 8),
    Industry("C26", 0.00, 1.0, "化工", "Chemicals", 9),
    Industry("C33", 0.10, 1.1, "金属制品", "Metal Products", 8),
    Industry("C34", -0.10, 1.0, "机械", "Machinery", 10),
    Industry("C38", -0.20, 0.9, "电气", "Electric", 8),
    Industry("C39", -0.10, 1.2, "电子", "Electronics", 10),
    Industry("E47", 0.50, 1.5, "建筑工程", "Construction", 7),
    Industry("F51", 0.20, 1.0, "贸易", "Trading", 12),
    Industry("F52", 0.30, 0.9, "商贸", "Retail", 6),
    Industry("G54", 0.10, 1.0, "物流", "Logistics", 5),
    Industry("I65", -0.30, 0.7, "科技", "Technology", 4),
    Industry("K70", 0.70, 1.6, "置业", "Property", 2),
)


@dataclass(frozen=True)
class Region:
    name: str
    risk_effect: float
    weight: float
    cities: tuple[tuple[str, str], ...]
    """(6-digit administrative division code, city name in Chinese)."""


REGIONS: tuple[Region, ...] = (
    Region("East China", -0.15, 30, (("310000", "上海"), ("320500", "苏州"), ("330100", "杭州"), ("330200", "宁波"))),
    Region("South China", 0.00, 25, (("440300", "深圳"), ("440100", "广州"), ("441900", "东莞"), ("440600", "佛山"))),
    Region("North China", 0.05, 15, (("110000", "北京"), ("120000", "天津"), ("130100", "石家庄"))),
    Region("Central China", 0.10, 12, (("420100", "武汉"), ("430100", "长沙"), ("410100", "郑州"))),
    Region("Southwest", 0.15, 9, (("510100", "成都"), ("500000", "重庆"))),
    Region("Northeast", 0.35, 5, (("210100", "沈阳"), ("220100", "长春"))),
    Region("Northwest", 0.25, 4, (("610100", "西安"),)),
)
OVERSEAS_REGION = "Overseas"

TERM_OPTIONS = np.array([0, 15, 30, 45, 60, 90], dtype=np.int32)
TERM_WEIGHTS = np.array([0.02, 0.08, 0.35, 0.15, 0.30, 0.10])

_BRAND_ZH = list("华信达鑫恒泰盛宏远通利丰源瑞德嘉兴隆安美新正海天金博成创科力联合永昌腾飞益康耀晟祥和润中")
_SUFFIX_ZH = ("有限公司", "有限公司", "股份有限公司", "实业有限公司")
_BRAND_EN = ("Pacific", "Atlas", "Nordic", "Summit", "Harbor", "Vertex", "Golden Gate", "Rhine",
             "Alpine", "Meridian", "Orion", "Sterling", "Lakeside", "Baltic")
_SUFFIX_EN = ("Co., Ltd.", "GmbH", "Inc.", "Ltd.", "S.A.", "LLC")

# GB 32100-2015 unified social credit code alphabet and check weights.
_USCC_ALPHABET = np.array(list("0123456789ABCDEFGHJKLMNPQRTUWXY"))
_USCC_WEIGHTS = np.array([1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28])


@dataclass(frozen=True)
class WorldParameters:
    """Every knob of the data-generating process (documented in docs/demo-data.md)."""

    # population
    initial_share: float = 0.8
    snapshot_every_months: int = 6
    noncustomer_share: float = 0.25
    foreign_currency_shares: tuple[float, float] = (0.04, 0.02)
    balance_forward_share: float = 0.08
    missing_registration_share: float = 0.03
    # latent risk: monthly distress hazard = sigmoid(x + macro_beta * macro)
    risk_mean_logit: float = -6.1
    risk_sd: float = 0.9
    risk_walk_sd: float = 0.15
    risk_mean_reversion: float = 0.05
    macro_ar: float = 0.85
    macro_sd: float = 0.25
    distress_jump: float = 1.2
    p_sudden_default: float = 0.2
    p_distress_default: float = 0.3
    p_distress_recover: float = 0.1
    churn_monthly: float = 0.004
    # invoicing
    invoices_per_month: float = 3.5
    invoices_per_month_log_sd: float = 0.6
    invoice_median_cny: float = 12_000.0
    invoice_size_log_sd: float = 1.0
    invoice_amount_log_sd: float = 0.6
    min_invoice_cents: int = 50_000
    annual_growth_mean: float = 0.04
    annual_growth_sd: float = 0.08
    distress_volume_factor: float = 0.85
    season: tuple[float, ...] = (0.95, 0.75, 1.0, 1.0, 1.0, 1.02, 0.98, 0.98, 1.03, 1.0, 1.08, 1.15)
    # credit notes and payments
    credit_note_rate: float = 0.04
    full_credit_rate: float = 0.004
    delay_base_days: float = 2.0
    delay_risk_days: float = 3.0
    delay_risk_slope: float = 0.6
    delay_distress_days: float = 15.0
    delay_noise_days: float = 6.0
    delay_offset_sd_days: float = 4.0
    max_delay_days: int = 80
    partial_base: float = 0.04
    partial_risk: float = 0.04
    partial_distress: float = 0.25
    # after default
    write_off_share: float = 0.5
    write_off_lag_days: tuple[int, int] = (180, 450)
    bankruptcy_share: float = 0.3
    bankruptcy_lag_days: tuple[int, int] = (20, 240)
    # bureau
    bureau_coverage: float = 0.92
    score_center: float = 650.0
    score_slope: float = 90.0
    score_noise: float = 15.0
    score_company_noise: float = 30.0
    paydex_noise: float = 3.0
    no_paydex_share: float = 0.10
    no_financials_share: float = 0.15
    downgrade_drop: int = 80
    event_base_logrates: tuple[float, float, float, float] = (-4.2, -5.0, -6.0, -5.5)
    """Monthly log-rates of LAWSUIT, TAX_ARREARS, EXECUTION_ORDER, OWNER_CHANGE at average risk."""
    event_risk_slopes: tuple[float, float, float, float] = (0.6, 0.6, 0.7, 0.0)
    event_distress_effects: tuple[float, float, float, float] = (1.5, 1.8, 2.2, 0.8)

    def to_dict(self) -> dict:
        return asdict(self)


DEFAULT_WORLD = WorldParameters()


@dataclass
class World:
    """Static attributes of every company; customers are indices ``0..n_customers-1``."""

    n_customers: int
    n_companies: int
    registration_id: np.ndarray  # str, "" = none
    has_registration: np.ndarray
    industry: np.ndarray  # index into INDUSTRIES, -1 = unknown in the master
    industry_risk: np.ndarray  # index used for the risk model (never -1)
    region: np.ndarray  # index into REGIONS, -1 = overseas
    region_shown: np.ndarray  # False where the master leaves region empty
    founded: np.ndarray  # days since epoch
    base_risk: np.ndarray  # long-run risk log-odds
    score_noise: np.ndarray  # the bureau model's persistent error for the company
    report_day: np.ndarray  # day of month of the bureau report (0-based)
    has_financials: np.ndarray
    has_paydex: np.ndarray
    size: np.ndarray  # median invoice amount in the customer's currency (customers) / CNY
    # customers only
    customer_name: np.ndarray = field(default=None)  # object array of str
    onboarding: np.ndarray = field(default=None)
    trade_start_month: np.ndarray = field(default=None)
    currency: np.ndarray = field(default=None)  # index into currencies
    invoice_rate: np.ndarray = field(default=None)
    growth: np.ndarray = field(default=None)
    delay_offset: np.ndarray = field(default=None)  # every company (paydex of non-customers too)
    is_balance_forward: np.ndarray = field(default=None)
    terms: np.ndarray = field(default=None)


def _ensure_one(mask: np.ndarray, rng: np.random.Generator, eligible: np.ndarray) -> np.ndarray:
    """Make sure at least one eligible element is set, so every format shows up even in tiny worlds."""
    if not (mask & eligible).any() and eligible.any():
        idx = np.flatnonzero(eligible)
        mask = mask.copy()
        mask[idx[rng.integers(0, idx.size)]] = True
    return mask


def _unique_ints(rng: np.random.Generator, n: int, high: int) -> np.ndarray:
    """``n`` distinct integers in ``[0, high)``, drawn deterministically."""
    out = rng.integers(0, high, n)
    while True:
        _, first = np.unique(out, return_index=True)
        dup = np.ones(n, dtype=bool)
        dup[first] = False
        if not dup.any():
            return out
        out[dup] = rng.integers(0, high, int(dup.sum()))


def unified_social_credit_codes(admin_codes: np.ndarray, org_numbers: np.ndarray) -> np.ndarray:
    """18-character codes: '91' + 6-digit division + 9-character organisation code + check character."""
    n = admin_codes.size
    chars = np.empty((n, 18), dtype="<U1")
    chars[:, 0] = "9"
    chars[:, 1] = "1"
    admin = np.array([list(a) for a in admin_codes]) if n else np.empty((0, 6), dtype="<U1")
    chars[:, 2:8] = admin
    org = org_numbers.copy()
    for j in range(16, 7, -1):  # base-31 digits, least significant last
        chars[:, j] = _USCC_ALPHABET[org % 31]
        org //= 31
    values = np.searchsorted(_USCC_ALPHABET, chars[:, :17])  # alphabet is sorted
    check = (31 - (values * _USCC_WEIGHTS).sum(axis=1) % 31) % 31
    chars[:, 17] = _USCC_ALPHABET[check]
    return np.array(["".join(row) for row in chars], dtype=object)


def _names(rng: np.random.Generator, city_zh: np.ndarray, industry: np.ndarray, foreign: np.ndarray,
           chinese: bool) -> np.ndarray:
    n = city_zh.size
    b1 = rng.integers(0, len(_BRAND_ZH), n)
    b2 = rng.integers(0, len(_BRAND_ZH), n)
    suf = rng.integers(0, len(_SUFFIX_ZH), n)
    be = rng.integers(0, len(_BRAND_EN), n)
    se = rng.integers(0, len(_SUFFIX_EN), n)
    quirk = rng.random(n)
    newline = _ensure_one(quirk < 0.005, rng, np.ones(n, dtype=bool))
    quoted = _ensure_one((quirk >= 0.005) & (quirk < 0.01), rng, ~newline)
    names = np.empty(n, dtype=object)
    for i in range(n):
        ind = INDUSTRIES[industry[i]]
        if chinese and not foreign[i]:
            brand = _BRAND_ZH[b1[i]] + _BRAND_ZH[b2[i]]
            name = f"{city_zh[i]}{brand}{ind.name_zh}{_SUFFIX_ZH[suf[i]]}"
            if newline[i]:
                name += f"\n（原{city_zh[i]}{brand}科技）"
            elif quoted[i]:
                name = f'{city_zh[i]}"{brand}"{ind.name_zh}{_SUFFIX_ZH[suf[i]]}'
        else:
            brand = _BRAND_EN[be[i]]
            name = f"{brand} {ind.name_en} {_SUFFIX_EN[se[i]]}"
            if newline[i]:
                name += f"\n(formerly {brand} Holdings)"
            elif quoted[i]:
                name = f'"{brand}" {ind.name_en} {_SUFFIX_EN[se[i]]}'
        names[i] = name
    return names


def build_world(
    rng: np.random.Generator,
    *,
    n_customers: int,
    snapshot_days: np.ndarray,
    snapshot_months: np.ndarray,
    start_day: int,
    chinese_names: bool,
    p: WorldParameters,
) -> World:
    """Draw every company's static attributes; customers are ordered by onboarding date."""
    n_non = int(round(n_customers * p.noncustomer_share))
    c = n_customers + n_non
    is_cust = np.arange(c) < n_customers

    # onboarding: the initial book, then new customers shortly before each later master snapshot
    n_snap = snapshot_days.size
    n_init = n_customers if n_snap == 1 else max(1, int(round(n_customers * p.initial_share)))
    snap_of = np.zeros(n_customers, dtype=np.int64)
    if n_customers > n_init:
        snap_of[n_init:] = np.sort(rng.integers(1, n_snap, n_customers - n_init))
    onboarding = np.empty(n_customers, dtype=np.int64)
    onboarding[:n_init] = start_day - rng.integers(30, 365 * 12, n_init)
    onboarding[n_init:] = snapshot_days[snap_of[n_init:]] - rng.integers(1, 91, n_customers - n_init)
    order = np.lexsort((np.arange(n_customers), onboarding))
    onboarding = onboarding[order]
    snap_of = snap_of[order]
    trade_start = snapshot_months[snap_of]

    # currency: base for most; a few foreign customers (overseas, registry ids that may start with 0)
    u = rng.random(n_customers)
    f1, f2 = p.foreign_currency_shares
    currency = np.where(u < f1, 1, np.where(u < f1 + f2, 2, 0)).astype(np.int8)
    if n_customers >= 20:
        for k in (1, 2):
            if not (currency == k).any():
                currency[np.flatnonzero(currency == 0)[rng.integers(0, (currency == 0).sum())]] = k
    foreign = np.zeros(c, dtype=bool)
    foreign[:n_customers] = currency > 0

    ind_w = np.array([i.weight for i in INDUSTRIES], dtype=float)
    industry_risk = rng.choice(len(INDUSTRIES), size=c, p=ind_w / ind_w.sum())
    reg_w = np.array([r.weight for r in REGIONS], dtype=float)
    region = rng.choice(len(REGIONS), size=c, p=reg_w / reg_w.sum())
    city_pick = rng.random(c)
    region = np.where(foreign, -1, region)
    admin = np.empty(c, dtype=object)
    city_zh = np.empty(c, dtype=object)
    for i in range(c):
        if region[i] < 0:
            admin[i], city_zh[i] = "000000", ""  # placeholder: overseas ids are replaced below
        else:
            cities = REGIONS[region[i]].cities
            admin[i], city_zh[i] = cities[int(city_pick[i] * len(cities))]

    # registry ids: unified social credit codes at home, DUNS-like 9-digit ids abroad
    org = _unique_ints(rng, c, 31**9)
    reg = unified_social_credit_codes(admin.astype(str), org) if c else np.empty(0, dtype=object)
    duns = _unique_ints(rng, c, 10**8)
    zero_lead = rng.random(c) < 0.6
    for i in np.flatnonzero(foreign):
        reg[i] = ("0" if zero_lead[i] else "1") + f"{duns[i]:08d}"
    if foreign.any() and not any(reg[i].startswith("0") for i in np.flatnonzero(foreign)):
        i = np.flatnonzero(foreign)[0]
        reg[i] = "0" + reg[i][1:]
    missing = rng.random(c) < np.where(foreign, 0.2, p.missing_registration_share)
    missing &= is_cust
    if n_customers >= 20:
        missing = _ensure_one(missing, rng, is_cust & ~foreign)
    reg = np.where(missing, "", reg)
    has_reg = ~missing

    industry_shown = np.where(rng.random(c) < 0.03, -1, industry_risk)
    region_shown = rng.random(c) >= 0.02

    ind_eff = np.array([i.risk_effect for i in INDUSTRIES])[industry_risk]
    reg_eff = np.where(region >= 0, np.array([r.risk_effect for r in REGIONS])[np.maximum(region, 0)], 0.1)
    base_risk = p.risk_mean_logit + ind_eff + reg_eff + p.risk_sd * rng.standard_normal(c)

    founded = np.empty(c, dtype=np.int64)
    founded[:n_customers] = onboarding - rng.integers(365, 365 * 25, n_customers)
    founded[n_customers:] = start_day - rng.integers(365, 365 * 30, n_non)

    size = np.exp(np.log(p.invoice_median_cny) + p.invoice_size_log_sd * rng.standard_normal(c))
    w = World(
        n_customers=n_customers,
        n_companies=c,
        registration_id=reg,
        has_registration=has_reg,
        industry=industry_shown,
        industry_risk=industry_risk,
        region=region,
        region_shown=region_shown,
        founded=founded,
        base_risk=base_risk,
        score_noise=p.score_company_noise * rng.standard_normal(c),
        report_day=rng.integers(0, 28, c),
        has_financials=rng.random(c) >= p.no_financials_share,
        has_paydex=rng.random(c) >= p.no_paydex_share,
        size=size,
    )

    n = n_customers
    w.customer_name = _names(rng, city_zh[:n], industry_risk[:n], foreign[:n], chinese_names)
    w.onboarding = onboarding
    w.trade_start_month = trade_start
    w.currency = currency
    w.invoice_rate = p.invoices_per_month * np.exp(
        -0.5 * p.invoices_per_month_log_sd**2 + p.invoices_per_month_log_sd * rng.standard_normal(n)
    )
    w.growth = np.exp(p.annual_growth_mean + p.annual_growth_sd * rng.standard_normal(n))
    w.delay_offset = p.delay_offset_sd_days * rng.standard_normal(c)
    bf = rng.random(n) < p.balance_forward_share
    w.is_balance_forward = _ensure_one(bf, rng, np.ones(n, dtype=bool)) if n >= 20 else bf
    w.terms = rng.choice(TERM_OPTIONS, size=n, p=TERM_WEIGHTS / TERM_WEIGHTS.sum()).astype(np.int32)
    return w
