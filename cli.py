"""The `creditflow` command line (placeholder until the ingest flow lands)."""


def main(argv: list[str] | None = None) -> int:
    raise SystemExit("creditflow: not wired yet")
