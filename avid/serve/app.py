"""The web app (Flask): pages over the library and gallery, and the naming actions.

Safety model (README "Web app"):
- every request needs the session's secret token, given once as ``?token=...`` (then kept in a cookie for this
  port, HttpOnly, SameSite=Strict) or as the ``X-Avid-Token`` header; without it 401, with a wrong one 403;
- every page is read-only (read-only SQLite connections); the only changes are POSTs (naming, merging, "not a
  person", clustering again), which also need the token in the form or header, not only the cookie, so that no
  other site can make the browser send one;
- media are served by the id of a file recorded in the store, never by a path from the request;
- uploads for search are size-limited (``serve.max_upload_mb``), kept in a private temporary folder, and deleted as
  soon as the query is answered.
"""
from __future__ import annotations

import contextlib
import hmac
import os
import shutil
import sqlite3
import tempfile
import threading
import zlib
from pathlib import Path
from typing import Optional
from urllib.parse import quote

from flask import Flask, Response, abort, g, jsonify, redirect, render_template, request, send_file, url_for
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from ..config import Config
from ..errors import AvidError
from ..identity.store import store_error
from ..io.media import AUDIO_EXTENSIONS, IMAGE_EXTENSIONS, VIDEO_EXTENSIONS
from . import clips, data

TOKEN_HEADER = "X-Avid-Token"


def create_app(db: str | Path, cfg: Config, token: str, upload_dir: Optional[Path] = None) -> Flask:
    """The app over the store at ``db`` (which must exist), answering only requests that carry ``token``."""
    db = Path(db).expanduser().resolve()
    scfg = cfg.serve
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = int(scfg.max_upload_mb * 1024 * 1024)   # refused before the body is read
    app.config["MAX_FORM_MEMORY_SIZE"] = 1024 * 1024
    uploads = Path(upload_dir) if upload_dir else Path(tempfile.mkdtemp(prefix="avid-serve-"))   # mode 0700
    uploads.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(uploads, 0o700)
    cookie = f"avid_token_{zlib.crc32(str(db).encode()):08x}"   # one per store: cookies ignore the port, so two
                                                                   # apps on one host would overwrite each other's
    thumbs = clips.MemoryCache(int(scfg.thumbnail_cache))
    search_lock = threading.Lock()       # one search at a time: they share the models (and about 1 GB of memory)
    app.extensions["avid"] = {"db": db, "cfg": cfg, "uploads": uploads, "cookie": cookie}

    # ------------------------------------------------------------------------------------------ the token
    def _given_token() -> tuple[Optional[str], str]:
        """The token this request carries, and how; the body (a form) is read only when nothing else has it."""
        for how, value in (("header", request.headers.get(TOKEN_HEADER)), ("url", request.args.get("token")),
                           ("cookie", request.cookies.get(cookie))):
            if value:
                return value, how
        if request.method == "POST" and request.form.get("token"):
            return request.form["token"], "form"
        return None, ""

    @app.before_request
    def check_token():
        given, how = _given_token()
        if given is None:
            return _error(401, "this page needs the token: open the URL that `avid serve` printed "
                               "(http://HOST:PORT/?token=...)")
        if not hmac.compare_digest(given.encode(), token.encode()):
            return _error(403, "wrong token: open the URL that `avid serve` printed")
        if request.method == "POST":
            form_token = request.headers.get(TOKEN_HEADER) or request.form.get("token") or ""
            if not hmac.compare_digest(form_token.encode(), token.encode()):     # a cookie alone is not enough
                return _error(403, "a change needs the token in the form (reload the page and try again)")
        g.token_in_url = how == "url"

    @app.after_request
    def keep_token(response: Response):
        if getattr(g, "token_in_url", False):
            response.set_cookie(cookie, token, httponly=True, samesite="Strict", path="/")
        response.headers["Cache-Control"] = "no-store"          # faces and voices are not kept in caches
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"     # the token in a URL never leaves in a Referer
        response.headers["Content-Security-Policy"] = ("default-src 'self'; img-src 'self' data:; "
                                                       "media-src 'self'; style-src 'self'; script-src 'self'")
        return response

    @app.context_processor
    def template_globals():
        return {"token": token}

    # ------------------------------------------------------------------------------------------ helpers
    def wants_json() -> bool:
        return request.accept_mimetypes.best_match(["text/html", "application/json"]) == "application/json"

    def page(template: str, payload, status: int = 200, **extra):
        if wants_json():
            return jsonify(payload), status
        return render_template(template, data=payload, message=request.args.get("said"), **extra), status

    def _error(status: int, message: str):
        if wants_json():
            return jsonify({"error": message, "status": status}), status
        return render_template("error.html", status=status, message=message), status

    def store():
        return data.read_only(db)

    @app.errorhandler(HTTPException)
    def http_error(err: HTTPException):
        if isinstance(err, RequestEntityTooLarge):
            return _error(413, f"upload too large: at most {scfg.max_upload_mb:g} MB (serve.max_upload_mb); "
                               f"nothing was stored")
        messages = {404: "no such page, person, recording or media here", 405: "not allowed: pages are read-only; "
                    "changes are POST forms of this app"}
        return _error(err.code or 500, messages.get(err.code, err.description or err.name))

    @app.errorhandler(sqlite3.Error)
    def store_gone(exc: sqlite3.Error):       # the store removed, damaged or locked for long while serving
        return _error(503, store_error(exc, db).problem if db.exists() else f"{db}: the store is no longer there")

    @app.errorhandler(AvidError)
    def avid_error(err: AvidError):
        return _error(400, err.problem)

    # ------------------------------------------------------------------------------------------ pages
    @app.get("/")
    def home():
        with store() as reader:
            payload = data.summary(db, reader)
            payload["store"] = str(db)
            payload["recordings"] = [r.__dict__ for r in data.recordings(reader, int(scfg.recordings_per_page))]
        return page("home.html", payload)

    @app.get("/progress")
    def progress():
        with store() as reader:
            return jsonify(data.progress(db, reader))

    @app.get("/people")
    def people():
        with store() as reader:
            return page("people.html", {"people": data.people(reader)})

    @app.get("/people/<int:person_id>")
    def person(person_id: int):
        with store() as reader:
            found = data.person(reader, person_id)
            others = [p for p in data.people(reader) if p["id"] != person_id] if found else []
        if found is None:
            abort(404)
        return page("person.html", found, others=others)

    @app.get("/unknown")
    def unknown():
        per_page = int(scfg.clusters_per_page)
        number = request.args.get("page", "1")
        number = int(number) if number.isdigit() and int(number) > 0 else 1
        with store() as reader:
            found = data.clusters(reader, int(scfg.faces_per_cluster), int(scfg.voices_per_cluster))
            names = [p["name"] for p in data.people(reader)]
            unnamed = reader.unnamed_count()
        shown = found[(number - 1) * per_page:number * per_page]     # a page of them: a big library has hundreds
        return page("unknown.html", {"clusters": [c.to_dict() for c in shown], "unnamed": unnamed,
                                     "total": len(found), "page": number, "first": (number - 1) * per_page + 1,
                                     "ids": [c.id for c in found]}, names=names)

    @app.get("/recordings/<int:file_id>")
    def recording(file_id: int):
        with store() as reader:
            found = data.recording(reader, file_id)
        if found is None:
            abort(404)
        try:
            start = max(0.0, float(request.args.get("t", 0)))
        except ValueError:
            start = 0.0
        return page("recording.html", found, start=start)

    # ------------------------------------------------------------------------------------------ media
    @app.get("/media/<int:file_id>")
    def media(file_id: int):
        """A library file by its id (Range requests: the player seeks); 404 unless the store records it."""
        with store() as reader:
            path = data.file_path(reader, file_id)
        if path is None or data.media_kind(path) == "":
            abort(404)
        if not os.path.isfile(path):
            return _error(410, f"{path}: the file is no longer there (moved or deleted since it was processed)")
        # a relative path is as `avid process` was given it: from the folder it ran in, as this server's (Flask
        # would take it from the package's folder)
        return send_file(os.path.abspath(path), conditional=True, max_age=0)

    @app.get("/faces/<int:obs_id>.jpg")
    def face(obs_id: int):
        cached = thumbs.get(obs_id)
        if cached is None:
            with store() as reader:
                where = data.face_source(reader, obs_id)
            if where is None:
                abort(404)
            cached = clips.face_jpeg(where[0], where[1], int(cfg.library.unknown.thumbnail_size))
            if cached is None:
                return _error(410, f"{where[0]}: cannot be read (moved or deleted since it was processed)")
            thumbs.put(obs_id, cached)
        return Response(cached, mimetype="image/jpeg")

    @app.get("/voices/<int:obs_id>.wav")
    def voice(obs_id: int):
        with store() as reader:
            where = data.voice_source(reader, obs_id)
        if where is None:
            abort(404)
        clip = clips.voice_wav(where[0], where[1], where[2], float(scfg.clip_seconds))
        if clip is None:
            return _error(410, f"{where[0]}: cannot be read (moved or deleted since it was processed)")
        return Response(clip, mimetype="audio/wav")

    # ------------------------------------------------------------------------------------------ search
    @app.route("/search", methods=["GET", "POST"])
    def search():
        from ..library.search import search as search_library
        from ..library.search import search_text

        payload: dict = {"query": None, "hits": [], "text_hits": [], "error": None}
        status = 200
        text = (request.values.get("text") or "").strip()
        who = (request.values.get("person") or "").strip() or None
        upload = request.files.get("photo") or request.files.get("voice") if request.method == "POST" else None
        try:
            if upload is not None and upload.filename:
                kind = "image" if request.files.get("photo") else "audio"
                payload["query"] = {"kind": kind, "file": upload.filename}
                with _saved(upload, kind) as path, search_lock:
                    hits = search_library(db, image=str(path) if kind == "image" else None,
                                          audio=str(path) if kind == "audio" else None, cfg=cfg)
                payload["hits"] = [h.to_dict() for h in hits]
            elif text:
                payload["query"] = {"kind": "text", "text": text, "person": who}
                payload["text_hits"] = [h.to_dict() for h in search_text(db, text, person=who, cfg=cfg)]
            elif who:
                payload["query"] = {"kind": "person", "person": who}
                with search_lock:
                    payload["hits"] = [h.to_dict() for h in search_library(db, person=who, cfg=cfg)]
            elif request.method == "POST":
                raise AvidError("choose a photo or a voice clip to search with")
        except AvidError as err:
            payload["error"], status = err.problem, 400
        with store() as reader:
            ids = data.file_ids_by_path(reader)
            names = [p["name"] for p in data.people(reader)]
        for hit in payload["hits"] + payload["text_hits"]:
            hit["file_id"] = ids.get(hit["file"])
            hit["name"] = Path(hit["file"]).name
        return page("search.html", payload, status, names=names)

    @contextlib.contextmanager
    def _saved(upload, kind: str):
        """The upload in a private file (named by us, 0600) for as long as the query runs; checked first to be
        the kind of media asked for; always deleted afterwards."""
        allowed = IMAGE_EXTENSIONS if kind == "image" else AUDIO_EXTENSIONS | VIDEO_EXTENSIONS
        suffix = Path(upload.filename).suffix.lower()
        if suffix not in allowed:
            raise AvidError(f"{upload.filename}: not a {'photo' if kind == 'image' else 'voice clip'} (the name "
                            f"must end in one of {', '.join(sorted(allowed))})")
        fd, name = tempfile.mkstemp(suffix=suffix, dir=uploads)
        path = Path(name)
        try:
            with os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(upload.stream, out)
            if kind == "image":
                _check_image(path, upload.filename)
            yield path
        except AvidError as err:       # a message naming the user's file, not our temporary one
            raise AvidError(f"{upload.filename}: {err.problem}") from None
        finally:
            path.unlink(missing_ok=True)

    def _check_image(path: Path, shown: str) -> None:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as picture:
                picture.verify()
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
            raise AvidError("not an image that can be read (JPEG, PNG, WebP or BMP)") from None

    # ------------------------------------------------------------------------------------------ the changes (POST)
    def done(message: str, target: str):
        if wants_json():
            return jsonify({"ok": True, "message": message})
        return redirect(f"{target}?said={quote(message)}", code=303)     # POST, then GET: a reload sends nothing

    @app.post("/unknown/<int:cluster_id>/name")
    def name(cluster_id: int):
        from ..library.unknown import name_cluster

        person, count = name_cluster(db, cluster_id, request.form.get("name", ""), cfg)
        return done(f"named {count} observations of cluster {cluster_id} as {person.name}", url_for("unknown"))

    @app.post("/unknown/<int:cluster_id>/merge")
    def merge_cluster(cluster_id: int):
        from ..library.unknown import merge_clusters

        try:
            into = int(request.form.get("into", ""))
        except ValueError:
            raise AvidError("choose the cluster to merge into") from None
        count = merge_clusters(db, cluster_id, into)
        return done(f"merged cluster {cluster_id} ({count} observations) into cluster {into}", url_for("unknown"))

    @app.post("/unknown/<int:cluster_id>/dismiss")
    def dismiss(cluster_id: int):
        from ..library.unknown import dismiss_cluster

        count = dismiss_cluster(db, cluster_id)
        return done(f"cluster {cluster_id} is not a person: its {count} observations were removed",
                    url_for("unknown"))

    @app.post("/unknown/refresh")
    def refresh():
        from ..library.unknown import unknown_clusters

        found = unknown_clusters(db, cfg)         # what `avid people unknown` does
        return done(f"found {len(found)} unknown clusters", url_for("unknown"))

    @app.post("/people/<int:person_id>/merge")
    def merge_person(person_id: int):
        from ..identity.store import Gallery
        from ..identity.training import refresh_z_prototypes

        with contextlib.closing(Gallery(db)) as gallery:   # what `avid people merge SRC DST` does
            source = next((p for p in gallery.people() if p.id == person_id), None)
            if source is None:
                abort(404)
            target = gallery.merge(source.name, request.form.get("into", ""))
            refresh_z_prototypes(gallery, [target.id])
        return done(f"merged {source.name} into {target.name}", url_for("person", person_id=target.id))

    return app
