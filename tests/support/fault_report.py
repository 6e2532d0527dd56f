"""The fault-injection harness's result table.

Every harness scenario (on either half) records one row; `./scripts/test`
points BIOREACTOR_FAULT_REPORT at a file and prints the table at the end:

    python tests/support/fault_report.py FILE
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

COLUMNS = ("scenario", "cycles", "generated", "delivered", "lost", "duplicated")


def scale() -> float:
    """BIOREACTOR_FAULT_SCALE multiplies the harness's cycle counts (default 1 = CI size)."""
    return float(os.environ.get("BIOREACTOR_FAULT_SCALE", "1"))


def record(
    scenario: str, *, cycles: int, generated: int, delivered: int, lost: int, duplicated: int
) -> None:
    row = {
        "scenario": scenario,
        "cycles": cycles,
        "generated": generated,
        "delivered": delivered,
        "lost": lost,
        "duplicated": duplicated,
    }
    print("\nfault harness:", render([row]), sep="\n")
    target = os.environ.get("BIOREACTOR_FAULT_REPORT")
    if target:
        with Path(target).open("a", encoding="utf-8") as report:
            report.write(json.dumps(row) + "\n")


def render(rows: list[dict[str, object]]) -> str:
    widths = {c: max([len(c)] + [len(str(r[c])) for r in rows]) for c in COLUMNS}
    line = "  ".join(c.ljust(widths[c]) if c == "scenario" else c.rjust(widths[c]) for c in COLUMNS)
    out = [line, "-" * len(line)]
    for row in rows:
        out.append(
            "  ".join(
                str(row[c]).ljust(widths[c]) if c == "scenario" else str(row[c]).rjust(widths[c])
                for c in COLUMNS
            )
        )
    return "\n".join(out)


def main(path: str) -> int:
    file = Path(path)
    rows = [json.loads(line) for line in file.read_text().splitlines()] if file.exists() else []
    if not rows:
        print("fault-injection harness: no scenario ran")
        return 1
    print(render(rows))
    bad = [r["scenario"] for r in rows if r["lost"] or r["duplicated"]]
    if bad:
        print("readings lost or duplicated in: " + ", ".join(bad))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
