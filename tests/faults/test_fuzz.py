"""Fuzz pass (issue 12): the rules loader, the monitor config loader and the media probe.

Whatever bytes a site drops into its rules folder, config or recordings folder, livewatch answers with
its own one-line error (``RulePackError``, ``ConfigError``, ``MediaError``: what the CLI prints with
exit code 2) or a loaded result: never a traceback, a hang or runaway memory. Hypothesis drives each
target with unstructured text/bytes and with structured inputs built to get past the first checks
(valid-looking packs with random regexes, lexicon references and overrides; configs with the real
field names and random values; real media files truncated or with bytes flipped).

Bounded for CI: `max_examples` per target (``LIVEWATCH_FUZZ_EXAMPLES`` raises it for a longer local
run), a per-example deadline, no example database in the work tree, and a watchdog that dumps every
thread's stack and ends the run if a target hangs in C code where no deadline can reach it. Each
target prints its examples, time and peak-RSS growth (``pytest -s``); memory growth is asserted under
a generous bound.
"""

from __future__ import annotations

import faulthandler
import os
import resource
import string
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.config import ConfigError, RootConfig, load_config
from app.monitor_config import MonitorConfig, load_monitor_config
from detectors.rules import CATEGORIES, RulePackError, collect_errors, load_rules
from ingest.errors import MediaError
from ingest.ffmpeg import ffmpeg_exe, probe
from ingest.types import MediaInfo

EXAMPLES = int(os.environ.get("LIVEWATCH_FUZZ_EXAMPLES", "120"))
HANG_S = 120  # one target running this long is a hang: dump stacks and stop the run
RSS_GROWTH_MB = 300  # peak RSS growth allowed over one target (the loaders' own limits are far lower)

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=5000,  # ms per example; generous for loaded CI runners, far below "hangs"
    database=None,  # no .hypothesis/ in the work tree; failures print a reproduce blob
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Budget:
    """Counts examples; prints time and peak-RSS growth; a watchdog against hangs in C code."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.examples = 0
        self.outcomes: dict[str, int] = {}

    def __enter__(self) -> Budget:
        self.t0 = time.perf_counter()
        self.rss0 = _max_rss_mb()
        faulthandler.dump_traceback_later(HANG_S, exit=True)
        return self

    def count(self, outcome: str) -> None:
        self.examples += 1
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    def __exit__(self, *exc: object) -> None:
        faulthandler.cancel_dump_traceback_later()
        growth = _max_rss_mb() - self.rss0
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items()))
        print(
            f"\nfuzz {self.name}: {self.examples} examples in {time.perf_counter() - self.t0:.1f} s "
            f"({outcomes}); peak RSS +{growth:.0f} MB (now {_max_rss_mb():.0f} MB)"
        )
        if exc[0] is None:
            assert growth < RSS_GROWTH_MB, f"{self.name}: peak RSS grew {growth:.0f} MB"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


# -- text strategies ---------------------------------------------------------------------------------

CJK = "最好第一顶级国家级全网低价原价只要元块包治百病好吗不没"
YAML_PUNCT = ":-[]{},&*!|>'\"%@`#?\n\t "
yaml_chars = st.sampled_from(list(string.ascii_letters + string.digits + YAML_PUNCT + CJK + "\\.+()^$"))
yamlish_text = st.one_of(
    st.text(yaml_chars, max_size=400),
    st.text(max_size=200),  # any unicode, control characters and surrogates' neighbours included
    st.lists(
        st.sampled_from(
            [
                "pack: site\n",
                "rules:\n",
                "  - id: a.b\n",
                "    code: A1\n",
                "    severity: high\n",
                "    terms: [最好]\n",
                "    regex: ['(a+)+b']\n",
                "    should_flag: [最好]\n",
                "    should_not_flag: [很好]\n",
                "x: &a [1, 2]\n",
                "y: [*a, *a, *a]\n",
                "<<: *a\n",
                "z: !!python/object:os.system ls\n",
                "z: !!binary aGVsbG8=\n",
                "d: 2020-13-45\n",  # a timestamp-shaped scalar PyYAML cannot build (was a traceback)
                "i: !!int 0xzz\n",
                "t: !x 1\n",
                "--- \n",
                "...\n",
                "  " * 40 + "- deep\n",
                "k: " + "[" * 80 + "\n",
                "\ufeff",
                "\x00",
            ]
        ),
        max_size=30,
    ).map("".join),
)

word = st.text(st.sampled_from(list(CJK + "abc123")), min_size=1, max_size=6)
rule_id = st.one_of(
    *([st.from_regex(r"[a-z0-9][a-z0-9_.\-]{0,12}", fullmatch=True)] * 7),
    st.text(max_size=8),  # invalid ids as well
)
REGEX_PIECES = [
    "最",
    "好",
    "a",
    ".",
    ".*",
    ".+",
    "*",
    "+",
    "?",
    "{0,4}",
    "{2}",
    "{9999}",
    "(",
    ")",
    "(?:",
    "|",
    "[",
    "]",
    "[^好]",
    "\\d",
    "\\d+",
    "\\",
    "^",
    "$",
    "(a|aa)",
    "{num}",
    "{big}",
    "{n}",
    "{@absolute.standalone}",
    "{@nope.nope}",
    "(?P<x>",
    "(?P=x)",
    "\\1",
    "(?=",
    "(?!",
    "(?<=",
    "(?i)",
    "{",
    "}",
]
regex = st.lists(st.sampled_from(REGEX_PIECES), min_size=1, max_size=10).map("".join)
term = st.one_of(
    word,
    word.map(lambda w: w + "{n}"),
    st.sampled_from(["{@absolute.standalone}", "{@nope.x}", "{@absolute}", ""]),
    st.fixed_dictionaries({"term": word, "mode": st.sampled_from(["exact", "pinyin", "fuzzy", "bogus"])}),
)
json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
junk = st.recursive(
    json_scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly the well-formed value (so that some whole packs and configs get past validation and
    deeper checks run), sometimes junk of any type."""
    return st.sampled_from(range(8)).flatmap(lambda i: junk if i == 7 else strategy)


rule = st.fixed_dictionaries(
    {
        "id": rule_id,
        "code": maybe(st.sampled_from(["A1", "B3", "C12", "a1"])),
        "severity": maybe(st.sampled_from(["low", "medium", "high", "critical"])),
        "should_flag": maybe(st.lists(word, min_size=1, max_size=3)),
        "should_not_flag": maybe(st.lists(word, min_size=1, max_size=3)),
    },
    optional={
        "category": maybe(st.sampled_from(list(CATEGORIES))),
        "law": maybe(st.sampled_from(["广告法 第9条", "ad_law.art9", "nope.art1", "广告法 第9999条"])),
        "terms": maybe(st.lists(term, max_size=4)),
        "regex": maybe(st.lists(regex, max_size=3)),
        "exempt_regex": maybe(st.lists(regex, max_size=2)),
        "near": maybe(
            st.lists(
                st.fixed_dictionaries(
                    {
                        "a": st.lists(term, max_size=2),
                        "b": st.lists(term, max_size=2),
                        "within": junk | st.integers(-5, 300),
                    },
                    optional={"ordered": st.booleans()},
                ),
                max_size=2,
            )
        ),
        "require": maybe(st.lists(st.lists(term, max_size=2), max_size=2)),
        "unless": maybe(st.lists(word, max_size=2)),
        "exempt": maybe(st.lists(word, max_size=2)),
        "negation": maybe(
            st.one_of(
                st.booleans(),
                st.fixed_dictionaries(
                    {}, optional={"window": st.integers(-3, 40), "cues": st.lists(word, max_size=2)}
                ),
            )
        ),
        "mode": maybe(st.sampled_from(["exact", "pinyin", "fuzzy"])),
        "threshold": maybe(st.floats(-10, 110)),
        "sources": maybe(st.lists(st.sampled_from(["speech", "screen", "radio"]), max_size=2)),
        "enabled": st.booleans(),
    },
)
pack = st.fixed_dictionaries(
    {
        "pack": maybe(st.sampled_from(["site", "site.extra", "0x"])),
        "rules": maybe(st.lists(rule, max_size=4)),
    },
    optional={
        "category": maybe(st.sampled_from(list(CATEGORIES))),
        "law": maybe(st.sampled_from(["广告法 第9条", "nope"])),
        "clean": maybe(st.lists(word, max_size=3)),
        "defaults": maybe(
            st.fixed_dictionaries(
                {},
                optional={"mode": junk, "threshold": st.floats(0, 100), "exempt": st.lists(word, max_size=2)},
            )
        ),
        "overrides": maybe(
            st.fixed_dictionaries(
                {},
                optional={
                    "disable": st.lists(rule_id, max_size=2),
                    "enable": st.lists(rule_id, max_size=2),
                    "patch": st.dictionaries(
                        rule_id,
                        st.fixed_dictionaries(
                            {}, optional={"severity": junk, "threshold": junk, "law": junk}
                        ),
                        max_size=2,
                    ),
                },
            )
        ),
        "bogus_key": junk,
    },
)


def _dump(data: Any) -> str:
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


def _write(path: Path, payload: str | bytes) -> None:
    path.write_bytes(payload.encode("utf-8", "surrogatepass") if isinstance(payload, str) else payload)


# -- the rules loader --------------------------------------------------------------------------------


def _load_rules_dir(folder: Path, budget: Budget) -> None:
    """Both entry points: the first error (load) and every error (`rules check`)."""
    try:
        loaded = load_rules([folder])
    except RulePackError as e:
        assert str(e).startswith(str(folder)), str(e)
        budget.count("refused")
    else:
        assert loaded.errors == []
        budget.count("loaded")
    for e in collect_errors([folder]):
        assert isinstance(e, RulePackError) and str(e).startswith(str(folder)), str(e)


def test_fuzz_rules_loader_with_yamlish_text(workdir: Path) -> None:
    folder = workdir / "rules_text"
    folder.mkdir()
    with Budget("rules loader, YAML-ish text") as budget:

        @FUZZ
        @given(yamlish_text)
        def run(text: str) -> None:
            _write(folder / "site.yaml", text)
            _load_rules_dir(folder, budget)

        run()


def test_fuzz_rules_loader_with_structured_packs(workdir: Path) -> None:
    folder = workdir / "rules_packs"
    folder.mkdir()
    with Budget("rules loader, structured packs") as budget:

        @FUZZ
        @given(pack, st.none() | pack)
        def run(first: dict[str, Any], second: dict[str, Any] | None) -> None:
            for old in folder.glob("*.yaml"):
                old.unlink()
            _write(folder / "a.yaml", _dump(first))
            if second is not None:
                _write(folder / "b.yaml", _dump(second))
            _load_rules_dir(folder, budget)

        run()


# -- the monitor config loader -----------------------------------------------------------------------


def _value_for(ann: Any) -> st.SearchStrategy[Any]:
    """A plausible value for a field's annotation (plain types only), else junk."""
    import typing

    args = [a for a in typing.get_args(ann) if a is not type(None)]
    if typing.get_origin(ann) in (typing.Union, type(int | None)) and len(args) == 1:
        return st.none() | _value_for(args[0])
    if ann is bool:
        return st.booleans()
    if ann is int:
        return st.integers(-5, 10_000)
    if ann is float:
        return st.floats(-5, 10_000)
    if ann is str:
        return st.text(max_size=12)
    if ann is Path:
        return st.sampled_from(["/tmp/x", "rel/dir", "", "\x00bad", "~/data"])
    if typing.get_origin(ann) is typing.Literal:
        return st.sampled_from(typing.get_args(ann))
    return junk


def _model_dict(model: Any, depth: int = 0) -> st.SearchStrategy[dict[str, Any]]:
    """Random subsets of a pydantic model's real field names, nested models followed two levels deep."""
    from pydantic import BaseModel

    optional: dict[str, st.SearchStrategy[Any]] = {}
    for name, info in model.model_fields.items():
        ann = info.annotation
        if depth < 2 and isinstance(ann, type) and issubclass(ann, BaseModel):
            optional[name] = maybe(_model_dict(ann, depth + 1))
        else:
            optional[name] = maybe(_value_for(ann))
    optional["not_a_field"] = junk
    return st.fixed_dictionaries({}, optional=optional)


stream_entry = st.fixed_dictionaries(
    {
        "id": maybe(st.sampled_from(["room", "room2", ""])),
        "url": maybe(st.sampled_from(["http://127.0.0.1:1/x.m3u8", "/tmp/x.ts", ""])),
    },
    optional={"enabled": junk, "pre_roll_s": junk, "post_roll_s": junk, "segment_s": junk, "extra": junk},
)
monitor_dict = st.builds(
    lambda base, streams: {**base, "streams": streams} if streams is not None else base,
    _model_dict(MonitorConfig),
    st.none() | st.lists(stream_entry, max_size=3) | junk,
)


def _load_config(path: Path, loader: Callable[[Path], Any], budget: Budget) -> None:
    try:
        cfg = loader(path)
    except ConfigError as e:
        assert str(e).startswith(str(path)), str(e)
        budget.count("refused")
        return
    budget.count("loaded")
    # what the monitor and scan do next with a loaded config must not fail either
    cfg.asr_signature()
    cfg.video_signature()
    if isinstance(cfg, MonitorConfig):
        for s in cfg.streams_resolved():
            cfg.pre_post_roll(s)
        cfg.live_asr_config()


def test_fuzz_monitor_config_loader_with_yamlish_text(workdir: Path) -> None:
    path = workdir / "monitor_text.yaml"
    with Budget("monitor config loader, YAML-ish text") as budget:

        @FUZZ
        @given(yamlish_text)
        def run(text: str) -> None:
            _write(path, text)
            _load_config(path, load_monitor_config, budget)
            _load_config(path, load_config, budget)

        run()


def test_fuzz_monitor_config_loader_with_structured_configs(workdir: Path) -> None:
    path = workdir / "monitor.yaml"
    with Budget("monitor config loader, structured configs") as budget:

        @FUZZ
        @given(monitor_dict, st.booleans())
        def run(data: dict[str, Any], as_root: bool) -> None:
            if as_root:
                data = {k: v for k, v in data.items() if k in RootConfig.model_fields or k == "not_a_field"}
            _write(path, _dump(data))
            _load_config(path, load_config if as_root else load_monitor_config, budget)

        run()


# -- the media probe ---------------------------------------------------------------------------------

MEDIA_EXT = [".mp4", ".ts", ".flv", ".mkv", ".m4a", ".wav", ".flac", ".mp3", ".webm", ".mov", ".aac", ".ogg"]

# lavfi sources, a fraction of a second each: the seeds that truncation and bit flips start from
SEEDS = {
    "a.wav": ["-f", "lavfi", "-i", "sine=f=440:d=0.4", "-c:a", "pcm_s16le"],
    "a.flac": ["-f", "lavfi", "-i", "sine=f=440:d=0.4"],
    "a.m4a": ["-f", "lavfi", "-i", "sine=f=440:d=0.4", "-c:a", "aac"],
    "av.mp4": [
        "-f",
        "lavfi",
        "-i",
        "testsrc=s=64x48:d=0.4:r=10",
        "-f",
        "lavfi",
        "-i",
        "sine=d=0.4",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-c:a",
        "aac",
        "-shortest",
    ],
    "av.ts": [
        "-f",
        "lavfi",
        "-i",
        "testsrc=s=64x48:d=0.4:r=10",
        "-f",
        "lavfi",
        "-i",
        "sine=d=0.4",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-c:a",
        "aac",
        "-shortest",
    ],
    "av.flv": [
        "-f",
        "lavfi",
        "-i",
        "testsrc=s=64x48:d=0.4:r=10",
        "-f",
        "lavfi",
        "-i",
        "sine=d=0.4",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-c:a",
        "aac",
        "-shortest",
    ],
    "av.mkv": [
        "-f",
        "lavfi",
        "-i",
        "testsrc=s=64x48:d=0.4:r=10",
        "-f",
        "lavfi",
        "-i",
        "sine=d=0.4",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-c:a",
        "aac",
        "-shortest",
    ],
}


@pytest.fixture(scope="module")
def media_seeds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("seeds")
    out: dict[str, bytes] = {}
    for name, args in SEEDS.items():
        dest = folder / name
        proc = subprocess.run(
            [ffmpeg_exe(), "-v", "error", "-y", *args, str(dest)],
            capture_output=True,
            timeout=60,
            check=False,
        )
        if proc.returncode == 0 and dest.stat().st_size > 0:
            out[name] = dest.read_bytes()
    assert out, "ffmpeg made none of the seed files"
    return out


@st.composite
def damaged(draw: st.DrawFn, seeds: dict[str, bytes]) -> bytes:
    data = bytearray(seeds[draw(st.sampled_from(sorted(seeds)))])
    how = draw(st.sampled_from(["truncate", "flip", "splice", "both"]))
    if how in ("truncate", "both"):
        data = data[: draw(st.integers(1, len(data)))]
    if how in ("flip", "both"):
        for _ in range(draw(st.integers(1, 16))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(st.integers(0, 255))
    if how == "splice":
        i = draw(st.integers(0, len(data)))
        data[i:i] = draw(st.binary(min_size=1, max_size=256))
    return bytes(data)


def _probe(path: Path, budget: Budget) -> None:
    try:
        info = probe(path)
    except MediaError as e:
        assert str(e).startswith(str(path)), str(e)
        assert "\n" not in str(e), str(e)
        budget.count("refused")
    else:
        assert isinstance(info, MediaInfo) and info.duration_s > 0
        budget.count("probed")


def _media_paths(workdir: Path) -> Iterator[Path]:
    for ext in MEDIA_EXT:
        yield workdir / f"media{ext}"


def test_fuzz_media_probe_with_random_bytes(workdir: Path) -> None:
    paths = list(_media_paths(workdir))
    with Budget("media probe, random bytes") as budget:

        @FUZZ
        @given(st.binary(min_size=1, max_size=4096), st.sampled_from(paths))
        def run(data: bytes, path: Path) -> None:
            _write(path, data)
            _probe(path, budget)

        run()


def test_fuzz_media_probe_with_damaged_media(workdir: Path, media_seeds: dict[str, bytes]) -> None:
    paths = list(_media_paths(workdir))
    with Budget("media probe, truncated and damaged media") as budget:

        @FUZZ
        @given(damaged(media_seeds), st.sampled_from(paths))
        def run(data: bytes, path: Path) -> None:
            _write(path, data)
            _probe(path, budget)

        run()
