"""The ``exo`` command (placeholder until the CLI lands)."""


def main() -> None:
    raise SystemExit("exo: not yet implemented")
