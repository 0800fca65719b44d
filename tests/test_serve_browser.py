"""`avid serve` in a real browser: headless Chromium from the system's packages, driven by Playwright (pointed at
that browser: nothing is downloaded). Skipped, with the reason, where no Chromium is installed (CI installs it).

Each test writes a screenshot of its page to out/test-screenshots/ (ignored by git; AVID_SCREENSHOTS chooses
another folder)."""
from __future__ import annotations

import os
import shutil
import sqlite3
import threading
from pathlib import Path

import pytest

from avid.cli import main
from avid.config import load_config

TOKEN = "browser-test-token"
ROOT = Path(__file__).resolve().parents[1]


def find_chromium() -> str | None:
    """The system Chromium: $AVID_CHROMIUM, else the first of the usual names on PATH."""
    if os.environ.get("AVID_CHROMIUM"):
        return os.environ["AVID_CHROMIUM"]
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (pip install -e '.[dev]')")
    executable = find_chromium()
    if executable is None:
        pytest.skip("no Chromium found (apt-get install chromium, or set AVID_CHROMIUM to the browser)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True,
                                             args=["--autoplay-policy=no-user-gesture-required"])
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def shots() -> Path:
    folder = Path(os.environ.get("AVID_SCREENSHOTS", ROOT / "out" / "test-screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture()
def server(served_library, tmp_path):
    """The app over a copy of the served library, on a free port of 127.0.0.1, in a thread of this process."""
    from werkzeug.serving import make_server

    from avid.serve.app import create_app

    db = tmp_path / "library.db"
    with sqlite3.connect(served_library["db"]) as source, sqlite3.connect(db) as target:
        source.backup(target)
    os.chmod(db, 0o600)
    http = make_server("127.0.0.1", 0, create_app(db, load_config(), TOKEN, upload_dir=tmp_path / "up"),
                       threaded=True)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    yield {"url": f"http://127.0.0.1:{http.server_port}", "db": db, **{k: v for k, v in served_library.items()
                                                                        if k != "db"}}
    http.shutdown()
    thread.join(timeout=10)


@pytest.fixture()
def page(browser, server):
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{server['url']}/?token={TOKEN}")     # the printed URL: the cookie is set from here on
    yield page
    context.close()
    assert not errors, f"JavaScript errors: {errors}"


def test_people_page_opens(page, server, shots):
    page.goto(f"{server['url']}/people")
    card = page.locator(".card.person", has_text="Grace Hopper")
    assert card.count() == 1
    page.wait_for_function("() => document.querySelector('.card.person img').naturalWidth > 0")   # her face, cut
                                                                                           # from the library
    page.screenshot(path=str(shots / "people.png"), full_page=True)
    card.click()
    page.wait_for_url("**/people/*")
    assert page.locator("#appearances a", has_text="interview.mp4").count() == 1
    page.screenshot(path=str(shots / "person.png"), full_page=True)


def test_naming_an_unknown_cluster_in_the_browser_shows_in_people_list(page, server, shots, capsys):
    page.goto(f"{server['url']}/unknown")
    cluster = page.locator("section.cluster", has_text="astronaut talk.mp4")
    assert cluster.locator(".faces img").count() == 2
    page.screenshot(path=str(shots / "unknown.png"), full_page=True)
    cluster.locator("input[name=name]").fill("Eileen Collins")
    cluster.locator("button", has_text="Name").click()
    page.wait_for_load_state()
    assert "named" in page.locator(".message").inner_text() and "Eileen Collins" in page.locator(".message").inner_text()
    assert page.locator("section.cluster", has_text="astronaut talk.mp4").count() == 0
    capsys.readouterr()
    assert main(["people", "list", "--db", str(server["db"])]) == 0
    assert "Eileen Collins" in capsys.readouterr().out
    assert main(["search", "--person", "Eileen Collins", "--db", str(server["db"])]) == 0
    assert "astronaut talk.mp4" in capsys.readouterr().out


def test_playing_a_recording_moves_the_timeline_highlight(page, server, shots):
    with sqlite3.connect(server["db"]) as conn:
        file_id = conn.execute("SELECT id FROM files WHERE path = ?", (str(server["interview"]),)).fetchone()[0]
    page.goto(f"{server['url']}/recordings/{file_id}")
    page.wait_for_function("() => document.getElementById('player').readyState >= 1")
    labels = {page.locator(".turn").nth(i).get_attribute("data-label") for i in range(page.locator(".turn").count())}
    assert len(labels) == 2 and "Grace Hopper" in labels          # the astronaut (unknown) and Grace Hopper
    page.evaluate("const v = document.getElementById('player'); v.muted = true; v.currentTime = 1.0; v.play()")
    page.wait_for_function("() => document.getElementById('player').currentTime > 1.5")
    first = page.locator(".turn.now")
    assert first.count() == 1 and first.get_attribute("data-label").startswith("unknown")
    assert page.locator("#boxes .box").count() == 1                     # the astronaut's face, drawn over the video
    assert page.locator("#transcript li.now").inner_text().lower().find("welcome") >= 0
    page.screenshot(path=str(shots / "recording.png"), full_page=True)
    page.evaluate("document.getElementById('player').currentTime = 10.0")
    page.wait_for_function("() => document.getElementById('player').currentTime > 10.5")
    assert page.locator(".turn.now").get_attribute("data-label") == "Grace Hopper"
    assert page.locator("#boxes .box.speaking").inner_text() == "Grace Hopper"
    assert "Grace Hopper: " in page.locator("#transcript li.now").inner_text()      # her line, under her name
    page.evaluate("document.getElementById('player').pause()")
    page.locator(".turn[data-label^=unknown]").first.click()            # a click on a turn plays it from its start
    page.wait_for_function("() => document.getElementById('player').currentTime < 8.0")
    assert page.locator(".turn.now").get_attribute("data-label").startswith("unknown")


def test_a_photo_search_returns_the_right_files(page, server, shots):
    page.goto(f"{server['url']}/search")
    page.set_input_files("#photo-search input[type=file]", str(server["astronaut_query"]))
    page.locator("#photo-search button").click()
    page.wait_for_selector("#results", timeout=120_000)      # the first search loads the face models
    files = page.locator("#results a.hit").all_inner_texts()
    assert set(files) == {"astronaut talk.mp4", "interview.mp4"}
    page.screenshot(path=str(shots / "search.png"), full_page=True)
    page.locator("#results a.hit", has_text="astronaut talk.mp4").click()
    page.wait_for_url("**/recordings/*")
    assert page.locator("h1").inner_text() == "astronaut talk.mp4"


def test_home_page_lists_the_recordings(page, server, shots):
    page.goto(f"{server['url']}/")
    assert page.locator("#recordings a").count() == 3
    page.screenshot(path=str(shots / "home.png"), full_page=True)
