"""`avid serve` over HTTP (Flask's test client and a real server): the token, read-only pages and POST-only
changes, media only from files the store records, uploads limited and deleted, and reading while a run writes.
The browser tests are in test_serve_browser.py."""
from __future__ import annotations

import contextlib
import http.client
import io
import itertools
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from werkzeug.test import EnvironBuilder, run_wsgi_app

from avid.cli import main
from avid.config import load_config
from avid.library.collection import library_contents, process_collection
from avid.serve import exposure_warning
from avid.serve.app import create_app

TOKEN = "test-token-0123456789"
TOKEN_HEADER = "X-Avid-Token"
JSON = {"Accept": "application/json"}
PAGES = ["/", "/people", "/people/1", "/unknown", "/recordings/1", "/recordings/3", "/search",
         "/search?text=welcome"]


@pytest.fixture()
def library(served_library, tmp_path) -> dict:
    """A private copy of the served library (its store and media), so that a test may change or move things."""
    folder = tmp_path / "recordings"
    shutil.copytree(served_library["folder"], folder)
    db = tmp_path / "library.db"
    with sqlite3.connect(served_library["db"]) as source, sqlite3.connect(db) as target:
        source.backup(target)
    with sqlite3.connect(db) as conn:      # the copy's files are where the copied media are
        conn.execute("UPDATE files SET path = replace(path, ?, ?)", (str(served_library["folder"]), str(folder)))
        conn.execute("UPDATE observations SET source = replace(source, ?, ?)",
                     (str(served_library["folder"]), str(folder)))
    os.chmod(db, 0o600)
    return {**served_library, "db": db, "folder": folder, "interview": folder / "interview.mp4",
            "talk": folder / "astronaut talk.mp4", "photo": folder / "hopper.jpg"}


@pytest.fixture()
def client(library, tmp_path):
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    app = create_app(library["db"], load_config(), TOKEN, upload_dir=uploads)
    client = app.test_client()
    client.uploads = uploads
    return client


def get(client, url: str, **kwargs):
    return client.get(url, headers={TOKEN_HEADER: TOKEN, **kwargs.pop("headers", {})}, **kwargs)


def store_state(db: Path) -> tuple:
    """What a request must not change: the library's contents, the people and who is named."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        people = conn.execute("SELECT id, name FROM people ORDER BY id").fetchall()
        named = conn.execute("SELECT id, person_id FROM observations ORDER BY id").fetchall()
        clusters = conn.execute("SELECT * FROM library_clusters ORDER BY observation_id").fetchall()
    return library_contents(db), people, named, clusters


def file_id(db: Path, path: Path) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return conn.execute("SELECT id FROM files WHERE path = ?", (str(path),)).fetchone()[0]


# ------------------------------------------------------------------------------------------------ the token


def test_every_page_needs_the_token_then_a_cookie_keeps_it(client):
    for url in PAGES + ["/media/1", "/faces/1.jpg", "/static/app.css"]:
        response = client.get(url)
        assert response.status_code == 401, url
        assert b"token" in response.data
    assert client.get("/people?token=wrong").status_code == 403
    assert client.get("/people", headers={TOKEN_HEADER: "wrong"}).status_code == 403
    assert client.get("/people", headers=JSON).get_json()["status"] == 401
    first = client.get(f"/people?token={TOKEN}")
    assert first.status_code == 200
    cookie = first.headers["Set-Cookie"]
    assert TOKEN in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert client.get("/people").status_code == 200              # the cookie, from now on
    assert first.headers["Referrer-Policy"] == "no-referrer" and first.headers["Cache-Control"] == "no-store"
    assert "script-src 'self'" in first.headers["Content-Security-Policy"]    # no script from anywhere else


def test_pages_answer_json_at_the_same_paths(client, library):
    home = get(client, "/", headers=JSON).get_json()
    assert home["files"] == {"done": 3, "failed": 0} and home["people"] == 1 and home["unknown_clusters"] == 2
    assert {r["name"] for r in home["recordings"]} == {"interview.mp4", "astronaut talk.mp4", "hopper.jpg"}
    people = get(client, "/people", headers=JSON).get_json()["people"]
    assert [p["name"] for p in people] == ["Grace Hopper"] and people[0]["files_seen"] == 1
    hopper = get(client, f"/people/{people[0]['id']}", headers=JSON).get_json()
    interview = next(f for f in hopper["files"] if f["name"] == "interview.mp4")
    assert interview["face"] and interview["voice"] and interview["face"][0][0] > 8.0   # she comes second
    unknown = get(client, "/unknown", headers=JSON).get_json()["clusters"]
    astronaut = unknown[0]
    assert {f["name"] for f in astronaut["files"]} == {"interview.mp4", "astronaut talk.mp4"}
    assert astronaut["n_face"] == 2 and astronaut["voices"]
    recording = get(client, f"/recordings/{file_id(library['db'], library['interview'])}", headers=JSON).get_json()
    assert recording["kind"] == "video" and not recording["missing"]
    speakers_in_order = [label for label, _ in itertools.groupby(t["label"] for t in recording["turns"])]
    assert speakers_in_order == [f"unknown {astronaut['id']}", "Grace Hopper"]     # a turn a sentence, each
    assert all(f["box"] and len(f["box"]) == 4 for f in recording["faces"])
    assert "welcome aboard" in recording["transcript"][0]["text"].lower()
    assert get(client, "/people/999", headers=JSON).status_code == 404
    assert get(client, "/recordings/999").status_code == 404
    for url in PAGES:
        assert get(client, url).status_code == 200, url
        assert get(client, url).mimetype == "text/html"


# ------------------------------------------------------------------------------------------------ changes


def test_naming_is_post_only_with_the_token_and_changes_what_search_finds(client, library, capsys):
    before = store_state(library["db"])
    assert get(client, "/unknown/1/name?name=Eileen").status_code == 405
    client.get(f"/?token={TOKEN}")                                   # a cookie, as a browser would have
    no_form_token = client.post("/unknown/1/name", data={"name": "Eileen Collins"})
    assert no_form_token.status_code == 403                          # a cookie alone is not enough to change
    assert store_state(library["db"]) == before
    assert main(["search", "--person", "Eileen Collins", "--db", str(library["db"])]) == 6   # nobody yet
    capsys.readouterr()

    named = client.post("/unknown/1/name", data={"name": "Eileen Collins", "token": TOKEN})
    assert named.status_code == 303 and "named" in named.headers["Location"]
    assert "Eileen Collins" in get(client, named.headers["Location"]).get_data(as_text=True)
    assert main(["people", "list", "--db", str(library["db"])]) == 0
    assert "Eileen Collins" in capsys.readouterr().out
    assert main(["search", "--person", "Eileen Collins", "--db", str(library["db"]), "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert {Path(h["file"]).name for h in hits} >= {"interview.mp4", "astronaut talk.mp4"}
    assert "hopper.jpg" not in {Path(h["file"]).name for h in hits}
    bad = client.post("/unknown/1/name", data={"name": "Again", "token": TOKEN}, headers=JSON)
    assert bad.status_code == 400 and "no unknown cluster 1" in bad.get_json()["error"]
    empty = client.post("/unknown/2/name", data={"name": "  ", "token": TOKEN})
    assert empty.status_code == 400 and b"cannot be empty" in empty.data


def test_merge_two_clusters_then_not_a_person(client, library):
    first = client.post("/unknown/2/merge", data={"into": "1", "token": TOKEN}, headers=JSON)
    assert first.status_code == 200 and first.get_json()["ok"]
    clusters = get(client, "/unknown", headers=JSON).get_json()["clusters"]
    assert [c["id"] for c in clusters] == [1]
    assert "hopper.jpg" in {f["name"] for f in clusters[0]["files"]}
    assert client.post("/unknown/1/merge", data={"into": "1", "token": TOKEN}).status_code == 400
    with sqlite3.connect(library["db"]) as conn:
        unnamed = conn.execute("SELECT count(*) FROM observations WHERE person_id IS NULL").fetchone()[0]
    gone = client.post("/unknown/1/dismiss", data={"token": TOKEN}, headers=JSON)
    assert gone.status_code == 200 and f"its {unnamed} observations" in gone.get_json()["message"]
    left = get(client, "/unknown", headers=JSON).get_json()
    assert left["clusters"] == [] and left["unnamed"] == 0
    again = client.post("/unknown/refresh", data={"token": TOKEN}, headers=JSON)
    assert again.get_json()["message"] == "found 0 unknown clusters"     # removed for good, not re-found
    home = get(client, "/", headers=JSON).get_json()
    assert home["observations"]["unnamed"] == 0 and home["people"] == 1


def test_unknown_clusters_come_a_page_at_a_time(library, tmp_path):
    cfg = load_config(overrides={"serve": {"clusters_per_page": 1}})
    client = create_app(library["db"], cfg, TOKEN, upload_dir=tmp_path / "up").test_client()
    first = get(client, "/unknown", headers=JSON).get_json()
    assert [c["id"] for c in first["clusters"]] == [1] and first["total"] == 2 and first["ids"] == [1, 2]
    assert 'href="/unknown?page=2">next' in get(client, "/unknown").get_data(as_text=True)
    assert [c["id"] for c in get(client, "/unknown?page=2", headers=JSON).get_json()["clusters"]] == [2]
    assert get(client, "/unknown?page=9", headers=JSON).get_json()["clusters"] == []
    assert get(client, "/unknown?page=x").status_code == 200


def test_merge_people_as_the_cli_does(client, library):
    client.post("/unknown/2/name", data={"name": "Grace", "token": TOKEN})
    people = {p["name"]: p["id"] for p in get(client, "/people", headers=JSON).get_json()["people"]}
    merged = client.post(f"/people/{people['Grace']}/merge", data={"into": "Grace Hopper", "token": TOKEN})
    assert merged.status_code == 303
    after = get(client, "/people", headers=JSON).get_json()["people"]
    assert [p["name"] for p in after] == ["Grace Hopper"] and after[0]["faces"] == 3
    assert client.post("/people/999/merge", data={"into": "Grace Hopper", "token": TOKEN}).status_code == 404


# ------------------------------------------------------------------------------------------------ media


@pytest.mark.parametrize("url", ["/media/../../etc/passwd", "/media/..%2f..%2fetc%2fpasswd", "/media/%2e%2e/etc/passwd",
                                 "/static/../../../../etc/passwd", "/static/..%2f..%2f..%2fetc%2fpasswd",
                                 "/recordings/..%2f..%2fetc%2fpasswd", "/faces/..%2f1.jpg", "/media/-1",
                                 "/media/999", "/voices/1.wav", "/faces/2.jpg"])
def test_no_path_from_a_request_reaches_the_disk(client, url):
    response = get(client, url)
    assert response.status_code == 404, url
    assert b"root:" not in response.data


def test_media_are_files_the_store_records_and_seek(client, library):
    interview = file_id(library["db"], library["interview"])
    whole = get(client, f"/media/{interview}")
    assert whole.status_code == 200 and whole.data == library["interview"].read_bytes()
    part = get(client, f"/media/{interview}", headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.data == library["interview"].read_bytes()[100:200]
    with sqlite3.connect(f"file:{library['db']}?mode=ro", uri=True) as conn:
        face, voice = (conn.execute(f"SELECT min(id) FROM observations WHERE modality = '{m}' AND content_hash = "
                                    "(SELECT content_hash FROM files WHERE id = ?)", (interview,)).fetchone()[0]
                       for m in ("face", "voice"))
    jpeg = get(client, f"/faces/{face}.jpg")
    assert jpeg.status_code == 200 and jpeg.data[:3] == b"\xff\xd8\xff"
    wav = get(client, f"/voices/{voice}.wav")
    assert wav.status_code == 200 and wav.data[:4] == b"RIFF"
    seconds = (len(wav.data) - 44) / 2 / 16000
    assert 1.0 < seconds <= load_config().serve.clip_seconds + 0.01


def test_a_relative_path_is_found_from_the_folder_the_server_runs_in(client, library, monkeypatch):
    interview = file_id(library["db"], library["interview"])
    with sqlite3.connect(library["db"]) as conn:      # as `avid process interview.mp4 --db ...` records it
        conn.execute("UPDATE files SET path = 'interview.mp4' WHERE id = ?", (interview,))
    monkeypatch.chdir(library["folder"])
    response = get(client, f"/media/{interview}")
    assert response.status_code == 200 and response.data == library["interview"].read_bytes()
    assert get(client, f"/recordings/{interview}", headers=JSON).get_json()["missing"] is False


def test_a_moved_or_deleted_file_is_said_on_its_pages(client, library):
    interview = file_id(library["db"], library["interview"])
    before = store_state(library["db"])
    library["interview"].rename(library["folder"] / "elsewhere.mp4")
    page = get(client, f"/recordings/{interview}").get_data(as_text=True)
    assert "moved or deleted" in page and "<video" not in page
    assert get(client, f"/recordings/{interview}", headers=JSON).get_json()["missing"] is True
    assert "file missing" in get(client, "/").get_data(as_text=True)
    media = get(client, f"/media/{interview}")
    assert media.status_code == 410 and b"moved or deleted" in media.data
    people = get(client, "/people", headers=JSON).get_json()["people"]
    assert "moved or deleted" in get(client, f"/people/{people[0]['id']}").get_data(as_text=True)
    assert get(client, "/unknown").status_code == 200
    assert store_state(library["db"]) == before


# ------------------------------------------------------------------------------------------------ search


def test_photo_search_finds_the_right_files_and_deletes_the_upload(client, library):
    with open(library["astronaut_query"], "rb") as photo:
        response = client.post("/search", data={"photo": (photo, "someone.jpg"), "token": TOKEN}, headers=JSON,
                               content_type="multipart/form-data")
    assert response.status_code == 200, response.get_json()
    hits = response.get_json()["hits"]
    seen = {h["name"] for h in hits if h["modality"] == "face"}
    assert seen == {"astronaut talk.mp4", "interview.mp4"}
    assert all(h["file_id"] for h in hits)
    assert list(client.uploads.iterdir()) == []


def test_voice_and_text_search(client, library, synthetic, grace_hopper_speech, tmp_path):
    clip = synthetic.write_wav(tmp_path / "voice.wav", grace_hopper_speech[: 16000 * 4])
    with open(clip, "rb") as voice:
        response = client.post("/search", data={"voice": (voice, "her voice.wav"), "token": TOKEN}, headers=JSON,
                               content_type="multipart/form-data")
    hits = response.get_json()["hits"]
    assert hits[0]["name"] == "interview.mp4" and hits[0]["modality"] == "voice"
    assert hits[0]["person"] == "Grace Hopper"
    said = get(client, "/search?text=ships+are+built&person=Grace+Hopper", headers=JSON).get_json()["text_hits"]
    assert [h["name"] for h in said] == ["interview.mp4"] and said[0]["speaker"] == "Grace Hopper"
    assert said[0]["start"] > 9.0
    assert list(client.uploads.iterdir()) == []


def test_bad_uploads_are_refused_with_a_clear_message_and_change_nothing(client, library, tmp_path):
    before = store_state(library["db"])
    text = tmp_path / "notes.jpg"
    text.write_text("not a picture at all\n")
    with open(text, "rb") as upload:
        response = client.post("/search", data={"photo": (upload, "notes.jpg"), "token": TOKEN},
                               content_type="multipart/form-data")
    assert response.status_code == 400
    assert "notes.jpg: not an image that can be read" in response.get_data(as_text=True)
    with open(text, "rb") as upload:
        response = client.post("/search", data={"photo": (upload, "notes.txt"), "token": TOKEN}, headers=JSON,
                               content_type="multipart/form-data")
    assert response.status_code == 400 and "notes.txt: not a photo" in response.get_json()["error"]
    empty = client.post("/search", data={"token": TOKEN}, headers=JSON)
    assert empty.status_code == 400 and "choose a photo" in empty.get_json()["error"]
    # 2 GB announced: refused on its Content-Length, before any of it is read
    environ = EnvironBuilder("/search", method="POST", input_stream=io.BytesIO(b"x" * 1024),
                             content_type="multipart/form-data; boundary=b", headers={TOKEN_HEADER: TOKEN}).get_environ()
    environ["CONTENT_LENGTH"] = str(2 * 1024 ** 3)      # the test client would put the true length back
    body, status, _ = run_wsgi_app(client.application, environ, buffered=True)
    assert status.startswith("413") and b"upload too large: at most 25 MB" in b"".join(body)
    del environ["HTTP_X_AVID_TOKEN"]      # nor is it read to look for a token in the form: refused as it stands
    body, status, _ = run_wsgi_app(client.application, environ, buffered=True)
    assert status.startswith("413")
    environ["wsgi.input"] = io.BytesIO(b"--b--\r\n")     # a small one without the token: 401
    environ["CONTENT_LENGTH"] = "7"
    body, status, _ = run_wsgi_app(client.application, environ, buffered=True)
    assert status.startswith("401")
    assert list(client.uploads.iterdir()) == []
    assert store_state(library["db"]) == before


# ------------------------------------------------------------------------------------------------ the server


def _start(args: list[str], db: Path) -> tuple[subprocess.Popen, str]:
    """`avid serve` in a subprocess: (process, the URL it printed)."""
    process = subprocess.Popen([sys.executable, "-m", "avid", "serve", "--db", str(db), "--port", "0", *args],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    found = re.search(r"(http://\S+)", line)
    if not found:
        process.kill()
        pytest.fail(f"no URL printed: {line!r} {process.stderr.read()!r}")
    return process, found.group(1)


def test_the_server_listens_on_loopback_and_warns_for_other_hosts(library):
    assert exposure_warning("127.0.0.1") is None and exposure_warning("::1") is None
    assert exposure_warning("localhost") is None and "not only on this machine" in exposure_warning("0.0.0.0")
    process, url = _start([], library["db"])
    try:
        host, port = re.match(r"http://([\d.]+):(\d+)/\?token=(\S+)", url).groups()[:2]
        assert host == "127.0.0.1"
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        conn.request("GET", "/people")
        assert conn.getresponse().status == 401
        conn.close()
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        conn.request("GET", url[len(f"http://{host}:{port}"):])
        response = conn.getresponse()
        assert response.status == 200 and b"Library" in response.read()
        conn.close()
        # a 2 GB upload over a real socket: answered 413 once the headers are in, the body never read
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        conn.putrequest("POST", "/search")
        conn.putheader("Content-Length", str(2 * 1024 ** 3))
        conn.putheader("Content-Type", "multipart/form-data; boundary=b")
        conn.putheader(TOKEN_HEADER, url.split("token=")[1])
        conn.endheaders()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):    # the server may close first
            conn.send(b"x" * (1 << 20))
        assert conn.getresponse().status == 413
        conn.close()
    finally:
        process.terminate()
        process.wait(timeout=30)
    process = subprocess.Popen([sys.executable, "-m", "avid", "serve", "--db", str(library["db"]), "--port", "0",
                                "--host", "0.0.0.0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        warning = process.stderr.readline()
        assert "warning: listening on 0.0.0.0, not only on this machine" in warning
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_a_store_removed_while_serving_is_said(client, library):
    assert get(client, "/people").status_code == 200
    for name in ("library.db", "library.db-wal", "library.db-shm"):
        (library["db"].parent / name).unlink(missing_ok=True)
    response = get(client, "/people", headers=JSON)
    assert response.status_code == 503 and "no longer there" in response.get_json()["error"]


def test_serve_refuses_a_missing_or_foreign_store(tmp_path, capsys):
    assert main(["serve", "--db", str(tmp_path / "none.db")]) == 6
    assert "no such library" in capsys.readouterr().err
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE t (x)")
    assert main(["serve", "--db", str(other)]) == 6
    assert "not an avid" in capsys.readouterr().err
    assert main(["serve", "--db", str(other), "--port", "70000"]) == 1


def test_pages_read_while_a_process_run_writes(client, library, synthetic, astronaut_speech):
    """A writer holding the store's write lock does not block a page; a running `avid process` shows its progress
    and the files it stores appear as they are stored."""
    writer = sqlite3.connect(library["db"], isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO people (name, created) VALUES ('Not Yet Committed', 'now')")
    try:
        for url in PAGES:
            started = time.monotonic()
            response = get(client, url)
            assert response.status_code == 200 and time.monotonic() - started < 5, url
            assert "Not Yet Committed" not in response.get_data(as_text=True)
    finally:
        writer.execute("ROLLBACK")
        writer.close()

    new = library["folder"] / "more"
    new.mkdir()
    for i in range(2):
        synthetic.write_wav(new / f"speech {i}.wav", astronaut_speech[: 16000 * (3 + i)])
    seen, errors = [], []
    run = threading.Thread(target=lambda: process_collection([new], library["db"], load_config(), workers=1,
                                                             quiet=True))
    run.start()
    while run.is_alive():
        for url in ("/progress", "/", "/unknown", "/people"):
            response = get(client, url, headers=JSON)
            if response.status_code != 200:
                errors.append((url, response.status_code))
            elif url == "/progress" and response.get_json():
                seen.append(response.get_json())
        time.sleep(0.05)
    run.join()
    assert not errors
    assert seen and seen[0]["total"] == 2 and all(s["done"] + s["failed"] + s["left"] == 2 for s in seen)
    assert get(client, "/progress", headers=JSON).get_json() is None
    assert get(client, "/", headers=JSON).get_json()["files"]["done"] == 5


@pytest.mark.shared_data
@pytest.mark.slow
def test_a_library_of_the_shared_data_is_served(shared_data, tmp_path):
    """Real media: the dev data's video clip and some of its face photos, processed, clustered and served."""
    from avid.library.unknown import unknown_clusters

    photos = sorted((shared_data / "faces").rglob("*.jpg"))[:6]
    db = tmp_path / "shared.db"
    cfg = load_config()
    summary = process_collection([shared_data / "video" / "short_hamilton_clip.mp4", *photos], db, cfg, workers=1,
                                 quiet=True)
    assert summary.processed, summary.lines()
    unknown_clusters(db, cfg)
    client = create_app(db, cfg, TOKEN, upload_dir=tmp_path / "up").test_client()
    home = get(client, "/", headers=JSON).get_json()
    assert home["files"]["done"] == len(summary.processed) and home["unknown_clusters"] > 0
    clip = next(r for r in home["recordings"] if r["name"] == "short_hamilton_clip.mp4")
    recording = get(client, f"/recordings/{clip['id']}", headers=JSON).get_json()
    assert recording["faces"] and recording["turns"]
    for url in ["/", "/people", "/unknown", f"/recordings/{clip['id']}", "/search"]:
        assert get(client, url).status_code == 200, url
    cluster = get(client, "/unknown", headers=JSON).get_json()["clusters"][0]
    for face in cluster["faces"][:3]:
        assert get(client, f"/faces/{face}.jpg").data[:3] == b"\xff\xd8\xff"
