"""Character n-gram features of a line, and a logistic regression that scales to them (numpy only).

The semantic head's second view of a line, beside the e5 embedding: hashed character 1–3-grams of
the *normalized* text (`detectors.normalize.normalize`: simplified script, NFKC, evasion variants
undone, punctuation and spaces removed), with sublinear term frequency ``1 + log(tf)`` and unit L2
norm. Chinese short texts carry most of their meaning in 2–3-character words, which such n-grams
see exactly; the embedding sees paraphrase. The hash is CRC-32 of the UTF-8 n-gram with its length
as a prefix, modulo `dim`, so features (and a head's weights) do not depend on the process, the
platform or ``PYTHONHASHSEED``.

`fit_logistic_cg` fits an L2-regularized, class-weighted logistic regression on a dense block and a
sparse block side by side, by Newton's method with conjugate-gradient steps (Hessian-vector products
only, so tens of thousands of hashed columns cost what their non-zeros cost). Deterministic: no
random start, no sampling, fixed iteration limits.

Pure functions; thread-safe.
"""

from __future__ import annotations

import math
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "NGRAM_DIM",
    "NGRAM_ORDERS",
    "Sparse",
    "fit_logistic_cg",
    "fit_ngram_heads",
    "ngram_features",
    "ngram_logits",
    "ngram_row",
]

NGRAM_DIM = 1 << 15
NGRAM_ORDERS = (1, 2, 3)

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Sparse:
    """A CSR-like row set: row `r` has columns ``cols[ptr[r]:ptr[r+1]]`` with values ``vals[...]``."""

    rows: npt.NDArray[np.int64]  # row of each non-zero (same order as cols)
    cols: npt.NDArray[np.int64]
    vals: FloatArray
    n: int
    dim: int

    def take(self, mask: npt.NDArray[np.bool_]) -> Sparse:
        """The rows where `mask` holds, renumbered 0.. in order."""
        new_index = np.cumsum(mask) - 1
        keep = mask[self.rows]
        return Sparse(new_index[self.rows[keep]], self.cols[keep], self.vals[keep], int(mask.sum()), self.dim)

    def matvec(self, v: FloatArray) -> FloatArray:
        return np.bincount(self.rows, weights=self.vals * v[self.cols], minlength=self.n).astype(
            np.float64, copy=False
        )

    def rmatvec(self, u: FloatArray) -> FloatArray:
        return np.bincount(self.cols, weights=self.vals * u[self.rows], minlength=self.dim).astype(
            np.float64, copy=False
        )

    def sq_rmatvec(self, u: FloatArray) -> FloatArray:
        """``(X * X).T @ u``: the diagonal of ``X.T diag(u) X``."""
        w = self.vals * self.vals * u[self.rows]
        return np.bincount(self.cols, weights=w, minlength=self.dim).astype(np.float64, copy=False)


def ngram_row(
    text: str, *, dim: int = NGRAM_DIM, orders: Sequence[int] = NGRAM_ORDERS
) -> tuple[list[int], list[float]]:
    """Hashed n-gram columns and values of one line (sorted by column; unit L2 norm)."""
    from detectors.normalize import normalize

    s = normalize(text).text
    counts: Counter[int] = Counter()
    for k in orders:
        for i in range(len(s) - k + 1):
            counts[zlib.crc32(f"{k}:{s[i : i + k]}".encode()) % dim] += 1
    if not counts:
        return [], []
    cols = sorted(counts)
    vals = [1.0 + math.log(counts[c]) for c in cols]
    norm = math.sqrt(sum(v * v for v in vals))
    return cols, [v / norm for v in vals]


def ngram_features(texts: Sequence[str], *, dim: int = NGRAM_DIM) -> Sparse:
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    for r, t in enumerate(texts):
        c, v = ngram_row(t, dim=dim)
        rows.extend([r] * len(c))
        cols.extend(c)
        vals.extend(v)
    return Sparse(
        np.asarray(rows, dtype=np.int64),
        np.asarray(cols, dtype=np.int64),
        np.asarray(vals, dtype=np.float64),
        len(texts),
        dim,
    )


def _sigmoid(z: FloatArray) -> FloatArray:
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * z)))


def fit_logistic_cg(
    dense: FloatArray | None,
    sparse: Sparse | None,
    y: npt.NDArray[np.bool_],
    *,
    l2_dense: float,
    l2_sparse: float,
    weights: FloatArray | None = None,
    newton_iters: int = 12,
    cg_iters: int = 60,
    tol: float = 1e-6,
) -> tuple[FloatArray, FloatArray, float]:
    """Class-weighted L2 logistic regression on ``[dense | sparse]``: (w_dense, w_sparse, b).

    Minimizes ``sum_i c_i * logloss_i + l2_dense/2 |w_dense|^2 + l2_sparse/2 |w_sparse|^2`` (bias not
    penalized), ``c_i`` the balanced class weight ``n / (2 n_class)`` times `weights`. Newton steps
    solved by Jacobi-preconditioned conjugate gradients, each step halved until the objective falls.
    """
    n = len(y)
    yf = y.astype(np.float64, copy=False)
    n_pos = float(yf.sum())
    c = np.where(y, n / (2.0 * max(n_pos, 1.0)), n / (2.0 * max(n - n_pos, 1.0)))
    if weights is not None:
        c = c * weights
    dd = 0 if dense is None else dense.shape[1]
    ds = 0 if sparse is None else sparse.dim
    reg = np.concatenate([np.full(dd, l2_dense), np.full(ds, l2_sparse), [1e-6]])
    theta = np.zeros(dd + ds + 1)

    def xv(v: FloatArray) -> FloatArray:
        z = np.full(n, v[-1])
        if dense is not None:
            z += dense @ v[:dd]
        if sparse is not None:
            z += sparse.matvec(v[dd : dd + ds])
        return z

    def xtu(u: FloatArray) -> FloatArray:
        parts = []
        if dense is not None:
            parts.append(dense.T @ u)
        if sparse is not None:
            parts.append(sparse.rmatvec(u))
        parts.append(np.array([u.sum()]))
        return np.concatenate(parts)

    def objective(th: FloatArray, z: FloatArray) -> float:
        # logloss = log(1 + e^-z) for y=1, log(1 + e^z) for y=0
        s = np.where(y, -z, z)
        loss = np.logaddexp(0.0, s)
        return float((c * loss).sum() + 0.5 * (reg * th * th).sum())

    z = xv(theta)
    f = objective(theta, z)
    for _ in range(newton_iters):
        p = _sigmoid(z)
        g = xtu(c * (p - yf)) + reg * theta
        gnorm = float(np.sqrt(g @ g))
        if gnorm < tol:
            break
        h = c * p * (1.0 - p)
        diag = reg.copy()
        if dense is not None:
            diag[:dd] += (dense * dense).T @ h
        if sparse is not None:
            diag[dd : dd + ds] += sparse.sq_rmatvec(h)
        diag[-1] += h.sum()
        # CG on H s = g
        s = np.zeros_like(theta)
        r = g.copy()
        zp = r / diag
        d = zp.copy()
        rz = float(r @ zp)
        for _ in range(cg_iters):
            hd = xtu(h * xv(d)) + reg * d
            alpha = rz / float(d @ hd)
            s += alpha * d
            r -= alpha * hd
            if float(np.sqrt(r @ r)) < 1e-3 * gnorm:
                break
            zp = r / diag
            rz_new = float(r @ zp)
            d = zp + (rz_new / rz) * d
            rz = rz_new
        step = 1.0
        for _ in range(20):
            cand = theta - step * s
            zc = xv(cand)
            fc = objective(cand, zc)
            if fc <= f:
                break
            step *= 0.5
        theta, z, f_prev, f = cand, zc, f, fc
        if f_prev - f < 1e-9 * max(1.0, abs(f)):
            break
    return theta[:dd], theta[dd : dd + ds], float(theta[-1])


def fit_ngram_heads(
    S: Sparse, pos: npt.NDArray[np.bool_], known: npt.NDArray[np.bool_], *, l2: float
) -> tuple[npt.NDArray[np.float16], npt.NDArray[np.float32]]:
    """One n-gram logistic regression per category column: (W (k, dim) float16, b (k,) float32).

    The weights are rounded to float16 here, as the head stores them, so that cross-validation scores
    what a saved head computes. A category with no positive (or no negative) line never fires.
    """
    k = pos.shape[1]
    W = np.zeros((k, S.dim), dtype=np.float16)
    b = np.full(k, -30.0, dtype=np.float32)
    for j in range(k):
        rows = known[:, j]
        y = pos[rows, j]
        if y.sum() == 0 or (~y).sum() == 0:
            continue
        _, ws, bias = fit_logistic_cg(None, S.take(rows), y, l2_dense=0.0, l2_sparse=l2)
        W[j] = ws.astype(np.float16)
        b[j] = np.float32(bias)
    return W, b


def ngram_logits(S: Sparse, W: npt.NDArray[np.float16], b: npt.NDArray[np.float32]) -> FloatArray:
    """(n, k) logits of the rows of `S` under n-gram heads (float64)."""
    Wt = W.astype(np.float64).T  # (dim, k)
    z = np.zeros((S.n, W.shape[0]))
    np.add.at(z, S.rows, S.vals[:, None] * Wt[S.cols])
    return z + b.astype(np.float64, copy=False)
