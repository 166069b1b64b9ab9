"""The figures every torture scenario reports: what it did, what it broke, what survived.

A scenario takes a ``Figures`` from the ``figures`` fixture, counts into it as it goes, and
calls ``check()``: any lost or duplicated event fails it, with the figures in the message.
``tests/torture/conftest.py`` prints one table of every scenario's figures at the end of the
run, so a run of the suite is also its report."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

COLUMNS = ("scenario", "ops", "faults", "acked", "lost", "dup", "secs", "errors by kind / notes")


@dataclass
class Figures:
    scenario: str
    operations: int = 0
    """Requests made: appends, POSTs, connections, opens (retries included)."""
    faults: int = 0
    """Faults injected: kill -9s, full disks, held locks, damaged files, dropped connections."""
    acknowledged: int = 0
    """Events the log acknowledged (each one a promise that it is durable)."""
    lost: int = 0
    """Acknowledged events missing from the file or from a consumer's stream."""
    duplicated: int = 0
    """Events stored or delivered more than once."""
    errors: Counter[str] = field(default_factory=Counter)
    """Errors seen by clients, by kind (``database_full``, ``connect``, ``HTTP 503``...)."""
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def error(self, kind: str, n: int = 1) -> None:
        self.errors[kind] += n

    def note(self, text: str) -> None:
        """Something the reader of the table must know (a fallback taken, a bound used)."""
        self.notes.append(text)
        print(f"[{self.scenario}] {text}")

    def tally(self, acknowledged: Sequence[int], seen: Iterable[int]) -> None:
        """Count what ``seen`` (ids read back or delivered) lost or repeated of ``acknowledged``."""
        seen = list(seen)
        self.lost += len(set(acknowledged) - set(seen))
        self.duplicated += len(seen) - len(set(seen))

    def check(self) -> None:
        """Fail the scenario on any loss or duplicate."""
        print(" | ".join(self.row()))
        assert self.lost == 0 and self.duplicated == 0, f"lost or duplicated events: {self}"

    def row(self) -> tuple[str, ...]:
        errors = ", ".join(f"{kind} {n}" for kind, n in sorted(self.errors.items()))
        extra = "; ".join([errors, *self.notes]) if errors else "; ".join(self.notes)
        return (self.scenario, str(self.operations), str(self.faults), str(self.acknowledged),
                str(self.lost), str(self.duplicated), f"{self.seconds:.1f}", extra or "-")


RECORDED: list[Figures] = []
"""Every scenario's figures of this run, in the order the scenarios ran."""


def table(recorded: Sequence[Figures]) -> list[str]:
    """The figures as a Markdown table (pasteable into a closing note)."""
    rows = [COLUMNS, *(f.row() for f in recorded)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = ["| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths)) + " |" for row in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return lines
