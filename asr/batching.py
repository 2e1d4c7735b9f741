"""Cross-stream batching of Whisper: the windows of several broadcasts decoded as one CTranslate2 batch.

An ASR worker that serves many streams has several windows ready at once. CTranslate2's Whisper
encodes, decodes and aligns a *batch* of windows in about the time of a few single ones on the CPU
(bench/asr_batch.md: 1.7-2x windows/s at batch 8 on 2 cores) and much better on a GPU. Rather than a
second decoding path, the windows go through the one path there is (`LiveTranscript.step` →
`WhisperTranscriber.transcribe` → faster-whisper), each on its own thread, and the CTranslate2 model
under faster-whisper is a `BatchingWhisper`: its `encode`, `generate` and `align` calls wait at a
rendezvous until every thread of the round has made its call (or finished), and then run as one
batched call, whose results are handed back to each thread. Everything else (VAD, prompts, segments
by timestamps, word times, the hallucination filter, agreement and commits) is per window, as before.

    round = BatchRound(model): for each ready broadcast, a thread runs transcript.step(transcriber)
            encode ×N ─▶ one encode(batch) ─▶ generate ×N ─▶ one generate(batch) ─▶ align ×k ─▶ one align

What changes with batching: a window shorter than the longest of its batch is encoded with more zero
padding after it (as faster-whisper pads every window to 30 s without `trim_encoder`), and a prompt
whose previous text is shorter than the longest in its batch gets spaces before that text (CTranslate2
needs the start-of-transcript token at one place in all prompts of a batch); greedy output is the same
for equal windows and prompts, and near it otherwise. A call whose decoding reached the batch's longest token limit but not its own is decoded
again alone, so `max_new_tokens` means what it says.

Concurrency contract: `BatchRound.run` is called by one thread at a time (the ASR worker's decode
thread); it starts one short-lived thread per window and returns when all have finished. Calls to the
model from threads that are not in a round (a batch of one, or a monitor sharing the model) go
straight through. The model is otherwise used as faster-whisper uses it. The windows of a round call
`WhisperTranscriber.transcribe` at once from their threads: neither it nor faster-whisper's
`WhisperModel.transcribe` keeps per-call state on the instance (Silero VAD's ONNX session is safe to run
from several threads); only the transcriber's counters (`stats`) may miss an increment.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

__all__ = ["BatchRound", "BatchStats", "BatchingWhisper", "install_batching"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(slots=True)
class BatchStats:
    """Counts of the batched calls (written under the rendezvous lock)."""

    rounds: int = 0  # BatchRound.run calls
    calls: dict[str, int] = field(default_factory=dict)  # model calls made, by op
    items: dict[str, int] = field(default_factory=dict)  # windows they carried, by op
    redone: int = 0  # generations decoded again alone (their own token limit)

    def mean_batch(self, op: str = "generate") -> float:
        n = self.calls.get(op, 0)
        return self.items.get(op, 0) / n if n else 0.0


@dataclass(slots=True)
class _Call:
    op: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    result: Any = None
    error: BaseException | None = None
    done: bool = False


@dataclass(frozen=True, slots=True)
class _Slice:
    """Item `index` of a batched encoder output (what `encode` hands one thread)."""

    batch: Any  # ctranslate2.StorageView, batch × frames × width
    index: int
    size: int  # items in `batch`


class BatchingWhisper:
    """A CTranslate2 Whisper model whose encode/generate/align calls from the threads of a round are
    run as batches (see the module docstring). Other attributes are the model's."""

    def __init__(self, model: Any, *, sot: int, sot_prev: int, pad: int) -> None:
        self._model = model
        self.sot = sot  # <|startoftranscript|>: CTranslate2 wants it at one place in a batch's prompts
        self.sot_prev = sot_prev
        self.pad = pad  # what fills a shorter previous text (a space)
        self._cond = threading.Condition()
        self._members: set[int] = set()
        self._waiting: list[_Call] = []
        self._firing = False
        self.stats = BatchStats()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    # -- membership (BatchRound) -----------------------------------------------------------------------

    def join(self) -> None:
        with self._cond:
            self._members.add(threading.get_ident())

    def leave(self) -> None:
        with self._cond:
            self._members.discard(threading.get_ident())
            batch = self._ready()
        if batch:
            self._fire(batch)

    # -- the model's calls -----------------------------------------------------------------------------

    def encode(self, features: Any, *args: Any, **kwargs: Any) -> Any:
        return self._call("encode", (features, *args), kwargs)

    def generate(self, encoder_output: Any, *args: Any, **kwargs: Any) -> Any:
        return self._call("generate", (encoder_output, *args), kwargs)

    def align(self, encoder_output: Any, *args: Any, **kwargs: Any) -> Any:
        return self._call("align", (encoder_output, *args), kwargs)

    def detect_language(self, encoder_output: Any, *args: Any, **kwargs: Any) -> Any:
        return self._model.detect_language(self._whole(encoder_output), *args, **kwargs)

    def _call(self, op: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        me = threading.get_ident()
        with self._cond:
            inside = me in self._members and len(self._members) > 1
        if not inside:  # a batch of one: straight through
            return self._run_one(_Call(op, args, kwargs))
        call = _Call(op, args, kwargs)
        with self._cond:
            self._waiting.append(call)
            batch = self._ready()
        if batch:
            self._fire(batch)
        with self._cond:
            while not call.done:
                self._cond.wait()
        if call.error is not None:
            raise call.error
        return call.result

    def _ready(self) -> list[_Call]:
        """The calls to run now (lock held): every member of the round is waiting on one."""
        if self._firing or not self._waiting or len(self._waiting) < len(self._members):
            return []
        batch, self._waiting = self._waiting, []
        self._firing = True
        return batch

    def _fire(self, batch: list[_Call]) -> None:
        groups: dict[tuple[Any, ...], list[_Call]] = {}
        for c in batch:
            groups.setdefault(_group_key(c), []).append(c)
        for calls in groups.values():
            try:
                self._run_group(calls)
            except BaseException as e:  # every caller sees the failure, none hangs
                logger.exception("batched %s of %d window(s) failed", calls[0].op, len(calls))
                for c in calls:
                    c.error = e
        with self._cond:
            for c in batch:
                c.done = True
            self._firing = False
            again = self._ready()  # members that arrived while this batch ran
            self._cond.notify_all()
        if again:
            self._fire(again)

    def _count(self, op: str, n: int) -> None:
        with self._cond:
            self.stats.calls[op] = self.stats.calls.get(op, 0) + 1
            self.stats.items[op] = self.stats.items.get(op, 0) + n

    # -- running -----------------------------------------------------------------------------------------

    def _whole(self, encoder_output: Any) -> Any:
        if isinstance(encoder_output, _Slice):
            return _take(encoder_output.batch, [encoder_output.index])
        return encoder_output

    def _run_one(self, c: _Call) -> Any:
        src = c.args[0]
        if c.op != "encode" and isinstance(src, _Slice) and getattr(src.batch, "device", "cpu") != "cpu":
            # a row of a batch on the GPU cannot be copied out here: the batch runs, other rows dropped
            (self._generate if c.op == "generate" else self._align)([c])
            return c.result
        self._count(c.op, 1)
        fn = getattr(self._model, c.op)
        if c.op == "encode":
            return fn(*c.args, **c.kwargs)
        return fn(self._whole(c.args[0]), *c.args[1:], **c.kwargs)

    def _run_group(self, calls: list[_Call]) -> None:
        if len(calls) == 1:
            calls[0].result = self._run_one(calls[0])
            return
        if calls[0].op == "encode":
            self._encode(calls)
        elif calls[0].op == "generate":
            self._generate(calls)
        else:
            self._align(calls)

    def _encode(self, calls: list[_Call]) -> None:
        import ctranslate2

        feats = [np.asarray(c.args[0]) for c in calls]  # 1 × n_mels × frames each (on the CPU)
        frames = max(f.shape[-1] for f in feats)
        stacked = np.concatenate(
            [np.pad(f, ((0, 0), (0, 0), (0, frames - f.shape[-1]))) for f in feats], axis=0
        )
        self._count("encode", len(calls))
        out = self._model.encode(
            ctranslate2.StorageView.from_array(np.ascontiguousarray(stacked, dtype=np.float32)),
            *calls[0].args[1:],
            **calls[0].kwargs,
        )
        for i, c in enumerate(calls):
            c.result = _Slice(out, i, len(calls))

    def _partitions(self, calls: list[_Call]) -> list[tuple[Any, list[int], list[_Call]]]:
        """(encoder output, the rows of it that are the calls', the calls) per encoder batch: the batch
        itself when the calls are all of its items; on the CPU the calls' rows copied out; elsewhere the
        whole batch, the other rows given a copy of the first call's input and their results dropped."""
        parts: dict[int, list[_Call]] = {}
        for c in calls:
            src = c.args[0]
            parts.setdefault(id(src.batch if isinstance(src, _Slice) else src), []).append(c)
        out: list[tuple[Any, list[int], list[_Call]]] = []
        for group in parts.values():
            src = group[0].args[0]
            if not isinstance(src, _Slice):  # the same raw output twice: one at a time
                out.extend((g.args[0], [0], [g]) for g in group)
                continue
            rows = [g.args[0].index for g in group]
            if len(set(rows)) != len(rows):
                out.extend((self._whole(g.args[0]), [0], [g]) for g in group)
            elif sorted(rows) == list(range(src.size)) or getattr(src.batch, "device", "cpu") != "cpu":
                out.append((src.batch, rows, group))
            else:
                out.append((_take(src.batch, rows), list(range(len(rows))), group))
        return out

    def _generate(self, calls: list[_Call]) -> None:
        for enc, rows, group in self._partitions(calls):
            for sub in _by_prompt(group, self.sot, self.sot_prev):
                self._generate_part(enc, rows, group, sub)  # one part unless options differ

    def _generate_part(self, enc: Any, rows: list[int], group: list[_Call], sub: list[_Call]) -> None:
        """One CTranslate2 generate for the calls `sub` (a part of `group`, whose rows of `enc` are
        `rows`): a shorter previous text is filled with spaces before it, so that the start-of-transcript
        token is at the same place in all prompts (CTranslate2 requires it)."""
        prompts = [list(c.args[1][0]) for c in sub]
        width = max(_prev_len(p, self.sot, self.sot_prev) for p in prompts)
        prompts = [_pad_prev(p, width, self.sot, self.sot_prev, self.pad) for p in prompts]
        size = enc.shape[0]
        batch_prompts = [prompts[0]] * size
        row_of = dict(zip(map(id, group), rows, strict=True))
        for c, p in zip(sub, prompts, strict=True):
            batch_prompts[row_of[id(c)]] = p
        budgets = [int(c.kwargs.get("max_length", 448)) - len(c.args[1][0]) for c in sub]
        kwargs = {**sub[0].kwargs, "max_length": min(448, len(prompts[0]) + max(budgets))}
        self._count("generate", len(sub))
        if len(sub) < size:
            logger.debug("generate: %d of %d rows of an encoder batch", len(sub), size)
        results = self._model.generate(enc, batch_prompts, *sub[0].args[2:], **kwargs)
        for c, budget in zip(sub, budgets, strict=True):
            res = results[row_of[id(c)]]
            if max((len(s) for s in res.sequences_ids), default=0) > budget:
                # it decoded past its own token limit (the batch's is the longest): decoded again alone
                with self._cond:
                    self.stats.redone += 1
                c.result = self._run_one(c)
            else:
                c.result = [res]

    def _align(self, calls: list[_Call]) -> None:
        for enc, rows, group in self._partitions(calls):
            size = enc.shape[0]
            tokens: list[list[int]] = [list(group[0].args[2][0])] * size
            frames: list[int] = [int(group[0].args[3])] * size
            for c, r in zip(group, rows, strict=True):
                tokens[r] = list(c.args[2][0])
                frames[r] = int(c.args[3])
            self._count("align", len(group))
            results = self._model.align(
                enc, group[0].args[1], tokens, frames, *group[0].args[4:], **group[0].kwargs
            )
            for c, r in zip(group, rows, strict=True):
                c.result = [results[r]]


def _prev_len(prompt: list[int], sot: int, sot_prev: int) -> int:
    """Tokens of previous text in a faster-whisper prompt ([sot_prev, text..., sot, ...])."""
    if not prompt or prompt[0] != sot_prev or sot not in prompt:
        return 0
    return prompt.index(sot) - 1


def _pad_prev(prompt: list[int], width: int, sot: int, sot_prev: int, pad: int) -> list[int]:
    """The prompt with its previous text filled up to `width` tokens with `pad` before it (none: one is
    made), so that prompts of one batch line up at the start-of-transcript token."""
    n = _prev_len(prompt, sot, sot_prev)
    if n >= width:
        return prompt
    rest = prompt[n + 1 :] if n or (prompt and prompt[0] == sot_prev) else prompt
    return [sot_prev, *([pad] * (width - n)), *prompt[1 : n + 1], *rest]


def _by_prompt(calls: list[_Call], sot: int, sot_prev: int) -> list[list[_Call]]:
    """Calls whose prompts after the previous text have the same length (they always do when the
    decoding options are the same)."""
    out: dict[int, list[_Call]] = {}
    for c in calls:
        p = list(c.args[1][0])
        out.setdefault(len(p) - _prev_len(p, sot, sot_prev), []).append(c)
    return list(out.values())


def _take(batch: Any, rows: list[int]) -> Any:
    import ctranslate2

    if rows == list(range(batch.shape[0])):
        return batch
    return ctranslate2.StorageView.from_array(np.ascontiguousarray(np.asarray(batch)[rows]))


def _group_key(c: _Call) -> tuple[Any, ...]:
    """Calls that can share one batched call: the same op and options (a generate's token limit may
    differ, see `_generate_part`), one window each, encoder outputs of one width."""
    if c.op == "encode":
        return (
            "encode",
            repr(sorted(c.kwargs.items())),
            tuple(np.asarray(c.args[0]).shape[:-1]),
            len(c.args),
        )
    at = 1 if c.op == "generate" else 2
    single = len(c.args) > at and len(c.args[at]) == 1
    if not single:
        return ("alone", id(c))
    opts = {k: v for k, v in c.kwargs.items() if k != "max_length"}
    src = c.args[0]
    shape = tuple(src.batch.shape[1:]) if isinstance(src, _Slice) else tuple(src.shape[1:])
    extra = repr(c.args[1]) if c.op == "align" else ""
    return (c.op, repr(sorted(opts.items())), shape, extra, len(c.args))


def install_batching(whisper_model: Any) -> BatchingWhisper:
    """Put a `BatchingWhisper` under a faster-whisper `WhisperModel` (its `.model`); idempotent."""
    inner = whisper_model.model
    if isinstance(inner, BatchingWhisper):
        return inner
    tok = whisper_model.hf_tokenizer
    batching = BatchingWhisper(
        inner,
        sot=tok.token_to_id("<|startoftranscript|>"),
        sot_prev=tok.token_to_id("<|startofprev|>"),
        pad=tok.encode(" ", add_special_tokens=False).ids[0],
    )
    whisper_model.model = batching
    return batching


class BatchRound:
    """Runs one function per item on its own thread, the threads' model calls batched (module doc)."""

    def __init__(self, model: BatchingWhisper, max_threads: int = 64) -> None:
        self.model = model
        self.max_threads = max_threads
        self._pool = ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix="asr-batch")

    def run(self, fns: Sequence[Callable[[], T]]) -> list[T | BaseException]:
        """Each function's result, or the exception it raised; all have finished when this returns."""
        if not fns:
            return []
        if len(fns) > self.max_threads:  # every member must run at once, or the rendezvous never fills
            raise ValueError(f"a round of {len(fns)} windows is more than {self.max_threads} threads")
        self.model.stats.rounds += 1
        if len(fns) == 1:
            try:
                return [fns[0]()]
            except Exception as e:
                return [e]
        barrier = threading.Barrier(len(fns))

        def member(fn: Callable[[], T]) -> T | BaseException:
            self.model.join()
            barrier.wait()  # every member joined before anyone calls the model
            try:
                return fn()
            except Exception as e:
                return e
            finally:
                self.model.leave()

        return [f.result() for f in [self._pool.submit(member, fn) for fn in fns]]

    def close(self) -> None:
        self._pool.shutdown(wait=True)
