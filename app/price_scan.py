"""Price claims in the scan pipeline: the two hooks `app.pipeline.Scanner` calls.

`PriceScan.analyze` extracts every claim of the broadcast, checks each against the stream's stored
history and imported prices, and cross-checks speech against the screen (price_fraud detections);
`PriceScan.save` stores the claims in the scan's transaction and links them to the alerts that cover
them, so a later contradiction can cite this moment's evidence.

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
from store.db import Database
from store.prices import SqlPriceHistory, link_claim_alerts, save_claims

__all__ = ["PriceScan"]

logger = logging.getLogger(__name__)


class PriceScan:
    def __init__(self, db: Database, config: PriceConfig | None = None) -> None:
        self.db = db
        self.config = config or load_price_config()
        self._pending: dict[str, PriceAnalysis] = {}

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

    def save(
        self,
        session: Any,
        analysis: PriceAnalysis,
        *,
        broadcast_id: str,
        stream_id: str | None,
        started_ts: float | None,
    ) -> None:
        """Store the broadcast's claims in the caller's transaction and link them to their alerts."""
        save_claims(
            session,
            broadcast_id=broadcast_id,
            stream_id=stream_id,
            started_ts=started_ts,
            claims=[tc.claim for tc in analysis.claims],
        )
        link_claim_alerts(session, broadcast_id)
