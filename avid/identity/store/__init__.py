"""The store: known people, their face and voice observations, prototypes, the shared model and the library's
records, in one SQLite file. Every SQL statement of avid is in this package.

One embedded database file holds everything, so a gallery (or library) can be copied, backed up or deleted as a
unit. It is created private to the user (file 0600, a directory it creates 0700), runs in WAL mode so readers never
block on a writer, and every change happens inside one transaction: a failed enrolment leaves nothing half-written.

Tables (schema.py; schema version in ``meta``):

- ``people``: one row per named person.
- ``observations``: one embedding each, of a face or a voice, from a source file and time range. ``person_id`` is
  NULL for unnamed observations (the batch library). A voice observation may point at the face observation it was
  heard with (``paired_with``): the two belong to the same person, which the shared model learns from.
- ``prototypes``: one vector per person per matching space: ``face`` and ``voice`` (mean raw embeddings), and in
  the shared code ``z`` (face and voice together), ``z_face`` and ``z_voice`` (each alone). Raw prototypes are
  kept current on every change; the z ones come with the trained model.
- ``model``: the current shared-model checkpoint (bytes) and its metadata.
- ``files``: processed inputs by content hash and status, for the batch library to resume from.
- ``rejections``: learned observations a person rejected (never learned for them again).
- ``library_faces``, ``library_clusters``, ``library_words``, ``library_text``: what the library keeps of its
  observations (where a face is best seen, the last clustering of unknown people, what was said).

Modules: ``schema`` (tables and migrations), ``gallery`` (``Gallery``: the store opened for reading and writing),
``library`` (the library's records, written through ``Gallery``), ``reader`` (``StoreReader``: read-only, for
searches and the web app), ``base`` (paths, names, vectors as bytes, errors).

Deleting a person deletes every row of theirs (foreign keys cascade), with ``secure_delete`` on and the WAL
checkpointed, so their bytes do not linger in the file; the caches beside the store (index, thumbnails) go too. The
shared model, whose weights were fitted with their data, is dropped too and must be retrained.
"""
from .base import (CACHES, DAMAGED, DB_ENV, DB_FILENAME, MAX_NAME_LENGTH, MODALITIES, SPACES, check_health,
                   clean_name, companion, default_path, existing_store, from_blob, name_key, remove_store,
                   store_error, to_blob)
from .gallery import Gallery, Observation
from .reader import LibraryObservations, StoreReader
from .schema import APP_ID, SCHEMA_VERSION

__all__ = ["APP_ID", "CACHES", "DAMAGED", "DB_ENV", "DB_FILENAME", "MAX_NAME_LENGTH", "MODALITIES", "SCHEMA_VERSION",
           "SPACES", "Gallery", "LibraryObservations", "Observation", "StoreReader", "check_health", "clean_name",
           "companion", "default_path", "existing_store", "from_blob", "name_key", "remove_store", "store_error",
           "to_blob"]
