"""The fault suite's report: each fault test adds a row (faults injected / survived / alerts lost /
duplicated) to a session-scoped table, printed in the terminal summary, so the figures appear in CI
output with or without `-s`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fault_harness import FaultRow

_ROWS: list[FaultRow] = []


@pytest.fixture(scope="session")
def fault_table() -> Iterator[list[FaultRow]]:
    yield _ROWS


@pytest.fixture
def fault_row(fault_table: list[FaultRow], request: pytest.FixtureRequest) -> Iterator[FaultRow]:
    """This test's row; it is reported even when the test fails (the counts say how)."""
    row = FaultRow(request.node.name.removeprefix("test_"))
    yield row
    fault_table.append(row)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _ROWS:
        return
    tr = terminalreporter
    tr.section("fault injection")
    width = max(len(r.fault) for r in _ROWS)
    tr.write_line(f"{'fault':<{width}}  injected  survived  alerts lost  duplicated")
    for r in _ROWS:
        tr.write_line(
            f"{r.fault:<{width}}  {r.injected:>8}  {r.survived:>8}  {r.lost:>11}  {r.duplicated:>10}"
        )
        for note in r.notes:
            tr.write_line(f"{'':<{width}}  {note}")
