"""What `avid process` writes for one input: a versioned JSON document (schema ``avid.ingest``) and an .npz of
its embeddings, and reading them back."""
from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import AvidError
from ..private import private_output
from ..types import FaceDetection, IngestResult

SCHEMA_NAME = "avid.ingest"
SCHEMA_VERSION = 2   # 2: voice windows are local speakers of segmentation windows
EMBEDDING_ARRAYS = ("face_tracks", "speech_regions", "voice_windows")


# ----------------------------------------------------------------------------------------------- writing results


def output_stem(path: str | Path) -> str:
    """The base name of an input's outputs: its file name without the extension (spaces and accents are kept)."""
    return Path(path).stem or Path(path).name


def write_result(result: IngestResult, out_dir: str | Path, stem: str | None = None) -> Path:
    """Write ``<stem>.json`` (the documented schema) and ``<stem>.npz`` (all embeddings) into ``out_dir``.

    Both are private to the user and written atomically (avid.private): a crash never leaves a half-written result,
    and a link planted in a shared output folder is never followed.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = stem or output_stem(result.media.path)
    json_path, npz_path = out_dir / f"{stem}.json", out_dir / f"{stem}.npz"
    document, arrays = to_document(result, npz_path.name)
    # The JSON names the NPZ: it is moved into place last.
    with private_output(json_path) as tmp_json, private_output(npz_path) as tmp_npz:
        with open(tmp_npz, "wb") as fh:
            np.savez(fh, **arrays)
        tmp_json.write_text(json.dumps(document, indent=1, ensure_ascii=False), encoding="utf-8")
    return json_path


def _round(x: float, nd: int = 3) -> float:
    return round(float(x), nd)


def _detection_record(det: FaceDetection) -> dict:
    record = {"time": _round(det.time), "box": [_round(v, 1) for v in det.box], "probability": _round(det.probability, 4)}
    if det.landmarks is not None:
        record["landmarks"] = np.round(np.asarray(det.landmarks, dtype=float), 1).tolist()
    return record


def to_document(result: IngestResult, embeddings_file: str) -> tuple[dict, dict[str, np.ndarray]]:
    """The JSON document and the embedding arrays for one result (schema documented in README.md)."""
    def stack(vectors: list, dim: int) -> np.ndarray:
        present = [v for v in vectors if v is not None]
        return np.stack(present).astype(np.float32) if present else np.zeros((0, dim), np.float32)

    def refs(vectors: list, array: str) -> list:
        row, out = 0, []
        for v in vectors:
            out.append(None if v is None else {"array": array, "row": row})
            row += v is not None
        return out

    tracks, regions, windows = result.face_tracks, result.speech_regions, result.voice_windows
    arrays = {
        "face_tracks": stack([t.embedding for t in tracks], result.face_dim),
        "speech_regions": stack([r.embedding for r in regions], result.voice_dim),
        "voice_windows": stack([w.embedding for w in windows], result.voice_dim),
    }
    track_refs = refs([t.embedding for t in tracks], "face_tracks")
    region_refs = refs([r.embedding for r in regions], "speech_regions")
    window_refs = refs([w.embedding for w in windows], "voice_windows")
    document = {
        "schema": SCHEMA_NAME,
        "schema_version": SCHEMA_VERSION,
        "avid_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "media": asdict(result.media),
        "encoders": {"face": {"backend": result.face_backend, "dim": result.face_dim},
                     "voice": {"backend": result.voice_backend, "dim": result.voice_dim}},
        "embeddings_file": embeddings_file,
        "face_tracks": [
            {"id": t.id, "start": _round(t.start), "end": _round(t.end), "num_detections": len(t.detections),
             "mean_probability": _round(t.mean_probability, 4),
             "detections": [_detection_record(d) for d in t.detections],
             **({"mouth_openness": [_round(m, 3) for m in t.mouth_openness]} if t.mouth_openness else {}),
             "embedding": ref}
            for t, ref in zip(tracks, track_refs)],
        "speech_regions": [{"start": _round(r.start), "end": _round(r.end), "embedding": ref}
                           for r, ref in zip(regions, region_refs)],
        "voice_windows": [{"start": _round(w.start), "end": _round(w.end), "window": w.chunk,
                           "local_speaker": w.local_speaker, "alone_seconds": _round(w.clean_seconds),
                           "embedding": ref}
                          for w, ref in zip(windows, window_refs)],
        "warnings": list(result.warnings),
    }
    return document, arrays


def read_result(json_path: str | Path) -> tuple[dict, dict[str, np.ndarray]]:
    """Read back a document written by write_result, with its embedding arrays (no pickle is ever loaded)."""
    json_path = Path(json_path)
    try:
        document = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise AvidError(f"cannot read result ({exc.__class__.__name__})", json_path) from None
    if document.get("schema") != SCHEMA_NAME:
        raise AvidError("not an avid process result", json_path)
    if document.get("schema_version", 0) > SCHEMA_VERSION:
        raise AvidError(f"result schema version {document['schema_version']} is newer than this avid "
                        f"understands ({SCHEMA_VERSION}); upgrade avid", json_path)
    with np.load(json_path.parent / document["embeddings_file"], allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    return document, arrays

