"""`avid serve`: a local web app over a library and gallery (see avid/serve/app.py for the safety model).

Flask renders the pages (Jinja2 templates, a little vanilla JavaScript, all shipped in this package: no build step,
nothing fetched at run time). Werkzeug's threaded WSGI server, which comes with Flask, serves them: one user on
their own machine needs no more, and a video seeking while a thumbnail loads needs more than one thread.
"""
from __future__ import annotations

import ipaddress
import logging
import secrets
import shutil
import sqlite3
import sys
from pathlib import Path
from typing import Optional

from ..config import Config
from ..identity.store import StoreReader, existing_store, store_error


def exposure_warning(host: str) -> Optional[str]:
    """What to tell the user when ``host`` lets other machines connect (None for a loopback address)."""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if loopback:
        return None
    return (f"listening on {host}, not only on this machine: anyone who can reach it and has the URL with the "
            f"token can see and change the faces, voices and names of this library")


def open_store(db: str | Path) -> Path:
    """The store to serve: it must exist and be healthy (checked once here; pages then read it read-only)."""
    db = existing_store(Path(db).expanduser(), "no such library (process files into it first: avid process DIR "
                                                "--db ...)")
    try:
        with StoreReader(db) as store:       # refuses a damaged store
            if not {"people", "observations", "files"} <= store.tables():
                from ..errors import StoreError

                raise StoreError("not an avid library or gallery", db)
    except sqlite3.Error as exc:
        raise store_error(exc, db) from None
    return db


def serve(db: str | Path, cfg: Config, host: Optional[str] = None, port: Optional[int] = None,
          token: Optional[str] = None) -> None:
    """Serve the store at ``db`` until interrupted; prints the URL (with this session's token) first."""
    try:
        from werkzeug.serving import make_server

        from .app import create_app
    except ModuleNotFoundError as exc:      # Flask (and its Werkzeug) are the optional [serve] extra
        if (exc.name or "").split(".")[0] not in ("flask", "werkzeug", "jinja2"):
            raise
        from ..errors import AvidError

        raise AvidError(f"avid serve needs Flask ({exc.name} is not installed): pip install 'avid[serve]'") from None

    db = open_store(db)
    host = host or cfg.serve.host
    port = cfg.serve.port if port is None else port
    token = token or secrets.token_urlsafe(32)
    app = create_app(db, cfg, token)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)   # its request log would print each URL, token and all
    warning = exposure_warning(host)
    if warning:
        print(f"avid serve: warning: {warning}", file=sys.stderr, flush=True)
    server = make_server(host, port, app, threaded=True)
    shown = f"[{host}]" if ":" in host else host
    print(f"avid serve: {db} at http://{shown}:{server.server_port}/?token={token}", flush=True)
    print("avid serve: open that URL in a browser on this machine; Ctrl-C stops the server", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
        shutil.rmtree(app.extensions["avid"]["uploads"], ignore_errors=True)
