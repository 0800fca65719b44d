"""The store's tables: the version 1 schema and the migrations from each version to the next.

A new store runs the version 1 schema and then every migration, in one transaction; an older store runs the
migrations from its version on (``Gallery._check_version``). The version is kept in ``meta``; a store newer than
``SCHEMA_VERSION`` is refused.
"""
from __future__ import annotations

import sqlite3
from pathlib import Path

from ...errors import StoreError

SCHEMA_VERSION = 3
APP_ID = 0x61766964          # "avid": marks the file as ours (PRAGMA application_id)

SCHEMA_V1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE people (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created TEXT NOT NULL
);
CREATE TABLE files (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL,
    content_hash TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'failed')),
    processed_at TEXT,
    error TEXT
);
CREATE TABLE observations (
    id INTEGER PRIMARY KEY,
    person_id INTEGER REFERENCES people(id) ON DELETE CASCADE,
    modality TEXT NOT NULL CHECK (modality IN ('face', 'voice')),
    source TEXT NOT NULL,
    content_hash TEXT,
    start REAL,
    end REAL,
    track_id INTEGER,
    paired_with INTEGER REFERENCES observations(id) ON DELETE SET NULL,
    embedding BLOB NOT NULL,
    backend TEXT NOT NULL,
    dim INTEGER NOT NULL,
    created TEXT NOT NULL
);
CREATE INDEX observations_person ON observations(person_id, modality);
CREATE INDEX observations_hash ON observations(content_hash);
CREATE TABLE prototypes (
    person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    space TEXT NOT NULL CHECK (space IN ('face', 'voice', 'z', 'z_face', 'z_voice')),
    vector BLOB NOT NULL,
    dim INTEGER NOT NULL,
    PRIMARY KEY (person_id, space)
);
CREATE TABLE model (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    checkpoint BLOB NOT NULL,
    metadata TEXT NOT NULL,
    created TEXT NOT NULL
);
"""

# Migrations from version N to N+1, applied in order inside one transaction when an older database is opened (and
# after the version 1 schema when a new one is created).
MIGRATIONS: dict[int, str] = {
    # 2: observations learned from the library (avid/identity/learning.py) say how (JSON provenance); a person's
    # rejected ones are remembered so that they are never learned again.
    1: """
ALTER TABLE observations ADD COLUMN learned TEXT;
CREATE TABLE rejections (
    observation_id INTEGER NOT NULL REFERENCES observations(id) ON DELETE CASCADE,
    person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    PRIMARY KEY (observation_id, person_id)
)""",
    # 3: the library's tables (avid/library), which the library used to add itself outside the schema version,
    # hence IF NOT EXISTS: a version 2 store may hold them already, exactly as here. ``library_faces`` keeps where
    # a face track is best seen (for thumbnails); ``library_clusters`` the last clustering of unnamed observations,
    # so that naming a cluster names exactly what was listed; ``library_words`` the words said in each speaker turn
    # (``--transcribe``: JSON [start, end, word]) and ``library_text`` their text for full-text search (SQLite
    # FTS5), removed with the turn (deleting a person deletes what they said).
    2: """
CREATE TABLE IF NOT EXISTS library_faces (
    observation_id INTEGER PRIMARY KEY REFERENCES observations(id) ON DELETE CASCADE,
    time REAL NOT NULL, x1 REAL NOT NULL, y1 REAL NOT NULL, x2 REAL NOT NULL, y2 REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS library_clusters (
    observation_id INTEGER PRIMARY KEY REFERENCES observations(id) ON DELETE CASCADE,
    cluster_id INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS library_clusters_id ON library_clusters(cluster_id);
CREATE TABLE IF NOT EXISTS library_words (
    observation_id INTEGER PRIMARY KEY REFERENCES observations(id) ON DELETE CASCADE,
    words TEXT NOT NULL
);
CREATE VIRTUAL TABLE IF NOT EXISTS library_text USING fts5(text, observation_id UNINDEXED, tokenize = 'unicode61');
CREATE TRIGGER IF NOT EXISTS library_words_gone AFTER DELETE ON library_words BEGIN
    DELETE FROM library_text WHERE observation_id = old.observation_id;
END""",
}


def run_script(db: sqlite3.Connection, script: str) -> None:
    """Run ``;``-separated statements inside the current transaction (``executescript`` would commit first). A
    statement ends at the ``;`` that completes it, so that a trigger's body keeps its own."""
    statement = ""
    for piece in script.split(";"):
        statement += piece + ";"
        if sqlite3.complete_statement(statement):
            if statement.strip("; \n\t"):
                db.execute(statement)
            statement = ""


def create(db: sqlite3.Connection, created: str) -> None:
    """The whole schema in an empty database, inside the caller's transaction: version 1, then every migration."""
    run_script(db, SCHEMA_V1)
    for version in range(1, SCHEMA_VERSION):
        run_script(db, MIGRATIONS[version])
    db.execute(f"PRAGMA application_id = {APP_ID}")
    db.execute("INSERT INTO meta VALUES ('schema_version', ?), ('created', ?)", (str(SCHEMA_VERSION), created))


def stored_version(db: sqlite3.Connection) -> int:
    row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row else 0


def migrate(db: sqlite3.Connection, version: int, path: Path) -> None:
    """Bring a store of ``version`` up to SCHEMA_VERSION, inside the caller's transaction."""
    while version < SCHEMA_VERSION:
        if version not in MIGRATIONS:
            raise StoreError(f"cannot migrate database schema version {version}", path)
        run_script(db, MIGRATIONS[version])
        version += 1
    db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(version),))


def table_names(db: sqlite3.Connection) -> set[str]:
    return {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def is_ours(db: sqlite3.Connection, tables: set[str]) -> bool:
    """Whether a database holding ``tables`` is an avid store: its meta table and our application id."""
    return "meta" in tables and db.execute("PRAGMA application_id").fetchone()[0] == APP_ID


def is_empty(db: sqlite3.Connection) -> bool:
    """Nothing in the database yet, not even an index (another process may have created the schema meanwhile)."""
    return not db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
