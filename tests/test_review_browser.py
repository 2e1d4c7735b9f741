"""The review page in a real browser (Debian's Chromium through Playwright) against the real
`livewatch review` command serving a real store: log in, open an alert, play and seek the clip, mark
it a false positive with the keyboard. Screenshots land in test-output/review/."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from review_corpus import CorpusStore, private_store
from sqlalchemy import select

from review.auth import hash_password
from store.models import AlertRow, Decision

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
OUT = ROOT / "test-output" / "review"
PASSWORD = "s3cret-for-the-browser"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.model,  # the shared store is scanned with the embedded Whisper model
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="Debian's chromium is not installed at /usr/bin/chromium"
    ),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> CorpusStore:
    # a store of its own: the API tests decide alerts in the session's shared store, and this flow
    # expects the alerts it opens to be undecided (it decides, then undoes back to unreviewed)
    return private_store(tmp_path_factory)


@pytest.fixture(scope="module")
def server(store: CorpusStore, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`livewatch review` as a user starts it, with a config holding one reviewer."""
    cfg = tmp_path_factory.mktemp("cfg") / "livewatch.yaml"
    cfg.write_text(
        f"review:\n  users:\n    - username: ann\n      password_hash: '{hash_password(PASSWORD)}'\n",
        encoding="utf-8",
    )
    port = _free_port()
    log = (tmp_path_factory.mktemp("log") / "review.log").open("w")
    env = {k: v for k, v in os.environ.items() if k not in ("LIVEWATCH_DATA_DIR", "LIVEWATCH_DB_URL")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "app.cli",
            "review",
            "--config",
            str(cfg),
            "--data-dir",
            str(store.data_dir),
            "--port",
            str(port),
        ],
        cwd=ROOT,
        stdout=log,
        stderr=log,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    raise RuntimeError(
                        "livewatch review did not start: " + Path(log.name).read_text(encoding="utf-8")
                    ) from None
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


def test_reviewer_logs_in_plays_seeks_and_marks_false_positive(
    server: str, browser, store: CorpusStore
) -> None:  # type: ignore[no-untyped-def]
    OUT.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server + "/")
    page.wait_for_selector("#login-view:not([hidden])")
    page.fill("#login-user", "ann")
    page.fill("#login-pass", "wrong password")
    page.click("#login-submit")
    page.wait_for_function("() => document.querySelector('#login-error').textContent.length > 0")
    page.fill("#login-pass", PASSWORD)
    page.click("#login-submit")

    # the queue: every alert, newest first, counts in the filters
    page.wait_for_selector("#queue-body tr")
    assert page.locator("#queue-body tr").count() == len(store.alerts)
    assert str(len(store.alerts)) in page.inner_text("#queue-count")
    for stream in ("room-a", "room-b"):
        assert f"{stream} ({sum(a.stream_id == stream for a in store.alerts)})" in page.inner_text(
            "#f-stream"
        )
    page.screenshot(path=str(OUT / "queue.png"), full_page=True)

    # keyboard: filter to one stream's video alerts, move down, open
    page.select_option("#f-stream", "room-a")
    in_room_a = sum(a.stream_id == "room-a" for a in store.alerts)
    page.wait_for_function(f"() => document.querySelectorAll('#queue-body tr').length === {in_room_a}")
    page.keyboard.press("j")
    selected = page.get_attribute("#queue-body tr.sel", "data-id")
    assert selected == page.locator("#queue-body tr").nth(1).get_attribute("data-id")
    # the queue's time is the broadcast moment (started 2024-05-01 10:00 Shanghai), not the scan's day
    assert "2024/5/1" in page.inner_text("#queue-body tr.sel td:first-child")
    # one `c` in the queue does not confirm an alert nobody opened
    page.keyboard.press("c")
    page.wait_for_function("() => document.querySelector('#queue-msg').textContent.includes('open the alert first')")
    with store.db.session() as s:
        assert list(s.scalars(select(Decision).where(Decision.alert_id == selected))) == []
    page.keyboard.press("Enter")
    page.wait_for_selector("#alert-view:not([hidden]) #player")
    assert page.url.endswith("#/alert/" + selected)

    # the clip loads (a decodable picture), starts at the pre-roll, and seeks
    page.wait_for_function("() => document.querySelector('#player').readyState >= 2", timeout=20000)
    info = page.evaluate("""() => { const v = document.querySelector('#player');
        return {tag: v.tagName, w: v.videoWidth, h: v.videoHeight, d: v.duration, t: v.currentTime}; }""")
    assert info["tag"] == "VIDEO" and info["w"] == 640 and info["h"] == 360
    assert info["d"] > 10 and info["t"] < 0.5
    hit = page.locator("#transcript .w.hit").first
    target = float(hit.get_attribute("data-offset"))
    hit.click()
    page.wait_for_function(
        f"() => Math.abs(document.querySelector('#player').currentTime - {target}) < 0.6", timeout=10000
    )
    page.keyboard.press("0")
    page.wait_for_function("() => document.querySelector('#player').currentTime < 0.3")
    page.evaluate("document.querySelector('#player').pause()")
    page.click("#to-moment")
    page.evaluate("document.querySelector('#player').pause()")
    moment = page.evaluate("document.querySelector('#player').currentTime")
    assert moment == pytest.approx(page.evaluate("() => state.alert.clip.moment_offset_s"), abs=0.3)
    assert moment >= 9.5  # the moment sits after the pre-roll
    page.wait_for_selector("#snapshot[src$='snapshot.jpg']")
    page.wait_for_function("() => document.querySelector('#snapshot').naturalWidth > 0")
    with store.db.session() as s:
        law = s.get(AlertRow, selected).law
    assert law and law in page.inner_text("#facts")
    page.screenshot(path=str(OUT / "alert.png"), full_page=True)

    # false positive with a note: type the note, leave the box, press f
    page.click("#note")
    page.keyboard.type("主播在念免责声明")
    page.keyboard.press("Escape")
    page.keyboard.press("f")
    page.wait_for_function("() => document.querySelector('#history').textContent.includes('误报')")
    with store.db.session() as s:
        rows = list(s.scalars(select(Decision).where(Decision.alert_id == selected)))
    assert [(d.decision, d.reviewer, d.note) for d in rows] == [("false_positive", "ann", "主播在念免责声明")]
    # the page stays on the decided alert (no timer moves it on), so the next click acts on it
    page.wait_for_timeout(700)  # longer than the old 350 ms auto-advance
    assert page.url.endswith("#/alert/" + selected)
    assert selected in page.inner_text("#facts")
    with page.expect_download() as dl:
        page.click("#package")
    assert selected in dl.value.suggested_filename
    # moving on is explicit
    page.keyboard.press("j")
    page.wait_for_url(lambda u: "#/alert/" in u and not u.endswith(selected), timeout=5000)
    nxt = page.url.split("#/alert/")[1]
    page.wait_for_function(f"() => document.querySelector('#facts').textContent.includes('{nxt}')")
    page.screenshot(path=str(OUT / "alert-next.png"), full_page=True)
    # an alert that has been open may be decided from the queue by key
    page.keyboard.press("u")
    page.wait_for_selector("#queue-view:not([hidden])")
    page.wait_for_function(f"() => document.querySelector('#queue-body tr.sel')?.dataset.id === '{nxt}'")
    page.keyboard.press("c")
    page.wait_for_function(
        f"() => document.querySelector(\"#queue-body tr[data-id='{nxt}']\").textContent.includes('confirmed')"
    )
    with store.db.session() as s:
        assert [d.decision for d in s.scalars(select(Decision).where(Decision.alert_id == nxt))] == ["confirmed"]
    # for a few seconds the decision can be taken back (z or the button); the trail keeps both rows
    page.wait_for_selector("#undo-bar:not([hidden])")
    assert nxt in page.inner_text("#undo-text")
    page.keyboard.press("z")
    page.wait_for_function(
        f"() => document.querySelector(\"#queue-body tr[data-id='{nxt}']\").textContent.includes('unreviewed')"
    )
    with store.db.session() as s:
        rows = list(s.scalars(select(Decision).where(Decision.alert_id == nxt)))
        assert [(d.decision, d.undoes_id) for d in rows] == [("confirmed", None), ("unreviewed", rows[0].id)]
    page.wait_for_selector("#undo-bar", state="hidden", timeout=10_000)

    # back in the queue the decided alert shows its status
    page.keyboard.press("u")
    page.wait_for_selector("#queue-view:not([hidden])")
    page.wait_for_function(
        f"() => document.querySelector(\"#queue-body tr[data-id='{selected}']\")"
        ".textContent.includes('false positive')"
    )

    page.goto(server + "/#/stats?since=2024-04-25&until=2024-05-31")
    page.wait_for_function(
        "() => document.querySelector('#chart').complete && document.querySelector('#chart').naturalWidth > 0"
    )
    page.wait_for_selector("#precision tr:nth-child(2)")
    page.screenshot(path=str(OUT / "stats.png"), full_page=True)
    assert not errors, errors


def test_price_history_alert_page_shows_earlier_claim_and_audio_clip(
    server: str, browser, store: CorpusStore
) -> None:  # type: ignore[no-untyped-def]
    OUT.mkdir(parents=True, exist_ok=True)
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = ctx.new_page()
    page.goto(server + "/")
    page.fill("#login-user", "ann")
    page.fill("#login-pass", PASSWORD)
    page.click("#login-submit")
    page.wait_for_selector("#queue-body tr")
    page.goto(server + f"/#/alert/{store.price_history_alert}")
    page.wait_for_selector("#price-card:not([hidden])")
    page.wait_for_function(
        "() => document.querySelector('#player') && document.querySelector('#player').readyState >= 1",
        timeout=20000,
    )
    assert page.evaluate("document.querySelector('#player').tagName") == "AUDIO"
    link = page.locator("#price a", has_text="告警").first
    earlier = store.by_id(store.price_history_alert).contradicts[0]["alert_id"]
    assert link.get_attribute("href") == f"#/alert/{earlier}"
    page.screenshot(path=str(OUT / "price-history.png"), full_page=True)
    link.click()
    page.wait_for_url(lambda u: u.endswith(f"#/alert/{earlier}"))
    page.wait_for_function(f"() => document.querySelector('#facts').textContent.includes('{earlier}')")
    ctx.close()
