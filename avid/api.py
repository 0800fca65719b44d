"""avid's Python API: what the command line does, as three classes.

``Pipeline`` reads media (``avid process``, ``avid label``), ``Gallery`` knows people (``avid enroll``, ``query``,
``people list``, ``train``) and ``Library`` is a searchable collection (``avid process --db``, ``avid search``).
Arguments have the command line's names and defaults; results are the dataclasses the commands print, each with
``to_dict()`` and ``to_json()``. Models load on first use, once per Pipeline, and a Gallery or Library given a
``pipeline`` shares its models and configuration. This module imports nothing heavy itself: ``import avid`` stays
quick, and torch loads when a model is first needed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Union

from .config import Config, load_config, merge_config

PathLike = Union[str, Path]
Paths = Union[PathLike, Sequence[PathLike]]


def _config(config: Union[None, PathLike, dict, Config], overrides: dict) -> Config:
    """A Config from a YAML file's path, a dict of overrides, or a Config, with ``overrides`` merged over it."""
    if not isinstance(config, Config):
        config = load_config(None, overrides=config) if isinstance(config, dict) else load_config(config)
    return load_config(None, overrides=merge_config(config.to_dict(), overrides)) if overrides else config


def _paths(value: Optional[Paths]) -> list[str]:
    """One path or several, as a list (None: none)."""
    if value is None:
        return []
    return [str(value)] if isinstance(value, (str, Path)) else [str(v) for v in value]


class Pipeline:
    """Face tracks, speech and speakers of media files, with models loaded once and kept.

    ``config``: a YAML file's path, a dict of overrides or a Config (default: avid/configs/default.yaml);
    ``overrides``: config sections as keyword arguments, e.g. ``Pipeline(media={"frame_rate": 2.0})``.
    Unknown keys and out-of-range values raise avid.ConfigError, naming the key.
    """

    def __init__(self, config: Union[None, PathLike, dict, Config] = None, **overrides):
        self.config = _config(config, overrides)
        self._models = None

    @property
    def models(self):
        """The encoders (avid.pipeline.models.Models), each loaded on first use."""
        if self._models is None:
            from .pipeline.models import Models

            self._models = Models(self.config)
        return self._models

    def process(self, path: PathLike, transcribe: bool = False, language: Optional[str] = None):
        """`avid process PATH`: face tracks, speech regions and voice windows with embeddings (avid.IngestResult;
        ``.write(out_dir)`` writes the JSON and .npz that the command writes). ``transcribe`` also finds the words."""
        from .pipeline.ingest import process_file

        return process_file(path, self.config, self.models, transcribe=transcribe, language=language)

    def label(self, path: PathLike, num_speakers: Optional[int] = None, min_speakers: Optional[int] = None,
              max_speakers: Optional[int] = None, transcribe: bool = False, language: Optional[str] = None,
              gallery: Union[None, PathLike, "Gallery"] = None, enroll_unknown: bool = False):
        """`avid label PATH`: who speaks when, linked to the face that is talking (avid.LabelResult).

        ``num_speakers`` is the command's ``--speakers``. Speakers are named from ``gallery`` (a Gallery or a
        store's path; default: none, so they are unknown-1, unknown-2...); ``enroll_unknown`` adds the unmatched
        ones to it. ``transcribe`` adds the words, each under its speaker's name."""
        from .identity.store import Gallery as Store
        from .pipeline.label import label_recording
        from .voice.diarize import check_counts

        check_counts(num_speakers, min_speakers, max_speakers)     # before any work
        db = gallery.path if isinstance(gallery, Gallery) else gallery
        if db is not None and not Path(db).expanduser().exists() and not enroll_unknown:
            from .errors import StoreError

            raise StoreError("no gallery database here (enrol someone first)", db)
        if db is None:
            return label_recording(path, self.config, num_speakers=num_speakers, min_speakers=min_speakers,
                                   max_speakers=max_speakers, models=self.models, transcribe=transcribe,
                                   language=language, enroll_unknown=enroll_unknown)
        with Store(Path(db).expanduser()) as store:
            return label_recording(path, self.config, gallery=store, num_speakers=num_speakers,
                                   min_speakers=min_speakers, max_speakers=max_speakers, models=self.models,
                                   transcribe=transcribe, language=language, enroll_unknown=enroll_unknown)


class Gallery:
    """The people avid knows: enrol them from photos, voice clips and videos, then ask who is in a file.

    ``path``: the SQLite store (default: $AVID_DB, else gallery.db in the user's avid data directory), created on
    the first enrolment. ``pipeline`` shares its models and configuration (default: a Pipeline of its own).
    """

    def __init__(self, path: Optional[PathLike] = None, pipeline: Optional[Pipeline] = None):
        from .identity.store import default_path

        self.path = Path(path).expanduser() if path is not None else default_path()
        self.pipeline = pipeline or Pipeline()

    def _open(self, must_exist: bool = True):
        from .errors import StoreError
        from .identity.store import Gallery as Store

        if must_exist and not self.path.exists():
            raise StoreError("no gallery database here yet: enrol someone first", self.path)
        return Store(self.path)

    def enroll(self, name: str, image: Optional[Paths] = None, audio: Optional[Paths] = None,
               video: Optional[Paths] = None, track: Optional[int] = None, add: bool = False):
        """`avid enroll NAME`: add a person from photos, voice clips and/or videos (each one path or a list); all
        or nothing. A name already enrolled is refused unless ``add``. ``track`` picks a video's face track."""
        from .pipeline.identify import enroll

        with self._open(must_exist=False) as store:
            return enroll(store, name, images=_paths(image), audios=_paths(audio), videos=_paths(video),
                          track=track, add=add, cfg=self.pipeline.config, models=self.pipeline.models)

    def query(self, image: Optional[PathLike] = None, audio: Optional[PathLike] = None,
              video: Optional[PathLike] = None, track: Optional[int] = None, top_k: Optional[int] = None):
        """`avid query`: who is this? Ranked matches and ``.answer`` (``unknown`` when nobody passes the
        threshold). ``top_k`` defaults to the config's identify.top_k."""
        from .pipeline.identify import query

        with self._open() as store:
            return query(store, image=image, audio=audio, video=video, top_k=top_k, cfg=self.pipeline.config,
                         models=self.pipeline.models, track=track)

    def people(self):
        """`avid people list`: everyone enrolled (avid.Person: name, n_face, n_voice...), by name."""
        with self._open() as store:
            return store.people()

    def train(self):
        """`avid train`: fit the shared face-voice model on the gallery (seeded) and store it."""
        from .identity.training import train

        with self._open() as store:
            return train(store, self.pipeline.config)


class Library:
    """A searchable collection of recordings in one SQLite store (the gallery's file can be the same one).

    ``pipeline`` gives the configuration and the models for searches (default: a Pipeline of its own).
    """

    def __init__(self, path: PathLike, pipeline: Optional[Pipeline] = None):
        self.path = Path(path).expanduser()
        self.pipeline = pipeline or Pipeline()

    def add(self, paths: Paths, workers: int = 0, engine: str = "local", address: Optional[str] = None,
            transcribe: bool = False, quiet: bool = True):
        """`avid process PATHS --db`: files, folders and globs into the library; resumable (what is stored is
        skipped). ``workers`` 0: the config's library.workers (one per core). Returns the run's summary; a file
        that fails is listed in it, not raised."""
        from .library.collection import process_collection

        cfg = self.pipeline.config
        if transcribe:
            cfg = _config(cfg, {"library": {"transcribe": True}})
        return process_collection(_paths(paths), self.path, cfg, workers=workers, engine=engine, address=address,
                                  quiet=quiet)

    def search(self, image: Optional[PathLike] = None, audio: Optional[PathLike] = None,
               video: Optional[PathLike] = None, text: Optional[str] = None, person: Optional[str] = None,
               track: Optional[int] = None, top_k: Optional[int] = None):
        """`avid search`: where a person (a photo, a voice clip, a video, or an enrolled ``person``'s name)
        appears or speaks, one hit per file and modality, best first; or with ``text``, where those words were
        said (by ``person`` only, if given). ``top_k``: the config's library.search.top_k."""
        from .errors import AvidError
        from .library.search import search, search_text

        if text is not None:
            if image or audio or video:
                raise AvidError("text searches what was said; it combines with person only")
            return search_text(self.path, text, person=person, top_k=top_k, cfg=self.pipeline.config)
        return search(self.path, image=image, audio=audio, video=video, person=person, top_k=top_k,
                      cfg=self.pipeline.config, models=self.pipeline.models, track=track)
