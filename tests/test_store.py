"""The store owns every SQL statement of avid (avid/identity/store/), and the library's tables are part of its
schema: version 3 adds them, to version 2 stores that had them from the library already and to those that did not."""
from __future__ import annotations

import ast
import json
import re
import sqlite3
from pathlib import Path

import numpy as np
import pytest

import avid
from avid.config import load_config
from avid.identity.store import SCHEMA_VERSION, Gallery, StoreReader, to_blob
from avid.library.search import search_text
from avid.serve import data

# ------------------------------------------------------------------------------------------ version 2 stores

# The version 2 schema as avid wrote it (avid/identity/store.py at 9f84b90: _SCHEMA_V1 and migration 1) ...
V2_SCHEMA = """
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
ALTER TABLE observations ADD COLUMN learned TEXT;
CREATE TABLE rejections (
    observation_id INTEGER NOT NULL REFERENCES observations(id) ON DELETE CASCADE,
    person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    PRIMARY KEY (observation_id, person_id)
);
PRAGMA application_id = 1635150180;
INSERT INTO meta VALUES ('schema_version', '2'), ('created', '2024-01-01T00:00:00Z');
"""

# ... and the tables the library added to it itself (ensure_library_tables, avid/library/collection.py at 9f84b90).
V2_LIBRARY_TABLES = """
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
END;
"""

GALLERY_TABLES = ("meta", "people", "files", "observations", "prototypes", "model", "rejections")
LIBRARY_TABLES = ("library_faces", "library_clusters", "library_words", "library_text")
WORDS = [[1.0, 1.4, " the"], [1.4, 1.9, " analytical"], [1.9, 2.5, " engine"]]


def vector(seed: int, dim: int) -> bytes:
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return to_blob(v / np.linalg.norm(v))


def version_2_store(path: Path, library_tables: bool) -> Path:
    """A version 2 store as the previous avid left it: an enrolled person, a library file with an unnamed face and
    a learned voice, one rejection, and (``library_tables``) the library's rows: a box, words, a cluster."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.executescript(V2_SCHEMA + (V2_LIBRARY_TABLES if library_tables else ""))
    with conn:
        now = "2024-01-01T00:00:00Z"
        conn.execute("INSERT INTO people VALUES (1, 'Ada Lovelace', ?)", (now,))
        conn.execute("INSERT INTO files VALUES (1, '/media/talk.mp4', 'abc', 'done', ?, NULL)", (now,))
        observations = [
            (1, 1, "face", "/media/ada.jpg", None, None, None, None, None, vector(1, 8), "sface", 8, now, None),
            (2, 1, "voice", "/media/ada.wav", None, 0.0, 3.0, None, None, vector(2, 4), "campplus", 4, now, None),
            (3, None, "face", "/media/talk.mp4", "abc", 0.0, 4.0, 0, None, vector(3, 8), "sface", 8, now, None),
            (4, 1, "voice", "/media/talk.mp4", "abc", 0.5, 3.0, None, 3, vector(4, 4), "campplus", 4, now,
             '{"by": "face"}'),
            (5, None, "voice", "/media/talk.mp4", "abc", 3.0, 4.0, None, None, vector(5, 4), "campplus", 4, now, None),
        ]
        conn.executemany("INSERT INTO observations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", observations)
        conn.execute("INSERT INTO prototypes VALUES (1, 'face', ?, 8)", (vector(1, 8),))
        conn.execute("INSERT INTO rejections VALUES (5, 1)")
        if library_tables:
            conn.execute("INSERT INTO library_faces VALUES (3, 1.5, 10, 20, 110, 140)")
            conn.execute("INSERT INTO library_clusters VALUES (3, 1)")
            conn.execute("INSERT INTO library_words VALUES (4, ?)", (json.dumps(WORDS),))
            conn.execute("INSERT INTO library_text (text, observation_id) VALUES ('the analytical engine', 4)")
    conn.close()
    return path


def rows(path: Path, tables) -> dict[str, list]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall() for t in tables}


def schema_of(path: Path) -> list:
    """The store's tables, indexes and trigger as SQLite keeps them (their CREATE statements)."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        return conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY name").fetchall()


@pytest.mark.parametrize("library_tables", [False, True], ids=["without library tables", "with library tables"])
def test_a_version_2_store_migrates_to_3_and_keeps_its_data(tmp_path, library_tables):
    db = version_2_store(tmp_path / "v2.db", library_tables)
    before = rows(db, GALLERY_TABLES + (LIBRARY_TABLES if library_tables else ()))
    assert SCHEMA_VERSION == 3
    with Gallery(db) as g:
        assert g.meta("schema_version") == "3"
        assert [p.name for p in g.people()] == ["Ada Lovelace"] and g.rejected("Ada Lovelace") == {5}
    after = rows(db, GALLERY_TABLES + LIBRARY_TABLES)
    before["meta"] = [(k, "3" if k == "schema_version" else v) for k, v in before["meta"]]
    assert {t: after[t] for t in before} == before
    if not library_tables:
        assert all(after[t] == [] for t in LIBRARY_TABLES)
    Gallery(tmp_path / "new.db").close()
    assert schema_of(db) == schema_of(tmp_path / "new.db")     # the same tables as a store made at version 3


def test_a_migrated_store_keeps_the_library_working(tmp_path):
    db = version_2_store(tmp_path / "v2.db", library_tables=True)
    cfg = load_config()
    with Gallery(db) as g:
        with g.transaction():
            obs = g.add_observation(None, "voice", np.frombuffer(vector(6, 4), "<f4"), "campplus", "/media/talk.mp4",
                                    content_hash="abc", start=4.0, end=6.0)
            g.add_words(obs, [[4.0, 4.5, " difference"], [4.5, 5.0, " engine"]])
        assert g.cluster_members(1) == [3]
    hits = search_text(db, "engine", cfg=cfg)
    assert sorted((h.speaker, h.start) for h in hits) == [("Ada Lovelace", 1.9), ("unknown", 4.5)]
    with StoreReader(db) as store:
        assert store.face_boxes() == {3: (1.5, 10.0, 20.0, 110.0, 140.0)}
    with Gallery(db) as g:         # deleting her deletes what she said, found by full-text search too
        g.delete("Ada Lovelace")
    assert [h.speaker for h in search_text(db, "engine", cfg=cfg)] == ["unknown"]
    assert rows(db, ["library_words"])["library_words"] == [(obs, json.dumps([[4.0, 4.5, " difference"],
                                                                               [4.5, 5.0, " engine"]]))]


def test_a_version_2_store_without_library_tables_reads_as_an_empty_library(tmp_path):
    """Searches and the web app only read (mode=ro): a store no writer of this version has opened yet is read as
    it is, and left as it is."""
    db = version_2_store(tmp_path / "v2.db", library_tables=False)
    before = db.read_bytes()
    assert search_text(db, "engine", cfg=load_config()) == []
    with data.read_only(db) as store:
        summary = data.summary(db, store)
        assert summary["unknown_clusters"] == 0 and summary["transcripts"] is False
        assert data.clusters(store, 4, 4) == []
        assert data.face_source(store, 3) is None            # a library face without its box
        recording = data.recording(store, 1)
        assert [(f["id"], f["box"], f["cluster"]) for f in recording["faces"]] == [(3, None, None)]
        assert recording["transcript"] == []
        assert data.person(store, 1)["face"] == 1            # the photo she was enrolled from
    assert db.read_bytes() == before
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == "2"


# ------------------------------------------------------------------------------------------ SQL lives in the store

STORE = Path(avid.__file__).parent / "identity" / "store"
SQL = re.compile(r"\b(SELECT\b.*\bFROM|INSERT\s+(OR\s+\w+\s+)?INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|"
                 r"CREATE\s+(TABLE|INDEX|VIRTUAL\s+TABLE|TRIGGER|VIEW)|ALTER\s+TABLE|DROP\s+(TABLE|INDEX)|PRAGMA\s+\w+|"
                 r"MATCH\s+\?)", re.S)
QUERY_CALLS = {"execute", "executemany", "executescript"}


def sql_outside_the_store(path: Path) -> list[str]:
    """What in one module looks like SQL or runs it: SQL in a string, a query call, sqlite3 used for more than its
    exception type (``except sqlite3.Error``)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.search(node.value):
            found.append(f"{path}:{node.lineno}: SQL in a string: {node.value.strip()[:60]!r}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in QUERY_CALLS:
            found.append(f"{path}:{node.lineno}: calls .{node.func.attr}()")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "sqlite3" \
                and node.attr != "Error":
            found.append(f"{path}:{node.lineno}: uses sqlite3.{node.attr}")
        elif isinstance(node, ast.ImportFrom) and node.module == "sqlite3":
            found.append(f"{path}:{node.lineno}: imports from sqlite3")
    return found


def test_no_module_outside_the_store_holds_sql():
    modules = [p for p in Path(avid.__file__).parent.rglob("*.py") if STORE not in p.parents]
    assert len(modules) > 50
    assert [problem for path in modules for problem in sql_outside_the_store(path)] == []
    assert sql_outside_the_store(STORE / "reader.py")      # and the check finds SQL where there is some
