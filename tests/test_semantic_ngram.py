"""The semantic head's character n-gram model: features, solver, file format, cross-validation folds.

No embedding model here: embeddings are made-up unit vectors where a head needs them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from app.semantic_tune import _fold, near_duplicate_folds, oof_ngram_probabilities
from detectors.semantic import FORMAT, FORMAT_V1, LabelledLine, SemanticHead, fit_logistic, knn_vote
from detectors.semantic_ngram import (
    NGRAM_DIM,
    fit_logistic_cg,
    fit_ngram_heads,
    ngram_features,
    ngram_logits,
    ngram_row,
)

POSITIVE = [
    "这个茶能治高血压，喝了就能停药",
    "我们的酵素能治糖尿病",
    "这款药酒专治风湿，喝一个月就好",
    "吃了这个片剂，痛风再也不犯了",
    "这个贴膏能治颈椎病，贴三天就好",
    "我们家的蜂胶能治胃病",
]
NEGATIVE = [
    "这件衣服是纯棉的，穿着很舒服",
    "快递默认发顺丰，偏远地区慢一点",
    "今天的链接在购物车第三个",
    "尺码偏大，平时穿M的拍S就可以",
    "这个杯子容量是五百毫升",
    "点点关注，下次开播会有提醒",
]


def _lines() -> list[LabelledLine]:
    out = [LabelledLine(f"p{i}", t, frozenset({"false_claim"}), "test") for i, t in enumerate(POSITIVE)]
    return out + [LabelledLine(f"n{i}", t, frozenset(), "test") for i, t in enumerate(NEGATIVE)]


def _fake_embed(texts: Sequence[str]) -> npt.NDArray[np.float32]:
    """Deterministic unit vectors from the text's characters (a stand-in for e5: no model load)."""
    out = np.zeros((len(texts), 384), dtype=np.float32)
    for i, t in enumerate(texts):
        for ch in t:
            out[i, ord(ch) % 384] += 1.0
        out[i] /= max(float(np.linalg.norm(out[i])), 1e-9)
    return out


def test_ngram_features_are_normalized_text_hashed_stably() -> None:
    cols, vals = ngram_row("這個茶能治高血壓！")
    # traditional script and punctuation are normalized away: the same features as the simplified line
    assert (cols, vals) == ngram_row("这个茶 能治高血压")
    assert cols == sorted(cols) and all(0 <= c < NGRAM_DIM for c in cols)
    assert abs(sum(v * v for v in vals) - 1.0) < 1e-9
    # 1-, 2- and 3-grams of 8 characters: 8 + 7 + 6 columns (fewer only on a hash collision)
    assert 19 <= len(cols) <= 21
    # sublinear tf: a repeated character weighs more, but not twice as much
    c2, v2 = ngram_row("好好")
    w = dict(zip(c2, v2, strict=True))
    assert len(w) == 2  # 好 and 好好
    assert max(w.values()) / min(w.values()) == pytest.approx(1.0 + np.log(2.0))
    assert ngram_row("，。！") == ([], [])
    S = ngram_features(["这个茶能治高血压", "", "好好"])
    assert S.n == 3 and set(S.rows.tolist()) == {0, 2}


def test_cg_solver_matches_the_dense_newton_solver() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 6))
    y = (X[:, 0] + 0.5 * X[:, 1] + rng.normal(scale=0.5, size=80)) > 0.3
    w_ref, b_ref = fit_logistic(X, y, l2=2.0)
    wd, ws, b = fit_logistic_cg(X, None, y, l2_dense=2.0, l2_sparse=0.0)
    assert ws.shape == (0,)
    np.testing.assert_allclose(wd, w_ref, atol=1e-4)
    assert b == pytest.approx(b_ref, abs=1e-4)


def test_ngram_heads_learn_words_and_never_fire_without_examples() -> None:
    lines = _lines()
    S = ngram_features([ln.text for ln in lines])
    pos = np.array([[bool(ln.labels), False] for ln in lines])
    known = np.ones_like(pos)
    W, b = fit_ngram_heads(S, pos, known, l2=0.1)
    assert W.dtype == np.float16 and W.shape == (2, NGRAM_DIM)
    z = ngram_logits(ngram_features(["这个茶叶能治高血压", "这件T恤是纯棉的"]), W, b)
    assert z[0, 0] > 0 > z[1, 0]
    assert (z[:, 1] < -20).all() and not W[1].any()  # no positive: off
    again = fit_ngram_heads(S, pos, known, l2=0.1)
    assert (again[0] == W).all() and (again[1] == b).all()  # deterministic
    P = oof_ngram_probabilities(S, pos, known, np.arange(len(lines)) % 3, l2=0.1)
    assert P.shape == pos.shape and ((P >= 0) & (P <= 1)).all()


def test_head_file_carries_the_ngram_model_and_old_heads_still_load(tmp_path: Path) -> None:
    lines = _lines()
    head = SemanticHead.train(lines, _fake_embed, l2=1.0, thresholds={"false_claim": 0.5})
    assert head.has_ngrams
    path = tmp_path / "h.npz"
    digest = head.save(path)
    meta = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    assert meta["format"] == FORMAT and meta["l2_ngram"] == 0.1
    loaded = SemanticHead.load(path)
    assert loaded.hash == digest and loaded.has_ngrams
    texts = ["这个茶叶能治高血压", "这件T恤是纯棉的"]
    E = _fake_embed(texts)
    P = loaded.probabilities(E, texts)
    np.testing.assert_array_equal(P, head.probabilities(E, texts))
    # the mean of the two models and the neighbour vote
    d = head.data
    Pe = 1 / (1 + np.exp(-(E.astype(np.float64) @ d.W.T.astype(np.float64) + d.b)))
    Pn = 1 / (1 + np.exp(-head.ngram_logits(texts)))
    Pk = knn_vote(E, d.emb.astype(np.float32), d.pos, d.known, 100.0)
    np.testing.assert_allclose(P, (Pe + Pn + Pk) / 3, rtol=1e-6, atol=1e-12)
    assert P[0, 0] > 0.5 > P[1, 0]
    with pytest.raises(ValueError, match="needs the texts"):
        loaded.probabilities(E)
    # an embedding-only head is written and read in the format-1 layout
    old = SemanticHead.train(lines, _fake_embed, l2=1.0, l2_ngram=None)
    old.save(tmp_path / "old.npz")
    assert json.loads((tmp_path / "old.json").read_text(encoding="utf-8"))["format"] == FORMAT_V1
    reread = SemanticHead.load(tmp_path / "old.npz")
    assert not reread.has_ngrams
    np.testing.assert_array_equal(reread.probabilities(E), old.probabilities(E, texts))


def test_near_duplicates_share_a_fold() -> None:
    # ids whose own hashes fall in different folds (x0: 0, x2: 1, x3: 2, x5: 3)
    texts = ["这个茶能治高血压，喝了就能停药", "这件衣服是纯棉的", "这个茶能治高血压喝了就能停药啊",
             "今天的链接在购物车第三个", "这个杯子容量是五百毫升", "点点关注，下次开播会有提醒"]
    ids = [f"x{i}" for i in range(len(texts))]
    assert [_fold(i, 5) for i in ("x0", "x2", "x3", "x5")] == [0, 1, 2, 3]
    E = np.eye(len(texts), 384, dtype=np.float32)  # embeddings all far apart: the n-grams decide
    fold = near_duplicate_folds(E, ngram_features(texts), ids, 5)
    assert fold[0] == fold[2] == 0  # n-gram twins: the fold of the smaller id
    assert fold[3] == 2 and fold[5] == 3
    E[5] = E[3]  # an embedding twin
    fold = near_duplicate_folds(E, ngram_features(texts), ids, 5)
    assert fold[3] == fold[5] == 2


class _NoRules:
    """A rule set with no rules and no phrase tables (`tune` reads `rules`, `clean`, `version`, `detect`)."""

    version = "norules"
    rules: tuple[object, ...] = ()
    clean: tuple[object, ...] = ()

    def detect(self, utt: object) -> list[object]:
        return []


def test_tune_end_to_end_learns_from_the_corpus_and_from_reviewers(tmp_path: Path) -> None:
    """`livewatch tune semantic`'s work on a small corpus (real embedding model): a format-2 head, both
    L2 strengths from their grids, the tune half only, and reviewers' decisions joining the index."""
    from app.semantic_tune import NGRAM_L2_GRID, TuneOptions, tune
    from detectors.split import split_of
    from review.decisions import add_decision
    from store.db import Database
    from store.models import AlertRow, Broadcast

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    rows: list[dict[str, object]] = [
        {"id": f"c{i}", "text": t + ("" if i < 6 else "，家人们"), "labels": ["false_claim"]}
        for i, t in enumerate(POSITIVE * 2)
    ]
    rows += [
        {"id": f"n{i}", "text": t + ("" if i < 6 else "哦"), "labels": ["clean"]}
        for i, t in enumerate(NEGATIVE * 2)
    ]
    (corpus / "lines.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
    )
    db = Database.for_data_dir(tmp_path / "data")
    reviewed = "这个灵芝胶囊能治好肝硬化"
    with db.session() as s:
        s.add(Broadcast(id="b", stream_id=None, kind="file", source="x", created_ts=0.0, started_ts=None))
        s.flush()
        s.add(AlertRow(id="a3", broadcast_id="b", stream_id=None, category="false_claim", code="A3",
                       rule_id="semantic.false_claim", severity="low", source="speech", start_s=0.0, end_s=1.0,
                       start_ts=None, text=reviewed, context="", law="", rules_version="v", payload={},
                       created_ts=0.0))
        s.commit()
    with db.session() as s:
        add_decision(s, "a3", "confirmed", reviewer="ann")
    out = tmp_path / "head.npz"
    r = tune(TuneOptions(out=out, corpus_dir=corpus, clips=None, db=db, l2=10.0), _NoRules())
    assert r.l2 == 10.0 and r.l2_ngram in NGRAM_L2_GRID
    assert set(r.cv_map) == {"embedding", "ngram", "neighbours", "combined"}
    head = SemanticHead.load(out)
    assert head.has_ngrams and head.hash == r.hash
    meta = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    assert meta["format"] == FORMAT and meta["l2_ngram"] == r.l2_ngram
    assert meta["sources"]["reviewer decisions"] == {"tune": 1, "test": 0}
    # only tune-half lines are learnt; the confirmed alert (its id falls in the tune half) is an example
    assert all(split_of(i) == "tune" for i in head.data.ids)
    assert split_of("decision:a3") == "tune"
    row = head.data.texts.index(reviewed)
    assert head.data.ids[row] == "decision:a3" and head.data.labels[row] == "false_claim"
