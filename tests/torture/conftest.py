"""The fault suite's knob, its figures, and the table printed at the end of the run.

One knob scales every scenario: ``EVENTLOG_TORTURE_SCALE`` (an integer, default 1). The default
is the bounded form that ``make test`` (plain ``pytest``) runs in well under a minute; ``make
torture`` runs the long form (``EVENTLOG_TORTURE_SCALE=8``: 48 server kills, 80 producer kills,
...). Each scenario multiplies its own base counts by ``scale``, and its timeout grows with it.
``EVENTLOG_TORTURE_SEED`` replays a run's randomness (each scenario notes its seed).
Every test here carries the ``torture`` marker, so ``-m 'not torture'`` leaves the suite out."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator

import pytest

from tests.torture.figures import RECORDED, Figures, table

BASE_TIMEOUT = 150  # seconds per scenario at scale 1; only a guard against hangs


def torture_scale() -> int:
    value = os.environ.get("EVENTLOG_TORTURE_SCALE", "1")
    if not value.isdigit() or int(value) < 1:
        raise pytest.UsageError(f"EVENTLOG_TORTURE_SCALE must be a positive integer (got {value!r})")
    return int(value)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = os.path.dirname(__file__)
    timeout = BASE_TIMEOUT * torture_scale()
    for item in items:
        if str(item.path).startswith(here + os.sep):
            item.add_marker(pytest.mark.torture)
            item.add_marker(pytest.mark.timeout(timeout))


@pytest.fixture(scope="session")
def scale() -> int:
    """How many times the bounded form each scenario runs (``EVENTLOG_TORTURE_SCALE``)."""
    return torture_scale()


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Iterator[Figures]:
    """This scenario's figures, recorded for the end-of-run table whatever the outcome."""
    recorded = Figures(request.node.name.removeprefix("test_"))
    RECORDED.append(recorded)
    started = time.monotonic()
    yield recorded
    recorded.seconds = time.monotonic() - started


@pytest.fixture
def rng(figures: Figures) -> random.Random:
    """The scenario's randomness (kill moments, damaged pages...), from ``EVENTLOG_TORTURE_SEED``
    when set, else a fresh seed; either way the seed is in the figures, to replay a failure."""
    seed = int(os.environ.get("EVENTLOG_TORTURE_SEED") or random.randrange(2**32))
    figures.note(f"seed {seed}")
    return random.Random(seed)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not RECORDED:
        return
    terminalreporter.write_sep("=", f"torture figures (EVENTLOG_TORTURE_SCALE={torture_scale()})")
    for line in table(RECORDED):
        terminalreporter.write_line(line)
