"""The fixed tune/test split of every labelled line livewatch is measured on.

Every labelled item (a real-world corpus line, a synthetic corpus line, a phrase-table entry) has a
stable id. Its half is decided by a hash of that id alone, so the assignment never changes when
lines are added, removed or reordered, and nobody can move a line between halves by editing it.

Rules are written from the law, the guidance and the *tune* half; the *test* half is only scored.
`livewatch eval` reports the halves separately and prints the lines it missed only for the tune half.
"""

from __future__ import annotations

import hashlib
from typing import Literal

__all__ = ["SALT", "Half", "split_of"]

Half = Literal["tune", "test"]

SALT = "livewatch-split-v1:"


def split_of(item_id: str) -> Half:
    """``"test"`` for about half of all ids, ``"tune"`` for the rest; a pure function of the id."""
    digest = hashlib.sha256((SALT + item_id).encode("utf-8")).digest()
    return "test" if digest[0] & 1 else "tune"


def _main(argv: list[str]) -> int:
    """``python -m detectors.split tune FILE.jsonl...``: print only the tune half's lines (for rule writers)."""
    import json
    import sys

    if len(argv) < 2 or argv[0] != "tune":
        print("usage: python -m detectors.split tune FILE.jsonl...  (the test half is never printed)", file=sys.stderr)
        return 2
    for path in argv[1:]:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    d = json.loads(line)
                    if split_of(str(d["id"])) == "tune":
                        print(json.dumps(d, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(_main(sys.argv[1:]))
