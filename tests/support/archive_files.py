"""Reading the integration's CSV archive back as plain rows, as a scientist would."""

from __future__ import annotations

import csv
from pathlib import Path


def archive_rows(directory: Path) -> list[dict[str, str]]:
    """Every row of every CSV file under `directory`, file by file in name order."""
    rows: list[dict[str, str]] = []
    for path in sorted(directory.rglob("*.csv")):
        with path.open(newline="") as file:
            rows.extend(csv.DictReader(file))
    return rows
