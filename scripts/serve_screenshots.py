"""The README's screenshots of `avid serve`, from the demo sample's own library (`make demo` builds
out/demo/library.db from samples/interview.mp4): one small PNG per page, written to docs/.

A copy of the library is served, so the demo's own store is left as it is. Needs a Chromium (AVID_CHROMIUM or on
PATH) and the dev extra (Playwright).

    python scripts/serve_screenshots.py [--db out/demo/library.db] [--out docs]
"""
from __future__ import annotations

import argparse
import logging
import shutil
import sqlite3
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from avid.config import load_config  # noqa: E402

PAGES = ("home", "people", "person", "unknown", "recording", "search")


def small_png(source: Path, target: Path) -> int:
    """``source`` as a 256-colour PNG at ``target`` (screenshots are flat colours: a palette keeps them small)."""
    from PIL import Image

    with Image.open(source) as picture:
        picture.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(target, optimize=True)
    return target.stat().st_size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", type=Path, default=ROOT / "out" / "demo" / "library.db")
    parser.add_argument("--photo", type=Path, default=ROOT / "samples" / "astronaut.jpg", help="the photo searched")
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    args = parser.parse_args()
    if not args.db.exists():
        sys.exit(f"serve_screenshots: {args.db}: no demo library (run `make demo` first)")

    from playwright.sync_api import sync_playwright
    from werkzeug.serving import make_server

    from avid.serve.app import create_app

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    work = Path(tempfile.mkdtemp(prefix="serve-shots-"))
    try:
        db = work / "library.db"
        with sqlite3.connect(args.db) as source, sqlite3.connect(db) as target:
            source.backup(target)
        token = "screenshots"
        server = make_server("127.0.0.1", 0, create_app(db, load_config(), token, upload_dir=work / "up"),
                             threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{server.server_port}"
        with sqlite3.connect(db) as conn:
            person = conn.execute("SELECT id FROM people ORDER BY id LIMIT 1").fetchone()[0]
            recording = conn.execute("SELECT id FROM files WHERE path LIKE '%interview%'").fetchone()[0]
        from bench_serve import chromium

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium(), headless=True)
            page = browser.new_context(viewport={"width": 1000, "height": 640}).new_page()
            page.goto(f"{base}/?token={token}")
            shots = {"home": "/", "people": "/people", "person": f"/people/{person}", "unknown": "/unknown",
                     "recording": f"/recordings/{recording}", "search": "/search"}
            for name, path in shots.items():
                page.goto(base + path, wait_until="networkidle")
                if name == "recording":        # playing, a little after the start: the first turn highlighted
                    page.wait_for_function("() => document.getElementById('player').readyState >= 1")
                    page.evaluate("() => { const v = document.getElementById('player'); v.muted = true; "
                                  "v.currentTime = 3.0; }")
                    page.wait_for_function("() => document.querySelector('.turn.now') !== null")
                    page.wait_for_function("() => document.getElementById('player').readyState >= 2")
                if name == "search":
                    page.set_input_files("#photo-search input[type=file]", str(args.photo))
                    page.locator("#photo-search button").click()
                    page.wait_for_selector("#results, #no-results", timeout=300_000)
                raw = work / f"{name}.png"
                page.screenshot(path=str(raw), full_page=name == "recording")   # its transcript too
                size = small_png(raw, args.out / f"serve-{name}.png")
                print(f"{args.out / f'serve-{name}.png'}: {size // 1024} KB")
            browser.close()
        server.shutdown()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
