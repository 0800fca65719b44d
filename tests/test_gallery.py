"""The gallery store: privacy, schema versions, transactions, deletion that leaves nothing, concurrent readers."""
from __future__ import annotations

import os
import sqlite3
import stat
import threading

import numpy as np
import pytest

from avid.errors import StoreError
from avid.identity import store as gallery_module
from avid.identity.store import schema
from avid.identity.store import Gallery, default_path, to_blob


def unit(rng: np.random.Generator, dim: int) -> np.ndarray:
    v = rng.standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def store(tmp_path):
    with Gallery(tmp_path / "g.db") as g:
        yield g


def fill(g: Gallery, rng, name: str, n_face: int = 2, n_voice: int = 1) -> list[np.ndarray]:
    g.add_person(name)
    vectors = []
    for i in range(n_face):
        vectors.append(unit(rng, 128))
        g.add_observation(name, "face", vectors[-1], "dlib", f"/media/{name}_{i}.jpg", content_hash="h" + name)
    for i in range(n_voice):
        vectors.append(unit(rng, 256))
        g.add_observation(name, "voice", vectors[-1], "resemblyzer", f"/media/{name}_{i}.wav", start=0.5, end=3.0)
    return vectors


def test_created_private_to_the_user(tmp_path):
    path = tmp_path / "new" / "deeper" / "g.db"
    with Gallery(path) as g:
        g.add_person("Ada")                      # a write: the WAL file exists now
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(path.parent.parent).st_mode) == 0o700
        wal = path.with_name(path.name + "-wal")
        assert wal.exists() and stat.S_IMODE(os.stat(wal).st_mode) == 0o600
        assert g._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_default_path_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("AVID_DB", str(tmp_path / "x.db"))
    assert default_path() == tmp_path / "x.db"
    monkeypatch.delenv("AVID_DB")
    assert default_path().name == "gallery.db" and "avid" in str(default_path())


def test_newer_schema_refused(tmp_path):
    path = tmp_path / "g.db"
    Gallery(path).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match="schema version 99 is newer"):
        Gallery(path)


def test_older_schema_migrated(tmp_path, monkeypatch):
    path = tmp_path / "g.db"
    Gallery(path).close()
    current = gallery_module.SCHEMA_VERSION
    monkeypatch.setattr(schema, "SCHEMA_VERSION", current + 1)
    monkeypatch.setitem(schema.MIGRATIONS, current, "CREATE TABLE extra (x INTEGER); INSERT INTO extra VALUES (7)")
    with Gallery(path) as g:
        assert g.meta("schema_version") == str(current + 1)
        assert g._db.execute("SELECT x FROM extra").fetchone()[0] == 7


def test_foreign_files_refused(tmp_path):
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(os.urandom(4096))
    with pytest.raises(StoreError, match="not an avid gallery"):
        Gallery(garbage)
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE things (x)")
    with pytest.raises(StoreError, match="not an avid gallery"):
        Gallery(other)
    with pytest.raises(StoreError, match="not a file"):
        Gallery(tmp_path)


def test_people_and_observations(store, rng):
    vectors = fill(store, rng, "Ada")
    fill(store, rng, "Bob", n_face=1, n_voice=0)
    people = {p.name: p for p in store.people()}
    assert (people["Ada"].n_face, people["Ada"].n_voice) == (2, 1)
    assert (people["Bob"].n_face, people["Bob"].n_voice) == (1, 0)
    faces = store.observations(person="Ada", modality="face")
    assert [o.source for o in faces] == ["/media/Ada_0.jpg", "/media/Ada_1.jpg"]
    np.testing.assert_array_equal(faces[0].embedding, vectors[0])
    voice = store.observations(person="Ada", modality="voice")[0]
    assert (voice.start, voice.end, voice.backend, voice.dim) == (0.5, 3.0, "resemblyzer", 256)
    # Raw prototypes follow the observations: Ada's face prototype is the normalised mean of her two faces.
    people_z, matrix = store.prototypes("face")
    expected = (vectors[0] + vectors[1]) / np.linalg.norm(vectors[0] + vectors[1])
    np.testing.assert_allclose(matrix[[p.name for p in people_z].index("Ada")], expected, atol=1e-6)
    assert store.match(vectors[0], "face")[0].name == "Ada"
    with pytest.raises(StoreError, match="already exists"):
        store.add_person("Ada")
    with pytest.raises(StoreError, match="no person named 'Cyd'"):
        store.person("Cyd")


def test_encoder_mismatch_refused(store, rng):
    fill(store, rng, "Ada")
    with pytest.raises(StoreError, match="holds dlib 128-D face embeddings"):
        store.add_observation("Ada", "face", unit(rng, 512), "facenet", "/x.jpg")
    with pytest.raises(StoreError, match="not finite"):
        store.add_observation("Ada", "face", np.full(128, np.nan), "dlib", "/x.jpg")


def test_transaction_is_all_or_nothing(store, rng):
    with pytest.raises(RuntimeError):
        with store.transaction():
            store.add_person("Ada")
            store.add_observation("Ada", "face", unit(rng, 128), "dlib", "/a.jpg")
            raise RuntimeError("a later file failed")
    assert store.people() == [] and store.observations() == []


def test_rename_and_merge(store, rng):
    fill(store, rng, "Ada")
    fill(store, rng, "Ada L.", n_face=1, n_voice=1)
    store.rename("Ada L.", "Ada Lovelace")
    with pytest.raises(StoreError, match="already exists"):
        store.rename("Ada", "Ada Lovelace")
    merged = store.merge("Ada Lovelace", "Ada")
    assert [p.name for p in store.people()] == ["Ada"]
    assert (merged.n_face, merged.n_voice) == (3, 2)
    faces = [o.embedding for o in store.observations(person="Ada", modality="face")]
    mean = np.mean(faces, axis=0)
    np.testing.assert_allclose(store.prototypes("face")[1][0], mean / np.linalg.norm(mean), atol=1e-6)


def test_delete_leaves_no_row_or_vector(tmp_path, rng):
    path = tmp_path / "g.db"
    with Gallery(path) as g:
        ada = fill(g, rng, "Ada Lovelace-Unique")
        fill(g, rng, "Bob")
        ids = {p.name: p.id for p in g.people()}
        z_ada = unit(rng, 256)
        g.save_model(b"checkpoint bytes", {"people": 2},
                     {"z_face": {ids["Ada Lovelace-Unique"]: z_ada, ids["Bob"]: unit(rng, 256)}})
        assert g.delete("Ada Lovelace-Unique") == {"observations": 3, "model": True}
        assert [p.name for p in g.people()] == ["Bob"]
        assert all(o.person == "Bob" for o in g.observations())
        rows = g._db.execute("SELECT count(*) FROM prototypes WHERE person_id = ?", (ids["Ada Lovelace-Unique"],))
        assert rows.fetchone()[0] == 0
        assert g.load_model() is None                  # fitted with her data: gone too
        assert len(g.prototypes("face")[0]) == 1
    # Not one of her vectors (nor her name) is left anywhere in the database files.
    data = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("g.db"))
    for vector in ada + [z_ada]:
        assert to_blob(vector)[:64] not in data
    assert b"Ada Lovelace-Unique" not in data
    assert b"/media/Ada Lovelace-Unique_0.jpg" not in data


def test_concurrent_reader_while_writing(tmp_path, rng):
    path = tmp_path / "g.db"
    writer = Gallery(path)
    fill(writer, rng, "Ada")
    seen: dict[str, list[str]] = {}
    failures: list[BaseException] = []

    def read(key: str) -> None:
        try:
            with Gallery(path, timeout=0.5) as reader:   # would time out if the writer blocked readers
                seen[key] = [p.name for p in reader.people()]
        except BaseException as exc:   # reported in the main thread
            failures.append(exc)

    with writer.transaction():
        writer.add_person("Bob")
        thread = threading.Thread(target=read, args=("during",))
        thread.start()
        thread.join(timeout=10)
    read("after")
    writer.close()
    assert not failures, failures
    assert seen == {"during": ["Ada"], "after": ["Ada", "Bob"]}


def test_model_and_files_tables(store, rng):
    fill(store, rng, "Ada")
    pid = store.person("Ada").id
    store.save_model(b"\x00\x01", {"version": 1}, {"z": {pid: unit(rng, 256)}})
    checkpoint, metadata = store.load_model()
    assert checkpoint == b"\x00\x01" and metadata == {"version": 1}
    assert store.match(store.prototypes("z")[1][0], "z")[0].name == "Ada"
    assert store.file_status("abc") is None
    store.set_file_status("/v.mp4", "abc", "failed", error="corrupt")
    store.set_file_status("/v.mp4", "abc", "done")
    assert store.file_status("abc") == "done"


def test_assign_unnamed_observations(store, rng):
    store.add_person("Ada")
    ids = [store.add_observation(None, "face", unit(rng, 128), "dlib", f"/lib/{i}.mp4", start=i, end=i + 1)
           for i in range(3)]
    assert store.observations(named=False)[0].person is None
    assert store.assign(ids[:2], "Ada") == 2
    assert store.person("Ada").n_face == 2 and len(store.observations(named=False)) == 1
    assert len(store.prototypes("face")[0]) == 1


def test_names_are_one_line_one_form_and_one_case(tmp_path):
    """Issue 13, item 6: a name cannot forge listing rows, and José (composed or not) or Alice / alice is one person."""
    with Gallery(tmp_path / "g.db") as g:
        for bad in ("Eve\nMallory\t2\t0", "Bob\x1b[31m", "x\u2028y", "", "   ", "A" * 201):
            with pytest.raises(StoreError):
                g.add_person(bad)
        composed, decomposed = "Jos\u00e9", "Jose\u0301"
        jose = g.add_person(decomposed)
        assert jose.name == composed                              # stored in NFC
        with pytest.raises(StoreError, match="already exists"):
            g.add_person(composed)
        g.add_person("Alice")
        with pytest.raises(StoreError, match="already exists as 'Alice'"):
            g.add_person("alice")
        assert g.person("ALICE").name == "Alice" and g.person(composed).id == jose.id
        g.add_person("Bob  Smith ")
        assert g.person("bob smith").name == "Bob Smith"
        with pytest.raises(StoreError, match="already exists"):
            g.rename("Bob Smith", "alice")
        g.delete("alice")
        assert [p.name for p in g.people()] == ["Bob Smith", composed]


def test_a_store_is_private_whoever_made_the_file_and_a_dangling_link_is_refused(tmp_path):
    """Issue 13, item 2."""
    loose = tmp_path / "loose.db"
    loose.touch(mode=0o666)
    os.chmod(loose, 0o666)
    Gallery(loose).close()
    assert stat.S_IMODE(loose.stat().st_mode) == 0o600
    dangling = tmp_path / "link.db"
    dangling.symlink_to(tmp_path / "nowhere" / "target.db")
    with pytest.raises(StoreError, match="symbolic link to nothing"):
        Gallery(dangling)
    assert not (tmp_path / "nowhere").exists()
