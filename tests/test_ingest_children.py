"""The recorder's children (streamlink, ffmpeg): started without fork handlers, gone with their starter.

A `preexec_fn` made CPython fork() while holding the GIL and run the libraries' fork handlers in the
recording thread; OpenBLAS's handler waited for a worker that waited for the ASR thread's BLAS call,
which waited for the GIL, and the monitor froze (signals included). The children now get their
PR_SET_PDEATHSIG from a launcher that execs them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from ingest import recorder
from ingest.recorder import _Proc, _with_pdeathsig

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")


def test_a_child_is_started_without_running_fork_handlers() -> None:
    forks: list[int] = []
    armed = threading.Event()
    # Python's own fork hooks run exactly when CPython forks for a preexec_fn (PyOS_BeforeFork);
    # vfork() runs none, neither Python's nor the C libraries'.
    os.register_at_fork(before=lambda: forks.append(1) if armed.is_set() else None)
    armed.set()
    try:
        p = _Proc("true", [shutil.which("true") or "true"])
        assert p.popen.wait(30) == 0
        p.stop(1.0)
    finally:
        armed.clear()
    assert forks == []


def test_a_missing_program_fails_as_popen_would() -> None:
    with pytest.raises(FileNotFoundError):
        _Proc("nope", ["livewatch-no-such-program-here"])


@linux
@pytest.mark.parametrize("launcher", ["setpriv", "python"])
def test_a_child_gets_sigterm_when_its_starting_thread_dies(launcher: str) -> None:
    setpriv = shutil.which("setpriv")
    if launcher == "setpriv" and setpriv is None:
        pytest.skip("no setpriv here")
    args = _with_pdeathsig(["sleep", "60"], setpriv if launcher == "setpriv" else None)
    assert args[-2:] == [shutil.which("sleep"), "60"]
    started: list[subprocess.Popen[bytes]] = []

    def starter() -> None:  # a recorder thread that dies (as all of them do with a killed monitor)
        child = subprocess.Popen(args, start_new_session=True)
        started.append(child)
        # the launcher asks for the signal before it execs the program: wait for that exec (a recorder
        # thread lives as long as its connection)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and child.poll() is None:
            with contextlib.suppress(OSError):
                if os.path.samefile(f"/proc/{child.pid}/exe", args[-2]):
                    return
            time.sleep(0.01)

    t = threading.Thread(target=starter)
    t.start()
    t.join()
    child = started[0]
    try:
        assert child.wait(20) == -signal.SIGTERM
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_the_recorder_uses_setpriv_when_the_system_has_it() -> None:
    if sys.platform.startswith("linux"):
        assert recorder._SETPRIV == shutil.which("setpriv")
    else:
        assert recorder._SETPRIV is None
