"""How fast `avid serve`'s pages load in headless Chromium (the issue's goal: under 1 s each).

Without --db it builds a store of about --observations observations (default 1,000) from the project's own
generated media: two talking videos are processed for real, then more recordings are recorded in the store as
links to those videos, each with face tracks and speaker turns whose embeddings scatter around a few made-up
people (so that clustering finds unknown people), boxes and words; some clusters are then named. With --db it
serves that store as it is (e.g. a library of ../shared/data: `avid process ../shared/data --db shared.db`).

Each page is loaded --repeat times in a fresh browser tab; the figures are the Navigation Timing ones, from the
request to DOMContentLoaded and to the load event (images and scripts included). A photo search is timed too.

    python scripts/bench_serve.py [--observations 1000] [--db STORE] [--repeat 3] [--keep DIR]
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from avid.config import load_config  # noqa: E402


def build_store(folder: Path, observations: int, seed: int = 0) -> tuple[Path, Path]:
    """A library of about ``observations`` observations in ``folder``; returns (store, a query photo)."""
    from avid.identity.store import Gallery
    from avid.library.collection import process_collection
    from avid.library.unknown import name_cluster, unknown_clusters
    from tests import media as synthetic

    media = folder / "media"
    media.mkdir(parents=True)
    astronaut, hopper = synthetic.astronaut(), synthetic.grace_hopper()
    speech_a = synthetic.speak("Hello, and welcome aboard. I have flown on the space shuttle four times.",
                               astronaut.voice)
    speech_h = synthetic.speak("Thank you. I taught computers to understand English words.", hopper.voice)
    synthetic.write_talking_video(media / "talk 0.mp4", [synthetic.Segment(speech_a, speaker=0)], [astronaut],
                                  size=(640, 360))
    synthetic.write_talking_video(media / "talk 1.mp4", [synthetic.Segment(speech_a, speaker=0),
                                                         synthetic.Segment(speech_h, speaker=1)],
                                  [astronaut, hopper], size=(640, 360))
    query = synthetic.write_image(folder / "query.jpg", synthetic.astronaut_face()[20:480, 30:500].copy())
    db = folder / "library.db"
    cfg = load_config(overrides={"library": {"transcribe": True}})
    process_collection([media], db, cfg, workers=1, quiet=True)

    rng = np.random.default_rng(seed)
    with sqlite3.connect(db) as conn:
        faces = conn.execute("SELECT o.embedding, o.dim, o.backend, b.time, b.x1, b.y1, b.x2, b.y2 FROM "
                             "observations o JOIN library_faces b ON b.observation_id = o.id").fetchall()
        voices = conn.execute("SELECT embedding, dim, backend FROM observations WHERE modality = 'voice'").fetchall()
        have = conn.execute("SELECT count(*) FROM observations").fetchone()[0]
    face_dim, voice_dim = faces[0][1], voices[0][1]
    people = 25                  # made-up people: a face and a voice direction each
    face_centres = _unit(rng.normal(size=(people, face_dim)))
    voice_centres = _unit(rng.normal(size=(people, voice_dim)))
    per_file = 5                 # 2 face tracks and 3 speaker turns
    n_files = max(0, (observations - have) // per_file)
    sources = sorted(media.glob("*.mp4"))
    words = "the quick brown fox jumps over the lazy dog near the river".split()
    with Gallery(db) as gallery, gallery.transaction() as tx:
        for i in range(n_files):
            path = media / f"recording {i:04d}.mp4"
            os.link(sources[i % len(sources)], path)      # a real, playable file under its own name
            digest = f"bench{i:059d}"
            gallery.set_file_status(str(path), digest, "done")
            who = rng.choice(people, size=2, replace=False)
            face_ids = []
            for k, person in enumerate(who):
                vector = _unit(face_centres[person] + rng.normal(scale=0.02, size=face_dim))
                start = 9.0 * k
                obs = gallery.add_observation(None, "face", vector, faces[0][2], str(path), content_hash=digest,
                                              start=start, end=start + 8.5, track_id=k)
                tx.execute("INSERT INTO library_faces VALUES (?, ?, ?, ?, ?, ?)", (obs, 1.0 + 6.0 * k,
                                                                                   *faces[k % len(faces)][4:]))
                face_ids.append(obs)
            for k in range(3):
                person = who[k % 2]
                vector = _unit(voice_centres[person] + rng.normal(scale=0.04, size=voice_dim))
                start = 6.0 * k
                obs = gallery.add_observation(None, "voice", vector, voices[0][2], str(path), content_hash=digest,
                                              start=start, end=start + 5.5, paired_with=face_ids[k % 2])
                said = [(start + 0.4 * j, start + 0.4 * j + 0.3, " " + w) for j, w in
                        enumerate(rng.choice(words, size=8))]
                tx.execute("INSERT INTO library_words VALUES (?, ?)", (obs, json.dumps(said)))
                tx.execute("INSERT INTO library_text (text, observation_id) VALUES (?, ?)",
                           ("".join(w[2] for w in said).strip(), obs))
    clusters = unknown_clusters(db, cfg)
    for cluster, name in zip(clusters[:5], ["Ada Lovelace", "Charles Babbage", "Grace Hopper", "Alan Turing",
                                            "Katherine Johnson"]):
        name_cluster(db, cluster.id, name, cfg)
    unknown_clusters(db, cfg)
    return db, query


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def pages(db: Path) -> list[str]:
    """The pages to time: each route, with the person and the recording that have the most observations."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        person = conn.execute("SELECT person_id FROM observations WHERE person_id IS NOT NULL GROUP BY person_id "
                              "ORDER BY count(*) DESC LIMIT 1").fetchone()
        recording = conn.execute("SELECT f.id FROM files f JOIN observations o ON o.content_hash = f.content_hash "
                                 "GROUP BY f.id ORDER BY count(*) DESC LIMIT 1").fetchone()
        word = conn.execute("SELECT text FROM library_text LIMIT 1").fetchone() \
            if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'library_text'").fetchone() else None
    found = ["/", "/people", "/unknown", "/search"]
    if person:
        found.insert(2, f"/people/{person[0]}")
    if recording:
        found.append(f"/recordings/{recording[0]}")
    if word and word[0].split():
        found.append(f"/search?text={word[0].split()[0]}")
    return found


def chromium() -> str:
    for name in (os.environ.get("AVID_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    sys.exit("bench_serve: no Chromium found (apt-get install chromium, or set AVID_CHROMIUM)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", type=Path, help="serve this store instead of building one")
    parser.add_argument("--query", type=Path, help="photo for the timed search (default: the built store's)")
    parser.add_argument("--observations", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="build the store in this folder and keep it")
    parser.add_argument("--budget", type=float, default=1.0, help="seconds a page may take (exit 1 beyond)")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright
    from werkzeug.serving import make_server

    from avid.serve import open_store
    from avid.serve.app import create_app

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    work = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    try:
        query = args.query
        if args.db:
            db = open_store(args.db)
        else:
            folder = args.keep or work / "store"
            started = time.monotonic()
            db, query = build_store(folder, args.observations)
            print(f"built {db} in {time.monotonic() - started:.0f} s", file=sys.stderr)
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            counts = conn.execute("SELECT count(*), (SELECT count(*) FROM files), (SELECT count(*) FROM people) "
                                  "FROM observations").fetchone()
        print(f"store: {counts[0]} observations, {counts[1]} files, {counts[2]} people")
        token = "bench"
        server = make_server("127.0.0.1", 0, create_app(db, load_config(), token, upload_dir=work / "up"),
                             threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{server.server_port}"
        slowest = 0.0
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium(), headless=True)
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            context.new_page().goto(f"{base}/?token={token}")           # the cookie
            print(f"{'page':32} {'DOMContentLoaded (s)':>22} {'load (s)':>16}   (median / max of {args.repeat})")
            for path in pages(db):
                ready, loaded = [], []
                for _ in range(args.repeat):
                    tab = context.new_page()
                    response = tab.goto(base + path, wait_until="load")
                    assert response.ok, f"{path}: HTTP {response.status}"
                    timing = tab.evaluate("() => { const n = performance.getEntriesByType('navigation')[0]; "
                                          "return [n.domContentLoadedEventEnd - n.startTime, "
                                          "n.loadEventEnd - n.startTime]; }")
                    ready.append(timing[0] / 1000)
                    loaded.append(timing[1] / 1000)
                    tab.close()
                slowest = max(slowest, max(loaded))
                print(f"{path:32} {statistics.median(ready):>12.3f} / {max(ready):.3f} "
                      f"{statistics.median(loaded):>9.3f} / {max(loaded):.3f}")
            if query:
                for attempt in ("first" if args.db else "first (models loaded by the build)", "second"):
                    tab = context.new_page()
                    tab.goto(base + "/search")
                    tab.set_input_files("#photo-search input[type=file]", str(query))
                    started = time.monotonic()
                    tab.locator("#photo-search button").click()
                    tab.wait_for_selector("#results, #no-results, #error", timeout=300_000)
                    print(f"photo search, {attempt}: {time.monotonic() - started:.2f} s, "
                          f"{tab.locator('#results a.hit').count()} files found")
                    tab.close()
            browser.close()
        server.shutdown()
        print(f"slowest page load: {slowest:.3f} s (budget {args.budget:g} s)")
        return 0 if slowest <= args.budget else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
