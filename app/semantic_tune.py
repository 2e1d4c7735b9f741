"""Training and measuring the semantic head (``livewatch tune semantic``).

1. Gather labelled lines (`detectors.semantic_data`: corpus files, clips, phrase tables; plus
   reviewers' decisions from a store when given: a confirmed alert is an example of its category, a
   false positive a counter-example of that category only).
2. Split by `detectors.split.split_of(id)`. Only the *tune* half trains anything. A tune line whose
   text also occurs in the test half (under another id) is dropped, so no test text is ever learnt.
3. On the tune half, k-fold cross-validation picks the L2 strength of each of the head's two models
   (embedding, character n-grams) by out-of-fold mean average precision and, per category, the lowest
   threshold on the mean probability of the two and the neighbour vote whose out-of-fold precision reaches the target (0.9) with at
   least `min_tp` out-of-fold hits; a category that cannot reach it is turned off. Folds keep
   near-duplicates together (character n-gram cosine >= 0.5 or embedding cosine >= 0.95: a phrase-table
   line written from a corpus line, one quote in two files), by a hash of the group's first id, so
   that a line is never scored by a model that learnt its twin.
4. The head is refitted on the whole tune half and saved. The test half is only scored: the head
   alone, and the rules alone vs rules + semantic on ``corpus/real`` (aggregate counts only).

Pure apart from reading the corpus and the store, embedding, and writing the head.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from asr.types import Utterance
from detectors.semantic import (
    CATEGORIES,
    EMBED_MODEL_ID,
    KNN_SCALE,
    OFF,
    LabelledLine,
    SemanticHead,
    fit_heads,
    get_embedder,
    knn_vote,
)
from detectors.semantic_data import (
    DEFAULT_CLIPS,
    DEFAULT_CORPUS_DIR,
    corpus_files,
    drop_texts,
    half_of,
    merge_by_text,
    phrase_lines,
    read_jsonl,
)
from detectors.semantic_ngram import Sparse, fit_ngram_heads, ngram_features, ngram_logits

__all__ = [
    "Counts",
    "TuneOptions",
    "TuneResult",
    "choose_thresholds",
    "compare_rules",
    "decision_lines",
    "gather",
    "mean_average_precision",
    "near_duplicate_folds",
    "oof_knn_probabilities",
    "oof_ngram_probabilities",
    "oof_probabilities",
    "score",
    "tune",
]

logger = logging.getLogger(__name__)

L2_GRID = (3.0, 10.0, 30.0, 100.0, 300.0)
NGRAM_L2_GRID = (0.03, 0.1, 0.3)
NEAR_NGRAM = 0.5  # character n-gram cosine at or above which two lines share a fold
NEAR_EMBED = 0.95  # embedding cosine at or above which two lines share a fold


@dataclass(frozen=True, slots=True)
class TuneOptions:
    out: Path
    corpus_dir: Path = DEFAULT_CORPUS_DIR
    clips: Path | None = DEFAULT_CLIPS
    rule_dirs: tuple[Path, ...] = ()
    db: Any = None  # store.db.Database, for reviewers' decisions
    target_precision: float = 0.9
    min_tp: int = 2
    floor: float = 0.5
    folds: int = 5
    l2: float | None = None  # None: chosen by cross-validation from L2_GRID
    l2_ngram: float | None = None  # None: chosen by cross-validation from NGRAM_L2_GRID
    embed_cache: Path | None = None


@dataclass(slots=True)
class Counts:
    tp: Counter[str] = field(default_factory=Counter)
    fp: Counter[str] = field(default_factory=Counter)
    fn: Counter[str] = field(default_factory=Counter)

    def precision(self, c: str | None = None) -> float | None:
        tp = self.tp[c] if c else sum(self.tp.values())
        fp = self.fp[c] if c else sum(self.fp.values())
        return tp / (tp + fp) if tp + fp else None

    def recall(self, c: str | None = None) -> float | None:
        tp = self.tp[c] if c else sum(self.tp.values())
        fn = self.fn[c] if c else sum(self.fn.values())
        return tp / (tp + fn) if tp + fn else None


@dataclass(slots=True)
class TuneResult:
    head: SemanticHead
    hash: str
    l2: float
    l2_ngram: float
    cv_map: dict[str, float]  # out-of-fold mean average precision: embedding, ngram, combined
    thresholds: dict[str, float]
    tune_cv: Counts  # out-of-fold, at the chosen thresholds
    test: Counts  # the head alone on every test-half line
    rules_test: Counts  # rules alone on corpus/real test half
    staged_test: Counts  # rules + semantic on corpus/real test half
    sources: dict[str, dict[str, int]]
    notes: list[str]


# ---------------------------------------------------------------- data


def decision_lines(session: Any) -> list[LabelledLine]:
    """Reviewers' latest decision per alert: confirmed → example, false positive → counter-example."""
    from sqlalchemy import select

    from store.models import AlertRow, Decision

    latest: dict[str, str] = {}
    rows = session.execute(
        select(Decision.alert_id, Decision.decision).order_by(Decision.created_ts, Decision.id)
    ).all()
    for alert_id, decision in rows:
        if decision in ("confirmed", "false_positive"):
            latest[alert_id] = decision
        elif decision in ("escalated",):
            latest[alert_id] = "confirmed"
    out = []
    for alert_id in sorted(latest):
        a = session.get(AlertRow, alert_id)
        if a is None or not a.text.strip() or a.category not in CATEGORIES:
            continue
        src = f"decision {alert_id}"
        if latest[alert_id] == "confirmed":
            out.append(
                LabelledLine(f"decision:{alert_id}", a.text, frozenset({a.category}), src, frozenset())
            )
        else:
            out.append(
                LabelledLine(f"decision:{alert_id}", a.text, frozenset(), src, frozenset({a.category}))
            )
    return out


@dataclass(slots=True)
class Gathered:
    lines: list[LabelledLine]
    real_ids: set[str]  # ids of corpus/real lines (the comparison set)
    sources: dict[str, dict[str, int]]
    skipped_context: int
    notes: list[str] = field(default_factory=list)


def gather(opts: TuneOptions, rules: Any) -> Gathered:
    lines: list[LabelledLine] = []
    real_ids: set[str] = set()
    sources: dict[str, dict[str, int]] = {}
    skipped = 0
    corpus_dir = Path(opts.corpus_dir).resolve()
    for path in corpus_files(opts.corpus_dir, opts.clips):
        got, sk = read_jsonl(path)
        skipped += sk
        if path.resolve().parent == corpus_dir:
            real_ids.update(ln.id for ln in got)
        lines.extend(got)
        sources[_rel(path)] = _half_counts(got) | {"context_skipped": sk}
    ph = phrase_lines(rules)
    lines.extend(ph)
    sources["phrase tables"] = _half_counts(ph)
    if opts.db is not None:
        with opts.db.session() as s:
            dec = decision_lines(s)
        lines.extend(dec)
        sources["reviewer decisions"] = _half_counts(dec)
    # The same phrase in two packs has one id: keep it once. One id on two different texts is a data
    # error, reported (both lines stay, in the same half, since the half is a function of the id).
    seen: dict[str, LabelledLine] = {}
    unique: list[LabelledLine] = []
    notes: list[str] = []
    for ln in lines:
        prev = seen.get(ln.id)
        if prev is not None and prev.text == ln.text:
            continue
        if prev is not None:
            notes.append(f"id {ln.id!r} names two texts ({prev.source}; {ln.source})")
        seen[ln.id] = ln
        unique.append(ln)
    return Gathered(unique, real_ids, sources, skipped, notes)


def _rel(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path(__file__).resolve().parents[1]))
    except ValueError:
        return str(path)


def _half_counts(lines: Sequence[LabelledLine]) -> dict[str, int]:
    c = Counter(half_of(ln) for ln in lines)
    return {"tune": c["tune"], "test": c["test"]}


# ---------------------------------------------------------------- cross-validation


def _fold(item_id: str, k: int) -> int:
    return int(hashlib.sha256(f"fold:{item_id}".encode()).hexdigest()[:8], 16) % k


def near_duplicate_folds(
    E: npt.NDArray[np.float32], S: Sparse, ids: Sequence[str], folds: int, *, block: int = 4096
) -> npt.NDArray[np.int64]:
    """A fold per line: near-duplicates (n-gram cosine >= NEAR_NGRAM or embedding cosine >=
    NEAR_EMBED, transitively) share the fold of the group's smallest id."""
    n = len(ids)
    X = E.astype(np.float32)
    near = (X @ X.T) >= NEAR_EMBED
    G = np.zeros((n, n), dtype=np.float32)
    for lo in range(0, S.dim, block):  # the n-gram Gram matrix a column block at a time
        sel = (S.cols >= lo) & (S.cols < lo + block)
        D = np.zeros((n, block), dtype=np.float32)
        D[S.rows[sel], S.cols[sel] - lo] = S.vals[sel]
        G += D @ D.T
    near |= G >= NEAR_NGRAM
    parent = np.arange(n)

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = int(parent[a])
        return a

    for a, b in zip(*np.nonzero(np.triu(near, 1)), strict=True):
        ra, rb = find(int(a)), find(int(b))
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    first: dict[int, str] = {}
    for a in range(n):
        r = find(a)
        if r not in first or ids[a] < first[r]:
            first[r] = ids[a]
    return np.array([_fold(first[find(a)], folds) for a in range(n)], dtype=np.int64)


def oof_probabilities(
    E: npt.NDArray[np.float32],
    pos: npt.NDArray[np.bool_],
    known: npt.NDArray[np.bool_],
    ids: Sequence[str],
    *,
    l2: float,
    folds: int,
    fold: npt.NDArray[np.int64] | None = None,
) -> npt.NDArray[np.float64]:
    """Out-of-fold probabilities (n, k) of the embedding model: each line scored by a head that never
    saw it (folds: `fold`, or a hash of each id)."""
    X = E.astype(np.float16).astype(np.float64)  # as the saved head sees its index
    if fold is None:
        fold = np.array([_fold(i, folds) for i in ids])
    P = np.zeros(pos.shape)
    for f in range(folds):
        tr, te = fold != f, fold == f
        if not te.any():
            continue
        W, b = fit_heads(X[tr], pos[tr], known[tr], l2=l2)
        z = X[te] @ W.T + b
        P[te] = 0.5 * (1.0 + np.tanh(0.5 * z))
    return P


def oof_ngram_probabilities(
    S: Sparse,
    pos: npt.NDArray[np.bool_],
    known: npt.NDArray[np.bool_],
    fold: npt.NDArray[np.int64],
    *,
    l2: float,
) -> npt.NDArray[np.float64]:
    """Out-of-fold probabilities (n, k) of the n-gram model."""
    P = np.zeros(pos.shape)
    for f in sorted(set(fold.tolist())):
        tr, te = fold != f, fold == f
        W, b = fit_ngram_heads(S.take(tr), pos[tr], known[tr], l2=l2)
        P[te] = 0.5 * (1.0 + np.tanh(0.5 * ngram_logits(S.take(te), W, b)))
    return P


def oof_knn_probabilities(
    E: npt.NDArray[np.float32],
    pos: npt.NDArray[np.bool_],
    known: npt.NDArray[np.bool_],
    fold: npt.NDArray[np.int64],
    *,
    scale: float = KNN_SCALE,
) -> npt.NDArray[np.float64]:
    """Out-of-fold neighbour votes (n, k): each line against the other folds' lines (stored as float16
    in a head's index)."""
    index = E.astype(np.float16).astype(np.float32)
    P = np.zeros(pos.shape)
    for f in sorted(set(fold.tolist())):
        tr, te = fold != f, fold == f
        P[te] = knn_vote(E[te], index[tr], pos[tr], known[tr], scale)
    return P


def mean_average_precision(
    P: npt.NDArray[np.float64], pos: npt.NDArray[np.bool_], known: npt.NDArray[np.bool_]
) -> float:
    """Mean over categories with at least 3 positives of the average precision of `P`."""
    aps = [
        _average_precision(P[known[:, j], j], pos[known[:, j], j])
        for j in range(pos.shape[1])
        if pos[:, j].sum() >= 3
    ]
    return float(np.mean(aps)) if aps else 0.0


def _average_precision(p: npt.NDArray[np.float64], y: npt.NDArray[np.bool_]) -> float:
    order = np.argsort(-p, kind="stable")
    ys = y[order]
    hits = np.cumsum(ys)
    prec = hits / np.arange(1, len(ys) + 1)
    return float((prec * ys).sum() / max(ys.sum(), 1))


def choose_thresholds(
    P: npt.NDArray[np.float64],
    pos: npt.NDArray[np.bool_],
    known: npt.NDArray[np.bool_],
    categories: Sequence[str],
    *,
    target: float,
    min_tp: int,
    floor: float,
) -> dict[str, float]:
    """Per category the lowest threshold ≥ `floor` with out-of-fold precision ≥ `target` and at least
    `min_tp` hits (so the most recall at that precision); OFF when none."""
    out: dict[str, float] = {}
    for j, c in enumerate(categories):
        rows = known[:, j]
        p, y = P[rows, j], pos[rows, j]
        best = OFF
        for t in sorted({float(x) for x in p[y] if x >= floor}):
            flagged = p >= t
            tp = int((flagged & y).sum())
            fp = int((flagged & ~y).sum())
            if tp >= min_tp and tp / (tp + fp) >= target:
                best = t
                break
        # a little below the lowest accepted positive, so that float16/float32 rounding cannot flip it
        out[c] = OFF if best >= OFF else max(floor, round(best - 1e-4, 4))
    return out


def score(
    lines: Sequence[LabelledLine], flagged: Sequence[set[str]], categories: Sequence[str] = CATEGORIES
) -> Counts:
    """tp/fp/fn per category over lines, counting only categories a line is labelled for or against."""
    cnt = Counts()
    for ln, got in zip(lines, flagged, strict=True):
        for c in categories:
            if not ln.known(c):
                continue
            if c in ln.labels:
                if c in got:
                    cnt.tp[c] += 1
                else:
                    cnt.fn[c] += 1
            elif c in got:
                cnt.fp[c] += 1
    return cnt


def compare_rules(
    rules: Any, staged: Any, lines: Sequence[LabelledLine]
) -> tuple[Counts, Counts]:
    """Rules alone vs rules + semantic (any object with `detect(utterance)`), per category."""
    if hasattr(staged, "prime"):
        staged.prime([ln.text for ln in lines])
    base, both = [], []
    for i, ln in enumerate(lines):
        u = Utterance(i, 0.0, 1.0, ln.text)
        base.append({d.category for d in rules.detect(u)})
        both.append({d.category for d in staged.detect(u)})
    return score(lines, base), score(lines, both)


# ---------------------------------------------------------------- embeddings


def _embed_cached(texts: Sequence[str], cache: Path | None) -> npt.NDArray[np.float32]:
    emb = get_embedder(1)
    if cache is None:
        return emb.embed(texts)
    keys = [hashlib.sha1(f"{EMBED_MODEL_ID}|{t}".encode()).hexdigest() for t in texts]
    store: dict[str, npt.NDArray[np.float32]] = {}
    if cache.is_file():
        with np.load(cache) as z:
            store = {k: z[k] for k in z.files}
    missing = [i for i, k in enumerate(keys) if k not in store]
    if missing:
        E = emb.embed([texts[i] for i in missing])
        for row, i in enumerate(missing):
            store[keys[i]] = E[row]
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(cache.name + ".tmp.npz")
        np.savez(tmp, **store)  # type: ignore[arg-type]
        tmp.replace(cache)
    return np.stack([store[k] for k in keys]).astype(np.float32) if keys else np.zeros((0, 384), np.float32)


# ---------------------------------------------------------------- the whole run


def tune(opts: TuneOptions, rules: Any, progress: Callable[[str], None] = lambda _m: None) -> TuneResult:
    """Train on the tune half, choose thresholds by cross-validation, save, and score the test half."""
    from detectors.semantic import SemanticDetector, StagedRules

    g = gather(opts, rules)
    notes: list[str] = list(g.notes)
    tune_all = [ln for ln in g.lines if half_of(ln) == "tune"]
    test_all = [ln for ln in g.lines if half_of(ln) == "test"]
    tune_lines, dropped = drop_texts(tune_all, [ln.text for ln in test_all])
    if dropped:
        notes.append(f"{dropped} tune lines dropped: same text as a test-half line")
    tune_lines = merge_by_text(tune_lines)
    if g.skipped_context:
        notes.append(f"{g.skipped_context} corpus lines with a 'context' field left out of training")
    progress(f"embedding {len(tune_lines)} tune lines and {len(test_all)} test lines")
    E_tune = _embed_cached([ln.text for ln in tune_lines], opts.embed_cache)
    cats = CATEGORIES
    pos = np.array([[c in ln.labels for c in cats] for ln in tune_lines], dtype=bool)
    known = np.array([[ln.known(c) for c in cats] for ln in tune_lines], dtype=bool)
    ids = [ln.id for ln in tune_lines]

    S_tune = ngram_features([ln.text for ln in tune_lines])
    fold = near_duplicate_folds(E_tune, S_tune, ids, opts.folds)

    def pick(
        grid: Sequence[float], name: str, oof: Callable[[float], npt.NDArray[np.float64]]
    ) -> tuple[float, float, npt.NDArray[np.float64]]:
        best: tuple[float, float, npt.NDArray[np.float64]] | None = None
        for l2 in grid:
            P = oof(l2)
            mean_ap = mean_average_precision(P, pos, known)
            progress(f"{name} l2={l2:g}: out-of-fold mean average precision {mean_ap:.3f}")
            if best is None or mean_ap > best[1] + 1e-9:
                best = (l2, mean_ap, P)
        assert best is not None
        return best

    l2, map_e, P_e = pick(
        (opts.l2,) if opts.l2 is not None else L2_GRID,
        "embedding",
        lambda x: oof_probabilities(E_tune, pos, known, ids, l2=x, folds=opts.folds, fold=fold),
    )
    l2_ngram, map_n, P_n = pick(
        (opts.l2_ngram,) if opts.l2_ngram is not None else NGRAM_L2_GRID,
        "n-gram",
        lambda x: oof_ngram_probabilities(S_tune, pos, known, fold, l2=x),
    )
    P_k = oof_knn_probabilities(E_tune, pos, known, fold)
    P = (P_e + P_n + P_k) / 3.0
    cv_map = {
        "embedding": round(map_e, 4),
        "ngram": round(map_n, 4),
        "neighbours": round(mean_average_precision(P_k, pos, known), 4),
        "combined": round(mean_average_precision(P, pos, known), 4),
    }
    progress(f"combined (mean probability): out-of-fold mean average precision {cv_map['combined']:.3f}")
    thresholds = choose_thresholds(
        P, pos, known, cats, target=opts.target_precision, min_tp=opts.min_tp, floor=opts.floor
    )
    tune_cv = score(
        tune_lines, [{c for j, c in enumerate(cats) if P[i, j] >= thresholds[c]} for i in range(len(ids))]
    )
    head = SemanticHead.train(
        tune_lines,
        lambda t: _embed_cached(t, opts.embed_cache),
        l2=l2,
        l2_ngram=l2_ngram,
        thresholds=thresholds,
        embeddings=E_tune,
    )
    sidecar = {
        "created_ts": time.time(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "embed_model": EMBED_MODEL_ID,
        "trained_on": "tune half only (detectors.split.split_of)",
        "sources": g.sources,
        "tune_lines": len(tune_lines),
        "l2": l2,
        "l2_ngram": l2_ngram,
        "cv_mean_average_precision": cv_map,
        "target_precision": opts.target_precision,
        "folds": opts.folds,
        "fold_groups": f"near-duplicates together (n-gram cosine >= {NEAR_NGRAM}, embedding >= {NEAR_EMBED})",
        "rules_version": rules.version,
        "cv": {
            c: {"tp": tune_cv.tp[c], "fp": tune_cv.fp[c], "fn": tune_cv.fn[c]}
            for c in cats
            if thresholds[c] < OFF or tune_cv.fn[c]
        },
        "notes": notes,
    }
    digest = head.save(opts.out, sidecar)
    head = SemanticHead.load(opts.out)

    progress("scoring the test half")
    E_test = _embed_cached([ln.text for ln in test_all], opts.embed_cache)
    preds = head.predict_embedded([ln.text for ln in test_all], E_test) if test_all else []
    test = score(test_all, [set(p.flagged) for p in preds])

    real_test = [ln for ln in test_all if ln.id in g.real_ids]
    det = SemanticDetector(head=head)
    det.prime([ln.text for ln in real_test])
    staged = StagedRules(rules, det)
    rules_test, staged_test = compare_rules(rules, staged, real_test)
    return TuneResult(
        head, digest, l2, l2_ngram, cv_map, thresholds, tune_cv, test, rules_test, staged_test, g.sources, notes
    )


def result_json(r: TuneResult) -> dict[str, Any]:
    def counts(c: Counts) -> dict[str, Any]:
        return {
            cat: {"tp": c.tp[cat], "fp": c.fp[cat], "fn": c.fn[cat]}
            for cat in CATEGORIES
            if c.tp[cat] or c.fp[cat] or c.fn[cat]
        }

    return {
        "hash": r.hash,
        "l2": r.l2,
        "l2_ngram": r.l2_ngram,
        "cv_mean_average_precision": r.cv_map,
        "thresholds": {c: (None if t >= OFF else t) for c, t in r.thresholds.items()},
        "tune_cv": counts(r.tune_cv),
        "test": counts(r.test),
        "real_test_rules": counts(r.rules_test),
        "real_test_rules_semantic": counts(r.staged_test),
        "notes": r.notes,
    }


def dumps(obj: Mapping[str, Any]) -> str:
    return json.dumps(obj, ensure_ascii=False, sort_keys=True)
