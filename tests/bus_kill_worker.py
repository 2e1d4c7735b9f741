"""An analyze worker (the real one, as `livewatch worker analyze` builds it) that kills itself with
SIGKILL right after committing batch N and before acknowledging it: the worst moment to die, which
leaves a committed batch on the bus to be delivered again. Run: python tests/bus_kill_worker.py CONFIG N"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.bus_analyze import build_analyzer, run_analyze_worker
from app.bus_wire import TranscriptMessage
from app.cli_worker import load_worker_config
from store.db import Database


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = load_worker_config(Path(sys.argv[1]))
    kill_at = int(sys.argv[2])
    db = Database.for_data_dir(cfg.resolved_data_dir(), cfg.db_url)
    analyzer = build_analyzer(cfg, db)

    def after_commit(msg: TranscriptMessage) -> None:
        if msg.seq == kill_at:
            logging.getLogger("kill").warning("batch %d committed; SIGKILL before the ack", msg.seq)
            os.kill(os.getpid(), signal.SIGKILL)

    analyzer.after_commit = after_commit
    asyncio.run(run_analyze_worker(analyzer, cfg.bus))


if __name__ == "__main__":
    main()
