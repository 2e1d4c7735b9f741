"""An ASR worker (the real one, as `livewatch worker asr` builds it) that kills itself with SIGKILL right
after storing transcript batch N and before publishing it or acknowledging its audio: the worst moment
to die, which leaves lines stored that no analyze worker was told of and audio chunks on the bus that
were transcribed. Run: python tests/bus_kill_asr_worker.py CONFIG N"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.bus_asr_run import build_asr, run_asr_worker
from app.bus_wire import TranscriptMessage
from app.cli_worker import load_worker_config
from store.db import Database


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = load_worker_config(Path(sys.argv[1]))
    kill_at = int(sys.argv[2])
    db = Database.for_data_dir(cfg.resolved_data_dir(), cfg.db_url)
    asr = build_asr(cfg, db)

    def after_commit(msg: TranscriptMessage) -> None:
        if msg.seq == kill_at:
            logging.getLogger("kill").warning(
                "transcript batch %d stored; SIGKILL before publishing", msg.seq
            )
            os.kill(os.getpid(), signal.SIGKILL)

    asr.after_commit = after_commit
    asyncio.run(run_asr_worker(asr, cfg.bus))


if __name__ == "__main__":
    main()
