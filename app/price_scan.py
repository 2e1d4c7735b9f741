"""Price claims in the scan pipeline: the two hooks `app.pipeline.Scanner` calls.

`PriceScan(db).install(scanner)` sets `scanner.price_hook` (extract every claim of the broadcast,
check each against the stream's stored history and imported prices, cross-check speech against the
screen; returns price_fraud detections) and `scanner.save_claims_hook` (store the claims in the
scan's transaction and link them to the alerts that cover them, so a later contradiction can cite
this moment's evidence).

Concurrency: a `PriceScan` belongs to one `Scanner` (one thread). Between the two hooks it keeps the
broadcast's claims in memory, keyed by broadcast id. History reads open their own sessions and see
only committed scans, so claims of the broadcast being scanned never contradict themselves.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from asr.types import Utterance
from detectors.price import PriceAnalysis, PriceChecker, analyze_utterances
from detectors.price_config import PriceConfig, load_price_config
from detectors.types import Detection
from store.db import Database
from store.prices import SqlPriceHistory, link_claim_alerts, save_claims

__all__ = ["PriceScan"]

logger = logging.getLogger(__name__)


class PriceScan:
    def __init__(self, db: Database, config: PriceConfig | None = None) -> None:
        self.db = db
        self.config = config or load_price_config()
        self._pending: dict[str, PriceAnalysis] = {}

    def install(self, scanner: Any) -> PriceScan:
        scanner.price_hook = self.price_hook
        scanner.save_claims_hook = self.save_claims_hook
        return self

    def analyze(
        self,
        speech: Sequence[Utterance],
        screen: Sequence[Utterance],
        *,
        stream_id: str | None,
        started_ts: float | None,
        broadcast_id: str,
    ) -> PriceAnalysis:
        checker = PriceChecker(self.config, SqlPriceHistory(self.db))
        res = analyze_utterances(
            speech, screen, checker, stream_id=stream_id, started_ts=started_ts, broadcast_id=broadcast_id
        )
        logger.info(
            "broadcast %s: %s price claims, %s price detections",
            broadcast_id,
            len(res.claims),
            len(res.detections),
        )
        return res

    def price_hook(
        self, scanner: Any, speech: list[Utterance], screen: list[Utterance], opts: Any, broadcast_id: str
    ) -> list[Detection]:
        res = self.analyze(
            speech, screen, stream_id=opts.stream_id, started_ts=opts.started_ts, broadcast_id=broadcast_id
        )
        self._pending[broadcast_id] = res
        return list(res.detections)

    def save_claims_hook(
        self,
        scanner: Any,
        session: Any,
        broadcast_id: str,
        opts: Any,
        speech: list[Utterance],
        screen: list[Utterance],
    ) -> None:
        res = self._pending.pop(broadcast_id, None)
        if res is None:  # detection ran elsewhere: extract again (cheap, deterministic), without checks
            res = analyze_utterances(
                speech,
                screen,
                PriceChecker(self.config, None),
                stream_id=None,
                started_ts=None,
                broadcast_id=broadcast_id,
            )
        save_claims(
            session,
            broadcast_id=broadcast_id,
            stream_id=opts.stream_id,
            started_ts=opts.started_ts,
            claims=[tc.claim for tc in res.claims],
        )
        link_claim_alerts(session, broadcast_id)
