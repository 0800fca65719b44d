"""Identification accuracy over a manifest of files: what `avid eval ident MANIFEST.csv [--ablation]` reports.

The manifest has columns ``person, modality, role, path``: modality is ``face`` (a photo), ``voice`` (an audio
clip) or ``video`` (a face and a voice from one file); role is ``enrol`` or ``test``. Paths are relative to the
manifest's folder unless absolute. Test rows of people with no enrol rows are non-enrolled people: they should
come out ``unknown``.

Queries: each test face alone, each test voice alone, and for each person each (test face, test voice)
combination together (a video test row is one both-modality query). Per system and query mode it reports top-1
accuracy (closed set: the best-ranked person is right; open set: right and accepted), the equal error rate over
all (query, enrolled person) scores (genuine: the query's own person), and the false-accept rate of
non-enrolled queries at the configured threshold. Systems: the shared code ``z`` (a model trained on the
enrolment) and, with ``ablation``, raw face nearest neighbour, raw voice nearest neighbour, score-level fusion
of the two (scored per person on their mean embedding, which is the nearest neighbour with one enrolment each),
and the shared code across modalities (a face query against voice-only z prototypes and the reverse: pairs
enrolled together, so not matching a voice to a face never heard with it).
"""
from __future__ import annotations

import csv
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
from sklearn.metrics import roc_curve

from ..config import Config
from ..errors import AvidError
from ..identity.scoring import Evidence, score_people
from ..identity.store import Gallery
from ..identity.training import load_model, train
from ..pipeline.identify import evidence_from
from ..pipeline.models import Models

MODALITIES = ("face", "voice", "video")
ROLES = ("enrol", "test")
SYSTEMS = {"raw_face": "raw face NN", "raw_voice": "raw voice NN", "fusion": "score fusion", "z": "shared code z",
           "z_cross": "z cross-modal"}


@dataclass
class ManifestRow:
    person: str
    modality: str
    role: str
    path: str


@dataclass
class Query:
    person: str
    mode: str              # face | voice | both
    evidence: Evidence
    enrolled: bool


def read_manifest(manifest_csv: str | Path) -> list[ManifestRow]:
    """Rows of a manifest, checked: AvidError naming the file and line for anything malformed."""
    manifest_csv = Path(manifest_csv)
    try:
        with open(manifest_csv, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = {"person", "modality", "role", "path"} - set(reader.fieldnames or [])
            if missing:
                raise AvidError(f"manifest lacks columns {', '.join(sorted(missing))} "
                                f"(needs person, modality, role, path)", manifest_csv)
            rows = []
            for line, record in enumerate(reader, start=2):
                row = ManifestRow(*(str(record[k] or "").strip() for k in ("person", "modality", "role", "path")))
                if row.modality not in MODALITIES or row.role not in ROLES or not row.person or not row.path:
                    raise AvidError(f"line {line}: needs a person, modality in {MODALITIES}, role in {ROLES} "
                                    f"and a path", manifest_csv)
                if not Path(row.path).is_absolute():
                    row.path = str(manifest_csv.parent / row.path)
                rows.append(row)
    except OSError as exc:
        raise AvidError(f"cannot read manifest ({exc.strerror})", manifest_csv) from None
    if not any(r.role == "enrol" for r in rows) or not any(r.role == "test" for r in rows):
        raise AvidError("manifest needs both enrol and test rows", manifest_csv)
    return rows


def _queries(rows: list[ManifestRow], evidence: dict[str, Evidence], enrolled: set[str]) -> list[Query]:
    queries: list[Query] = []
    people = sorted({r.person for r in rows if r.role == "test"})
    for person in people:
        tests = [r for r in rows if r.role == "test" and r.person == person]
        faces = [evidence[r.path] for r in tests if r.modality == "face"]
        voices = [evidence[r.path] for r in tests if r.modality == "voice"]
        known = person in enrolled
        queries += [Query(person, "face", e, known) for e in faces]
        queries += [Query(person, "voice", e, known) for e in voices]
        queries += [Query(person, "both", Evidence(face=f.face, voice=v.voice, face_backend=f.face_backend,
                                                  voice_backend=v.voice_backend, face_sharpness=f.face_sharpness),
                          known)
                    for f in faces for v in voices]
        for r in tests:
            if r.modality == "video":
                e = evidence[r.path]
                queries.append(Query(person, e.mode, e, known))
    return queries


def equal_error_rate(genuine: list[float], impostor: list[float]) -> Optional[float]:
    """The error rate where false accepts equal false rejects (sklearn roc_curve); None without both kinds."""
    if not genuine or not impostor:
        return None
    labels = np.r_[np.ones(len(genuine)), np.zeros(len(impostor))]
    fpr, tpr, _ = roc_curve(labels, np.r_[genuine, impostor])
    fnr = 1 - tpr
    i = int(np.nanargmin(np.abs(fnr - fpr)))
    return float((fpr[i] + fnr[i]) / 2)


def _cross_modal(queries: list[Query], gallery: Gallery) -> dict[str, dict]:
    """The shared code alone across modalities: each face query against the people's voice-only z prototypes
    (``z_voice``), each voice query against their face-only ones. The enrolment's face and voice of a person were
    given together, so this measures matching pairs the model was trained on, not a voice to a face never heard
    with it. Top-1 and EER of the cosine in z (no acceptance threshold is calibrated for it)."""
    loaded = load_model(gallery)
    results: dict[str, dict] = {}
    for mode, target in (("face", "z_voice"), ("voice", "z_face")):
        people, protos = gallery.prototypes(target)
        top1 = n = 0
        genuine: list[float] = []
        impostor: list[float] = []
        for q in (q for q in queries if q.mode == mode and q.enrolled):
            if loaded is None or not people:
                break
            scores = protos @ loaded[0].encode(**{mode: getattr(q.evidence, mode)})
            for person, score in zip(people, scores):
                (genuine if person.name == q.person else impostor).append(float(score))
            n += 1
            top1 += people[int(np.argmax(scores))].name == q.person
        results[mode] = {"queries": n, "top1": top1 / n if n else None, "top1_open": None,
                         "eer": equal_error_rate(genuine, impostor), "non_enrolled": 0, "far": None}
    return results


def _score(queries: list[Query], gallery: Gallery, cfg: Config, system: str) -> dict[str, dict]:
    """Metrics per query mode for one system."""
    if system == "z_cross":
        return _cross_modal(queries, gallery)
    threshold = float(cfg.identify.threshold)
    wanted = {"raw_face": ("face",), "raw_voice": ("voice",), "fusion": ("face", "voice", "both"),
              "z": ("face", "voice", "both")}[system]
    loaded = load_model(gallery) if system == "z" else None
    results: dict[str, dict] = {}
    for mode in wanted:
        top1 = top1_open = n_enrolled = false_accepts = n_strangers = 0
        genuine: list[float] = []
        impostor: list[float] = []
        for q in (q for q in queries if q.mode == mode):
            ranked, _, _ = score_people(gallery, q.evidence.face, q.evidence.voice, cfg, q.evidence.face_backend,
                                        q.evidence.voice_backend, use_model=system == "z", loaded=loaded,
                                        face_sharpness=q.evidence.face_sharpness)
            if not ranked:
                continue
            for person, score in ranked:
                (genuine if person.name == q.person else impostor).append(score)
            best, best_score = ranked[0]
            if q.enrolled:
                n_enrolled += 1
                top1 += best.name == q.person
                top1_open += best.name == q.person and best_score >= threshold
            else:
                n_strangers += 1
                false_accepts += best_score >= threshold
        results[mode] = {
            "queries": n_enrolled, "top1": top1 / n_enrolled if n_enrolled else None,
            "top1_open": top1_open / n_enrolled if n_enrolled else None,
            "eer": equal_error_rate(genuine, impostor),
            "non_enrolled": n_strangers, "far": false_accepts / n_strangers if n_strangers else None}
    return results


def evaluate_manifest(manifest_csv: str | Path, cfg: Config, ablation: bool = False,
                      progress: Optional[Callable[[str], None]] = None) -> dict:
    """Embed every file of the manifest, then ``evaluate_embeddings``. Returns a JSON-ready report."""
    rows = read_manifest(manifest_csv)
    models = Models(cfg)
    evidence: dict[str, Evidence] = {}
    started = time.perf_counter()
    for i, path in enumerate(dict.fromkeys(r.path for r in rows)):
        if progress:
            progress(f"embedding {i + 1}: {path}")
        evidence[path] = evidence_from(path, cfg, models)
    enrolled = {r.person for r in rows if r.role == "enrol"}
    enrolment = [(r.person, r.modality, evidence[r.path], r.path) for r in rows if r.role == "enrol"]
    report = evaluate_embeddings(enrolment, _queries(rows, evidence, enrolled), cfg, ablation, progress)
    report["manifest"] = str(manifest_csv)
    report["embedding_seconds"] = round(time.perf_counter() - started - report["training_seconds"], 1)
    return report


def evaluate_embeddings(enrolment: list[tuple[str, str, Evidence, str]], queries: list[Query], cfg: Config,
                        ablation: bool = False, progress: Optional[Callable[[str], None]] = None) -> dict:
    """Enrol (person, modality, evidence, source) rows into a temporary gallery, train the shared model on it, and
    score every query; with ``ablation`` also the raw baselines and score fusion."""
    people = sorted({person for person, _, _, _ in enrolment})
    with tempfile.TemporaryDirectory(prefix="avid-eval-") as tmp, Gallery(Path(tmp) / "eval.db") as gallery:
        with gallery.transaction():
            for person in people:
                gallery.add_person(person)
            for person, modality, e, source in enrolment:
                face_id = None
                if e.face is not None and modality in ("face", "video"):
                    face_id = gallery.add_observation(person, "face", e.face, e.face_backend, source)
                if e.voice is not None and modality in ("voice", "video"):
                    gallery.add_observation(person, "voice", e.voice, e.voice_backend, source, paired_with=face_id)
        if progress:
            progress("training the shared model on the enrolment")
        report = train(gallery, cfg)
        systems = list(SYSTEMS) if ablation else ["z"]
        results = {system: _score(queries, gallery, cfg, system) for system in systems}
    return {"manifest": "", "enrolled_people": len(people), "threshold": float(cfg.identify.threshold),
            "training_seconds": round(report.seconds, 1), "systems": results}


def _percent(value: Optional[float]) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def format_report(report: dict) -> str:
    """The report as a plain table: one row per system and query mode."""
    lines = [f"# {report['manifest']}: {report['enrolled_people']} enrolled people, threshold "
             f"{report['threshold']:g} (calibrated score)",
             f"{'system':<16}{'query':<7}{'n':>5}{'top-1':>9}{'top-1 open':>12}{'EER':>8}{'non-enr.':>10}{'FAR':>8}"]
    for system, modes in report["systems"].items():
        for mode, r in modes.items():
            lines.append(f"{SYSTEMS[system]:<16}{mode:<7}{r['queries']:>5}{_percent(r['top1']):>9}"
                         f"{_percent(r['top1_open']):>12}{_percent(r['eer']):>8}{r['non_enrolled']:>10}"
                         f"{_percent(r['far']):>8}")
    lines.append("top-1: best-ranked person is right; top-1 open: right and accepted; FAR: non-enrolled queries "
                 "accepted as someone")
    return "\n".join(lines)
