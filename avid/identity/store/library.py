"""The library's records in the store, as the writer keeps them (mixed into ``Gallery``): where each face track is
best seen, what was said in each speaker turn, and the last clustering of unnamed observations into unknown people.

Library observations themselves are unnamed rows of ``observations`` (``Gallery.add_observation``), their files
rows of ``files``; the tables are described in schema.py (migration 3). Each method joins the caller's transaction
(``Gallery.transaction``), so that a file's observations, boxes, words and ``done`` status are stored together.
"""
from __future__ import annotations

import json
import sqlite3
from typing import Sequence


class LibraryRecords:
    """The library's writes and the reads they depend on, on a Gallery's own connection (``_db``) and in its
    transactions (``transaction``)."""

    _db: sqlite3.Connection

    # ------------------------------------------------------------------------------------------ ingest
    def add_face_box(self, observation_id: int, best: Sequence[float]) -> None:
        """Where a face observation is best seen, ``(time, x1, y1, x2, y2)``: its thumbnails are cut from there."""
        with self.transaction() as db:
            db.execute("INSERT INTO library_faces VALUES (?, ?, ?, ?, ?, ?)", (observation_id, *best))

    def add_words(self, observation_id: int, words: Sequence[tuple[float, float, str]]) -> None:
        """What was said in a voice observation (``[start, end, word]``, each word with its leading space), kept
        word by word for the times and as text for full-text search."""
        with self.transaction() as db:
            db.execute("INSERT INTO library_words VALUES (?, ?)", (observation_id, json.dumps(words)))
            db.execute("INSERT INTO library_text (text, observation_id) VALUES (?, ?)",
                       ("".join(w[2] for w in words).strip(), observation_id))

    # ------------------------------------------------------------------------------------------ unknown people
    def replace_clusters(self, clusters: dict[int, Sequence[int]]) -> None:
        """Forget the last clustering and keep this one: {cluster id: its observation ids}."""
        with self.transaction() as db:
            db.execute("DELETE FROM library_clusters")
            db.executemany("INSERT INTO library_clusters VALUES (?, ?)",
                           [(int(obs), int(cid)) for cid, members in clusters.items() for obs in members])

    def cluster_members(self, cluster_id: int) -> list[int]:
        """The observations of an unknown cluster, as last clustered, that are still unnamed (empty: no such
        cluster)."""
        return [r[0] for r in self._db.execute(
            "SELECT c.observation_id FROM library_clusters c JOIN observations o ON o.id = c.observation_id "
            "WHERE c.cluster_id = ? AND o.person_id IS NULL", (int(cluster_id),))]

    def remove_cluster(self, cluster_id: int) -> None:
        """Forget one cluster of the last clustering (its observations are named now)."""
        with self.transaction() as db:
            db.execute("DELETE FROM library_clusters WHERE cluster_id = ?", (int(cluster_id),))

    def merge_clusters(self, src: int, dst: int) -> None:
        """Make cluster ``src`` part of cluster ``dst``."""
        with self.transaction() as db:
            db.execute("UPDATE library_clusters SET cluster_id = ? WHERE cluster_id = ?", (int(dst), int(src)))

    def delete_unnamed(self, observation_ids: Sequence[int]) -> None:
        """Delete observations that are still unnamed, with their boxes, words and place in a cluster (cascades)."""
        with self.transaction() as db:
            db.executemany("DELETE FROM observations WHERE id = ? AND person_id IS NULL",
                           [(int(i),) for i in observation_ids])

