"""Corpus evaluation of the whole scan (real model, real ffmpeg, real store), as the acceptance asks:

- every clip of examples/corpus/clips.jsonl scanned on its own: an alert of a listed category for a
  labelled line, silence for a `clean` one — prints each verdict and the count;
- broadcast_0.mp4 (speech and screen) and broadcast_1.flac scored with tools/score.py.

    python bench/eval_corpus.py [--corpus DIR] [--no-video]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.config import RootConfig  # noqa: E402
from app.pipeline import Scanner, ScanOptions  # noqa: E402
from store.db import Database  # noqa: E402


def score(truth: Path, alerts: list[dict], source: str) -> str:
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False, encoding="utf-8") as f:
        f.write("".join(json.dumps(a, ensure_ascii=False) + "\n" for a in alerts))
    out = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "score.py"), str(truth), f.name, "--source", source],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    Path(f.name).unlink()
    return out.strip()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default=str(ROOT / "examples" / "corpus"))
    ap.add_argument("--no-video", action="store_true")
    args = ap.parse_args()
    corpus = Path(args.corpus)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        cfg = RootConfig(data_dir=data)
        db = Database.for_data_dir(data)
        scanner = Scanner(cfg, db, data_dir=data)
        right = 0
        lines = [
            json.loads(x) for x in (corpus / "clips.jsonl").read_text(encoding="utf-8").splitlines() if x
        ]
        for line in lines:
            # each clip is its own stream, so price history from one clip never reaches another
            r = scanner.scan(
                corpus / "clips" / f"{line['id']}.flac", ScanOptions(stream_id=f"clip-{line['id']}")
            )
            got = sorted({a["category"] for a in r.alerts})
            want = [c for c in line["labels"] if c != "clean"]
            ok = (not got) if not want else bool(set(got) & set(want)) and set(got) <= set(want)
            right += ok
            print(
                f"{'ok ' if ok else 'BAD'} {line['id']} want={','.join(want) or 'clean':28s} "
                f"got={','.join(got) or '-':28s} {line['text']}"
            )
        print(f"clips with the right verdict: {right}/{len(lines)}")
        for name, sources in (("broadcast_0.mp4", ("speech", "screen")), ("broadcast_1.flac", ("speech",))):
            r = scanner.scan(corpus / name, ScanOptions(video=not args.no_video))
            truth = corpus / (Path(name).stem + ".json")
            for src in sources:
                print(f"== {name} source={src}\n{score(truth, r.alerts, src)}")
        db.dispose()


if __name__ == "__main__":
    main()
