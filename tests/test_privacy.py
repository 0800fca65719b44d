"""docs/privacy.md's promise: after `avid people delete`, nothing of the person is left in the store folder.

A library is built with every place a person's data can reach (library observations named from an unknown cluster,
the face thumbnails, a FAISS index cache, the shared model), the person is deleted with the command line, and
every file in the store's folder (the store, its WAL and shared-memory files, the lock, the caches) is read byte by
byte for their name and for any 32 bytes of any of their embeddings or prototypes.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from avid.cli import main
from avid.config import load_config
from avid.identity.store import Gallery, companion, to_blob
from avid.identity.training import train
from avid.library.collection import process_collection
from avid.library.search import search
from avid.library.unknown import name_cluster, unknown_clusters
from tests import media as synthetic

pytest.importorskip("skimage")
pytest.importorskip("espeakng_loader")

NAME = "Zelda Quixote-Marsh"
SLICE = 32


def windows(vectors: list[np.ndarray]) -> set[bytes]:
    """Every 32-byte slice of the vectors' float32 bytes (at each value boundary: a stored copy holds them all)."""
    found = set()
    for vector in vectors:
        blob = to_blob(vector)
        found.update(blob[i:i + SLICE] for i in range(0, len(blob) - SLICE + 1, 4))
    return found


def leaks(folder: Path, name: str, slices: set[bytes]) -> list[str]:
    problems = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        for form in {name, name.casefold()}:
            if form.encode() in data or form.encode("utf-16-le") in data:
                problems.append(f"{path.name}: the name")
        hits = [i for i in range(len(data) - SLICE + 1) if data[i:i + SLICE] in slices]
        if hits:
            problems.append(f"{path.name}: embedding bytes at offset {hits[0]}")
    return problems


def test_after_delete_no_byte_of_the_person_is_left_in_the_store_folder(tmp_path, capsys):
    media = tmp_path / "media"
    media.mkdir()
    astronaut = synthetic.astronaut_face()
    synthetic.write_image(media / "a1.jpg", astronaut)
    synthetic.write_image(media / "a2.png", astronaut[::2, ::2].copy())
    synthetic.write_image(media / "b1.jpg", synthetic.grace_hopper_face())
    synthetic.write_wav(media / "c1.wav", synthetic.speak("Several old sailors gathered at the harbour.",
                                                         synthetic.MALE_VOICE))
    store = tmp_path / "store"
    db = store / "library.db"
    cfg = load_config(overrides={"index": {"faiss_min_size": 1}, "shared": {"train": {"steps": 3}}})
    process_collection([media], db, cfg, workers=1, quiet=True)
    clusters = unknown_clusters(db, cfg)
    theirs = next(c for c in clusters if c.n_face >= 2)            # the astronaut's two photos
    name_cluster(db, theirs.id, NAME, cfg)
    assert search(db, person=NAME, cfg=cfg)                        # builds the FAISS cache beside the store
    with Gallery(db) as gallery:
        train(gallery, cfg)
        vectors = [o.embedding for o in gallery.observations(person=NAME)]
        person_id = gallery.person(NAME).id
        rows = gallery._db.execute("SELECT vector FROM prototypes WHERE person_id = ?", (person_id,)).fetchall()
        vectors += [np.frombuffer(row[0], "<f4") for row in rows]
    assert companion(db, "index").is_dir() and companion(db, "thumbnails").is_dir()
    slices = windows(vectors)
    assert leaks(store, NAME, slices), "the check finds the person before the delete"

    assert main(["--quiet", "people", "delete", NAME, "--yes", "--db", str(db)]) == 0
    assert f"deleted {NAME}" in capsys.readouterr().out
    assert not companion(db, "index").exists() and not companion(db, "thumbnails").exists()
    assert leaks(store, NAME, slices) == []
    with Gallery(db) as gallery:                                   # the others are still there
        assert gallery.observations(modality="face")
