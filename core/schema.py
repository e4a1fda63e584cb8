"""The single source of truth for every table's columns, dtypes and rules.

Everything here is transcribed from ``../shared/contract.md`` (binding). Casting,
row rules, Great Expectations suites, feature inputs and the published Delta
schemas all derive from these definitions; no other module should restate a
column's type or rule.

Column kinds (how a landing value is parsed):

- ``text``: kept as UTF-8 text; leading/trailing blanks stripped, empty means null.
- ``date``: ``YYYY-MM-DD`` or ``YYYY/MM/DD``; a calendar date without time zone.
- ``decimal``: at most 2 fraction digits, stored as ``Decimal(18, 2)``.
- ``rate``: a decimal with at most 8 fraction digits (exchange rates are not money).
- ``int``: a whole number (``12``; ``12.0`` is rejected, it hides a unit problem).
- ``bool``: ``true``/``false``/``1``/``0`` (case-insensitive).
- ``enum``: one of ``allowed`` (case-sensitive, as in the contract).
- ``currency``: an ISO 4217 code, three upper-case letters.
- ``float``, ``int32``, ``list_text``: output-only kinds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

import polars as pl

SCHEMA_VERSION = "1.0.0"
"""Version of the data contract this code implements (``schema_version``)."""

MONEY = pl.Decimal(18, 2)
"""Money is exact: ``Decimal(18, 2)`` in every Parquet/Delta table."""

Kind = Literal[
    "text", "date", "decimal", "rate", "int", "bool", "enum", "currency", "float", "int32", "list_text"
]

_DTYPES: dict[str, pl.DataType] = {
    "text": pl.String(),
    "date": pl.Date(),
    "decimal": MONEY,
    "rate": pl.Decimal(18, 8),
    "int": pl.Int64(),
    "bool": pl.Boolean(),
    "enum": pl.String(),
    "currency": pl.String(),
    "float": pl.Float64(),
    "int32": pl.Int32(),
    "list_text": pl.List(pl.String()),
}


@dataclass(frozen=True)
class Column:
    """One contract column: name, kind, and the row rules that apply to it."""

    name: str
    kind: Kind
    description: str
    required: bool = False
    unique: bool = False
    """Unique within one file (``customers.customer_id``) or, with the table's
    ``unique_across_files``, across every file of the family."""
    allowed: tuple[str, ...] = ()
    min_value: int | Decimal | None = None
    max_value: int | Decimal | None = None
    min_exclusive: bool = False
    length: int | None = None
    """Exact length where the contract fixes one (informational for ids that may
    also be "other registry ids")."""

    @property
    def dtype(self) -> pl.DataType:
        return _DTYPES[self.kind]


@dataclass(frozen=True)
class Table:
    """A contract table: its columns in contract order and its key."""

    name: str
    description: str
    columns: tuple[Column, ...]
    key: tuple[str, ...] = ()
    date_column: str | None = None
    """The column that dates a row for point-in-time use."""
    unique_across_files: bool = False
    partition_by: tuple[str, ...] = ()
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def required(self) -> list[str]:
        return [c.name for c in self.columns if c.required]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"table {self.name!r} has no column {name!r}; columns: {self.names}")

    @property
    def polars_schema(self) -> pl.Schema:
        return pl.Schema({c.name: c.dtype for c in self.columns})


def _money(name: str, description: str, **kw) -> Column:
    return Column(name, "decimal", description, **kw)


# --------------------------------------------------------------------------- inputs

CUSTOMERS = Table(
    name="customers",
    description="Customer master (ERP/CRM export); a slowly changing snapshot.",
    key=("customer_id",),
    columns=(
        Column("customer_id", "text", "Customer key, unique within a file.", required=True, unique=True),
        Column("customer_name", "text", "Legal or trading name.", required=True),
        Column(
            "registration_id",
            "text",
            "18-character unified social credit code (or other registry id); links to bureau files.",
        ),
        Column("industry", "text", "Industry code, e.g. C13."),
        Column("region", "text", "Sales region."),
        Column("onboarding_date", "date", "Date the customer was onboarded.", required=True),
        _money("credit_limit", "Credit limit in force, in `currency`.", required=True, min_value=Decimal(0)),
        Column(
            "payment_terms_days", "int", "Agreed payment terms in days.", required=True, min_value=0, max_value=365
        ),
        Column("currency", "currency", "ISO 4217 currency of the credit limit.", required=True),
    ),
)

ENTRY_TYPES = ("INVOICE", "PAYMENT", "CREDIT_NOTE", "WRITE_OFF")

LEDGER = Table(
    name="ledger",
    description="Accounts-receivable ledger entries.",
    key=("entry_id",),
    date_column="document_date",
    unique_across_files=True,
    columns=(
        Column("entry_id", "text", "Entry key, unique across all ledger files.", required=True, unique=True),
        Column("customer_id", "text", "Customer; must exist in the customer master.", required=True),
        Column("entry_type", "enum", "Kind of entry; the sign comes from it.", required=True, allowed=ENTRY_TYPES),
        Column("document_date", "date", "Posting date of the document.", required=True),
        Column("due_date", "date", "Due date; required for INVOICE (>= document_date), empty otherwise."),
        _money("amount", "Amount, > 0; sign comes from entry_type.", required=True, min_value=Decimal(0), min_exclusive=True),
        Column("currency", "currency", "ISO 4217 currency of the amount.", required=True),
        Column(
            "applies_to",
            "text",
            "entry_id of an INVOICE of the same customer; required for CREDIT_NOTE and WRITE_OFF; "
            "empty on a PAYMENT means cash on account.",
        ),
    ),
)

FX_RATES = Table(
    name="fx_rates",
    description="Optional exchange rates to the base currency.",
    key=("rate_date", "currency"),
    date_column="rate_date",
    columns=(
        Column("rate_date", "date", "Date the rate applies from.", required=True),
        Column("currency", "currency", "ISO 4217 code converted from.", required=True),
        Column(
            "rate_to_base",
            "rate",
            "Units of base currency per unit of `currency`.",
            required=True,
            min_value=Decimal(0),
            min_exclusive=True,
        ),
    ),
)

BUREAU = Table(
    name="bureau",
    description="Commercial credit-bureau reports, one row per company per report.",
    key=("registration_id", "report_date"),
    date_column="report_date",
    columns=(
        Column("registration_id", "text", "Registry id; joins customers.registration_id.", required=True),
        Column("report_date", "date", "Date of the report.", required=True),
        Column("bureau_score", "int", "Bureau score, higher is safer.", min_value=0, max_value=1000),
        Column("paydex", "int", "Payment index, 80 = pays on terms.", min_value=0, max_value=100),
        Column("lawsuits_12m", "int", "Court cases as defendant, last 12 months.", required=True, min_value=0),
        Column("tax_arrears", "bool", "Company has tax arrears.", required=True),
        _money("revenue", "Annual revenue (latest statement)."),
        _money("total_assets", "Total assets."),
        _money("total_liabilities", "Total liabilities."),
        _money("current_assets", "Current assets."),
        _money("current_liabilities", "Current liabilities."),
        _money("net_income", "Net income."),
        Column("years_in_business", "int", "Years in business.", min_value=0),
    ),
)

BUREAU_EVENT_TYPES = (
    "LAWSUIT",
    "TAX_ARREARS",
    "EXECUTION_ORDER",
    "BANKRUPTCY_FILING",
    "RATING_DOWNGRADE",
    "OWNER_CHANGE",
)

BUREAU_EVENTS = Table(
    name="bureau_events",
    description="Bureau alerts. No uniqueness rule: two lawsuits on one day are two events.",
    date_column="event_date",
    columns=(
        Column("registration_id", "text", "Registry id.", required=True),
        Column("event_date", "date", "Date of the event.", required=True),
        Column("event_type", "enum", "Kind of alert.", required=True, allowed=BUREAU_EVENT_TYPES),
        Column("detail", "text", "Free text, may be empty."),
    ),
)

INPUT_FAMILIES: dict[str, Table] = {
    t.name: t for t in (CUSTOMERS, FX_RATES, BUREAU, BUREAU_EVENTS, LEDGER)
}
"""Landing families in ingest order: a family's cross-file rules may look up the
families before it (ledger rows need the customer master)."""

# ------------------------------------------------------------------------- lineage

SOURCE_FILE = "source_file"
LINE_NUMBER = "line_number"
FILE_SHA256 = "file_sha256"
FILE_DATE = "file_date"
INGESTED_AT = "ingested_at"

LINEAGE = Table(
    name="lineage",
    description="Lineage columns appended to every bronze row.",
    columns=(
        Column(SOURCE_FILE, "text", "Path of the landing file, relative to the landing root."),
        Column(
            LINE_NUMBER,
            "int",
            "CSV: record number counting the header as line 1 (the physical line unless a quoted "
            "field spans lines). Parquet: 1-based row number.",
        ),
        Column(FILE_SHA256, "text", "sha256 of the file's bytes: the file's identity."),
        Column(
            FILE_DATE,
            "date",
            "Date in the file name (YYYY-MM-DD, YYYY_MM_DD or YYYYMMDD), else the ingest date.",
        ),
        Column(INGESTED_AT, "text", "UTC timestamp of the ingest run (ISO 8601)."),
    ),
)
LINEAGE_DTYPES = {SOURCE_FILE: pl.String(), LINE_NUMBER: pl.Int64(), FILE_SHA256: pl.String(),
                  FILE_DATE: pl.Date(), INGESTED_AT: pl.Datetime("us", "UTC")}

# ---------------------------------------------------------------------- quarantine

QUARANTINE = Table(
    name="quarantine",
    description="Rows (and whole files) that broke a contract rule; nothing is dropped silently.",
    columns=(
        Column("family", "text", "Landing family of the source file.", required=True),
        Column(SOURCE_FILE, "text", "Landing file, relative to the landing root.", required=True),
        Column(FILE_SHA256, "text", "sha256 of the file.", required=True),
        Column(LINE_NUMBER, "int", "Line of the row (see lineage); null for a whole-file reject."),
        Column("reason_code", "text", "First rule broken (see REASON_CODES).", required=True),
        Column("reason_detail", "text", "Every rule broken, readable."),
        Column("raw_values", "text", "The row's raw values as a JSON object of column -> text."),
        Column(INGESTED_AT, "text", "UTC timestamp of the ingest run."),
    ),
)

REASON_CODES: dict[str, str] = {
    # whole-file rejects
    "FILE_EMPTY": "the file has no bytes, no header or no data rows",
    "FILE_UNDECODABLE": "the bytes are neither UTF-8 nor GB18030/GBK text",
    "FILE_NOT_CSV": "the file is not parseable CSV or Parquet",
    "FILE_MISSING_COLUMN": "a required column is missing from the header",
    "FILE_DUPLICATE_COLUMN": "a column name appears twice in the header",
    "FILE_VALIDATION_FAILED": "the accepted batch failed a critical expectation",
    # row rules
    "MALFORMED_ROW": "the row has a different number of fields than the header",
    "MISSING_REQUIRED": "a required value is empty",
    "BAD_DATE": "not a valid YYYY-MM-DD or YYYY/MM/DD date",
    "BAD_DECIMAL": "not a decimal with at most 2 fraction digits (8 for rates)",
    "BAD_INTEGER": "not a whole number",
    "BAD_BOOLEAN": "not true/false/1/0",
    "BAD_ENUM": "not one of the allowed values",
    "BAD_CURRENCY": "not a 3-letter ISO 4217 code",
    "OUT_OF_RANGE": "a number outside its allowed range",
    "DUE_BEFORE_DOCUMENT": "due_date earlier than document_date",
    "DUE_DATE_RULE": "due_date missing on an INVOICE or present on another entry type",
    "APPLIES_TO_RULE": "applies_to missing on a CREDIT_NOTE/WRITE_OFF or present on an INVOICE",
    "DUPLICATE_KEY": "the key appears earlier in the same file",
    "DUPLICATE_ENTRY_ID": "entry_id already ingested from another ledger file",
    "UNKNOWN_CUSTOMER": "customer_id not in the customer master ingested so far",
    "UNKNOWN_INVOICE": "applies_to is not an INVOICE of the same customer",
}

# ------------------------------------------------------------------------ outputs

SCORES = Table(
    name="scores",
    description="One row per scored customer.",
    key=("as_of_date", "customer_id"),
    partition_by=("as_of_date",),
    columns=(
        Column("as_of_date", "date", "As-of date of the scoring.", required=True),
        Column("customer_id", "text", "Customer.", required=True),
        Column("pd_12m", "float", "Calibrated probability of default within 12 months, in (0, 1).", required=True),
        Column("score", "int32", "Points: 600 at odds 50:1 good:bad, 20 points to double the odds.", required=True),
        Column("risk_grade", "text", "Master-scale grade R1 (safest) .. R10.", required=True),
        Column("reason_codes", "list_text", "Up to 3 features that raise this customer's PD most."),
        Column("model_name", "text", "Registered MLflow model.", required=True),
        Column("model_version", "text", "Registered MLflow model version.", required=True),
        Column("run_id", "text", "Publishing run id.", required=True),
    ),
)

LIMIT_ACTIONS = ("INCREASE", "DECREASE", "HOLD", "SUSPEND")

LIMITS = Table(
    name="limits",
    description="Recommended credit limits.",
    key=("as_of_date", "customer_id"),
    partition_by=("as_of_date",),
    columns=(
        Column("as_of_date", "date", "As-of date.", required=True),
        Column("customer_id", "text", "Customer.", required=True),
        Column("currency", "currency", "Currency of the amounts.", required=True),
        _money("current_limit", "Limit in force.", required=True),
        _money("exposure", "Exposure at the as-of date.", required=True),
        _money("recommended_limit", "Recommended limit.", required=True),
        Column("utilization", "float", "exposure / current_limit (null when the limit is 0)."),
        Column("action", "enum", "Recommendation.", required=True, allowed=LIMIT_ACTIONS),
        Column("binding_rule", "text", "The policy rule that set the recommendation.", required=True),
        _money("expected_loss", "pd_12m x LGD x recommended_limit.", required=True),
        Column("policy_version", "text", "Credit policy version.", required=True),
    ),
)

SEVERITIES = ("HIGH", "MEDIUM", "LOW")

WATCHLIST = Table(
    name="watchlist",
    description="Early-warning list.",
    key=("as_of_date", "customer_id"),
    partition_by=("as_of_date",),
    columns=(
        Column("as_of_date", "date", "As-of date.", required=True),
        Column("customer_id", "text", "Customer.", required=True),
        Column("severity", "enum", "Severity.", required=True, allowed=SEVERITIES),
        Column("triggers", "list_text", "Triggers that fired, e.g. PD_JUMP, DPD_30.", required=True),
        Column("since_date", "date", "First as-of date of the current unbroken stay on the list.", required=True),
    ),
)

COLLECTION_ACTIONS = ("DUNNING", "STOP_SUPPLY", "LEGAL_ACTION", "WRITE_OFF_REVIEW")

COLLECTIONS = Table(
    name="collections",
    description="Customers in default (non-performing receivables).",
    key=("as_of_date", "customer_id"),
    partition_by=("as_of_date",),
    columns=(
        Column("as_of_date", "date", "As-of date.", required=True),
        Column("customer_id", "text", "Customer.", required=True),
        Column("default_date", "date", "First default date.", required=True),
        _money("outstanding", "Outstanding amount.", required=True),
        _money("bucket_0_30", "Outstanding 0-30 days past due.", required=True),
        _money("bucket_31_90", "Outstanding 31-90 days past due.", required=True),
        _money("bucket_91_180", "Outstanding 91-180 days past due.", required=True),
        _money("bucket_over_180", "Outstanding over 180 days past due.", required=True),
        Column("max_days_past_due", "int32", "Largest days past due.", required=True),
        _money("provision", "outstanding x policy LGD for its age.", required=True),
        Column(
            "recommended_action", "enum", "Collections action.", required=True, allowed=COLLECTION_ACTIONS
        ),
    ),
)

OUTPUT_TABLES: dict[str, Table] = {t.name: t for t in (SCORES, LIMITS, WATCHLIST, COLLECTIONS)}


def empty_frame(table: Table) -> pl.DataFrame:
    """An empty frame with the table's exact columns and dtypes."""
    return pl.DataFrame(schema=table.polars_schema)
