"""How long does it take to open an existing, up-to-date livewatch database?

Every CLI command and every worker process opens the database once at start-up, so this is paid on each
`livewatch ...` invocation. Each sample is a fresh Python process (imports are part of the cost):

    python bench/bench_store_open.py [--runs 15] [--url sqlite:///path/to/livewatch.db]

Prints the median and spread of: importing store.db and store.models, `Database(url)`, and the first
query; then the one-time cost of opening a new, empty database (creating the schema). Without --url
it uses a throwaway SQLite database in a temporary directory (opened once before timing so the schema
exists).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

_CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
from store.db import Database
import store.models  # every real caller imports the models; keep that out of "open"
from sqlalchemy import text
t1 = time.perf_counter()
db = Database(sys.argv[1])
t2 = time.perf_counter()
with db.session() as s:
    s.execute(text("SELECT count(*) FROM alerts")).scalar()
t3 = time.perf_counter()
db.dispose()
print(json.dumps({"import": t1 - t0, "open": t2 - t1, "first_query": t3 - t2}))
"""


def _sample(url: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", _CHILD, url], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--url", default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.url or f"sqlite:///{Path(tmp) / 'livewatch.db'}"
        _sample(url)  # create / migrate once; the timed runs open an up-to-date database
        samples = [_sample(url) for _ in range(args.runs)]
        fresh = sorted(
            _sample(f"sqlite:///{Path(tmp) / f'new{i}.db'}")["open"] * 1000
            for i in range(max(3, args.runs // 3))
        )
    for key in ("import", "open", "first_query"):
        values = sorted(s[key] * 1000 for s in samples)
        print(
            f"{key:12s} median {statistics.median(values):7.1f} ms   min {values[0]:7.1f}   max {values[-1]:7.1f}"
        )
    print(
        f"{'new db open':12s} median {statistics.median(fresh):7.1f} ms   min {fresh[0]:7.1f}   max {fresh[-1]:7.1f}"
    )
    total = sorted((s["import"] + s["open"] + s["first_query"]) * 1000 for s in samples)
    print(
        f"{'total':12s} median {statistics.median(total):7.1f} ms   min {total[0]:7.1f}   max {total[-1]:7.1f}"
    )


if __name__ == "__main__":
    main()
