"""The people the library has met but nobody has named: unnamed faces and voices clustered, each cluster with a
thumbnail, to be named (it becomes an enrolled person), merged or dismissed."""
from __future__ import annotations

import contextlib
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from ..config import Config, load_config
from ..errors import AvidError, StoreError
from ..identity.store import Gallery, LibraryObservations, StoreReader, companion, existing_store
from ..private import private_output
from ..types import JsonResult, Person


@dataclass
class UnknownCluster(JsonResult):
    """A group of unnamed observations that look (face) or sound (voice) like one person."""

    id: int
    n_face: int
    n_voice: int
    files: list[str]
    thumbnail: Optional[str] = None

    def to_dict(self) -> dict:
        return {"cluster": self.id, "faces": self.n_face, "voices": self.n_voice, "files": self.files,
                "thumbnail": self.thumbnail}


# ================================================================================================ unknown people


def _cluster(vectors: np.ndarray, threshold: float) -> np.ndarray:
    """Agglomerative clustering (average linkage, cosine): labels 0..n-1 of groups whose mean similarity
    passes ``threshold``."""
    if len(vectors) < 2:
        return np.zeros(len(vectors), dtype=np.int64)
    from sklearn.cluster import AgglomerativeClustering

    model = AgglomerativeClustering(n_clusters=None, metric="cosine", linkage="average",
                                    distance_threshold=1.0 - threshold)
    return model.fit_predict(vectors)


def unknown_clusters(db: str | Path, cfg: Config) -> list[UnknownCluster]:
    """Cluster the library's unnamed observations into people, largest first, and remember the clustering.

    Faces and voices are clustered separately (thresholds in ``library.unknown``); a voice cluster joins the face
    cluster it is heard with (speaker turns paired at ingest with the face seen saying them) when at least
    ``min_cooccurrence`` of its speech that was heard with a face was heard with that face cluster. Face clusters get a thumbnail JPEG in
    ``<db>-thumbnails/`` (private to the user; removed with any deleted person).
    """
    db = existing_store(Path(db).expanduser())
    ucfg = cfg.library.unknown
    with contextlib.closing(Gallery(db)) as gallery:
        with StoreReader(db) as store:
            faces = store.library_observations("face", unnamed_only=True)
            voices = store.library_observations("voice", unnamed_only=True)
            pairs = store.voice_face_pairs()
            boxes = store.face_boxes()
        face_labels = _cluster(faces.vectors, ucfg.face_threshold)
        voice_labels = _cluster(voices.vectors, ucfg.voice_threshold)
        groups = _join_face_voice(faces, face_labels, voices, voice_labels, pairs, ucfg.min_cooccurrence)
        groups = [g for g in groups if len(g[0]) + len(g[1]) >= ucfg.min_cluster_size]
        groups.sort(key=lambda g: (-(len(g[0]) + len(g[1])), min(list(faces.ids[g[0]]) + list(voices.ids[g[1]]))))
        gallery.replace_clusters({cid: list(faces.ids[f]) + list(voices.ids[v])
                                  for cid, (f, v) in enumerate(groups, 1)})
    thumbs_dir = companion(db, "thumbnails")
    clusters = []
    for cid, (f_rows, v_rows) in enumerate(groups, 1):
        files = sorted({faces.sources[r] for r in f_rows} | {voices.sources[r] for r in v_rows})
        thumbnail = _thumbnail(faces, f_rows, boxes, thumbs_dir / f"cluster-{cid}.jpg", ucfg.thumbnail_size) \
            if f_rows else None
        clusters.append(UnknownCluster(id=cid, n_face=len(f_rows), n_voice=len(v_rows), files=files,
                                       thumbnail=thumbnail))
    return clusters


def _join_face_voice(faces: LibraryObservations, face_labels: np.ndarray, voices: LibraryObservations,
                     voice_labels: np.ndarray, pairs: dict[int, int], min_share: float
                     ) -> list[tuple[list[int], list[int]]]:
    """Groups of (face rows, voice rows): each face cluster, with the voice clusters mostly heard with it."""
    face_row = {int(obs): row for row, obs in enumerate(faces.ids)}
    face_groups: dict[int, list[int]] = defaultdict(list)
    for row, label in enumerate(face_labels):
        face_groups[int(label)].append(row)
    voice_groups: dict[int, list[int]] = defaultdict(list)
    for row, label in enumerate(voice_labels):
        voice_groups[int(label)].append(row)
    joined: dict[int, list[int]] = defaultdict(list)     # face label -> voice rows
    alone: list[list[int]] = []
    for rows in voice_groups.values():
        seconds: dict[int, float] = defaultdict(float)   # face label -> seconds of this voice heard with it
        for r in rows:
            face_obs = pairs.get(int(voices.ids[r]))
            if face_obs in face_row:
                seconds[int(face_labels[face_row[face_obs]])] += max(voices.spans[r, 1] - voices.spans[r, 0], 1e-3)
        label, heard = max(seconds.items(), key=lambda kv: kv[1], default=(None, 0.0))
        if label is not None and heard / sum(seconds.values()) >= min_share:
            joined[label].extend(rows)
        else:
            alone.append(rows)
    return [(rows, joined.get(label, [])) for label, rows in face_groups.items()] + [([], rows) for rows in alone]


def _thumbnail(faces: LibraryObservations, rows: list[int], boxes: dict, path: Path, size: int) -> Optional[str]:
    """A JPEG of the cluster's most typical face (closest to its mean), cut from its source; None if unreadable."""
    vectors = faces.vectors[rows]
    centre = vectors.mean(axis=0)
    order = np.argsort(-(vectors @ centre))
    for i in order[:3]:                  # the source may have moved: try the next most typical face
        row = rows[int(i)]
        box = boxes.get(int(faces.ids[row]))
        if box is None:
            continue
        try:
            image = _frame_at(faces.sources[row], box[0])
        except (AvidError, OSError):
            continue
        if image is not None:
            return str(_write_crop(image, box[1:], path, size))
    return None


def _frame_at(path: str, seconds: float) -> Optional[np.ndarray]:
    """The RGB frame of ``path`` at ``seconds``, full size (an image is its own frame); seeks, no full decode."""
    from ..io import media

    if media.media_kind(path) == "image":
        return media.load_image(path)
    import av

    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            container.seek(int(max(0.0, seconds - 1.0) / stream.time_base), stream=stream, backward=True)
            for frame in container.decode(stream):
                if frame.time is not None and frame.time >= seconds - 0.02:
                    return frame.to_ndarray(format="rgb24")
    except (av.error.FFmpegError, IndexError):
        return None
    return None


def _write_crop(image: np.ndarray, box, path: Path, size: int) -> Path:
    from PIL import Image

    x1, y1, x2, y2 = box
    pad = 0.25 * max(x2 - x1, y2 - y1)
    h, w = image.shape[:2]
    crop = image[max(0, int(y1 - pad)):min(h, int(y2 + pad)), max(0, int(x1 - pad)):min(w, int(x2 + pad))]
    picture = Image.fromarray(crop)
    picture.thumbnail((size, size))
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    with private_output(path) as tmp:
        picture.save(tmp, format="JPEG", quality=90)
    return path


def name_cluster(db: str | Path, cluster_id: int, name: str, cfg: Optional[Config] = None) -> tuple[Person, int]:
    """Give every observation of an unknown cluster (as last listed by ``unknown_clusters``) to the person
    ``name``, created if new, in one transaction, and learn what is heard or seen with them
    (``learning.learn_from_library``). Returns the person and how many observations were named."""
    from ..identity.learning import learn_from_library
    from ..identity.training import refresh_z_prototypes

    db = existing_store(Path(db).expanduser())
    with contextlib.closing(Gallery(db)) as gallery:
        with gallery.transaction():
            ids = _cluster_members(gallery, db, cluster_id)
            person = gallery.find_person(name) or gallery.add_person(name)
            count = gallery.assign(ids, person.id)
            gallery.remove_cluster(cluster_id)
            refresh_z_prototypes(gallery, [person.id])    # when a shared model is trained, its z prototype too
            learn_from_library(gallery, cfg or load_config())
        return gallery.person(person.name), count


def _cluster_members(gallery: Gallery, db: Path, cluster_id: int) -> list[int]:
    """The unnamed observations of an unknown cluster as last listed; StoreError when there are none."""
    ids = gallery.cluster_members(cluster_id)
    if not ids:
        raise StoreError(f"no unknown cluster {cluster_id} (run `avid people unknown` to list them)", db)
    return ids


def merge_clusters(db: str | Path, src: int, dst: int) -> int:
    """Join unknown cluster ``src`` into ``dst`` (as last listed by ``unknown_clusters``): the user says they are one
    person, so that naming ``dst`` names both. A new clustering starts from the embeddings again (and may part them).
    Returns how many observations moved."""
    db = existing_store(Path(db).expanduser())
    if int(src) == int(dst):
        raise StoreError("cannot merge a cluster into itself", db)
    with contextlib.closing(Gallery(db)) as gallery:
        with gallery.transaction():
            _cluster_members(gallery, db, dst)
            moved = _cluster_members(gallery, db, src)
            gallery.merge_clusters(src, dst)
    companion(db, "thumbnails").joinpath(f"cluster-{int(src)}.jpg").unlink(missing_ok=True)
    return len(moved)


def dismiss_cluster(db: str | Path, cluster_id: int) -> int:
    """"Not a person": delete the unnamed observations of an unknown cluster (a face on a poster, music taken for a
    voice), with their boxes and words, so that they are neither listed nor found again. Returns how many."""
    db = existing_store(Path(db).expanduser())
    with contextlib.closing(Gallery(db)) as gallery:
        with gallery.transaction():
            ids = _cluster_members(gallery, db, cluster_id)
            gallery.delete_unnamed(ids)
    companion(db, "thumbnails").joinpath(f"cluster-{int(cluster_id)}.jpg").unlink(missing_ok=True)
    return len(ids)

