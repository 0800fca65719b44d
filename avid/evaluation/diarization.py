"""Scoring who-spoke-when: RTTM files in and out, diarization and identification error rates.

The error rates come from pyannote.metrics, the reference implementation: DER maps hypothesis labels to reference
labels optimally (Hungarian) before counting; the identification error rate takes names as they are, so a
speaker labelled with the wrong name counts as confusion. ``collar`` is pyannote's: the total width of the
forgiveness zone around each reference boundary (0.5 = 0.25 s on each side).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from pyannote.core import Annotation, Segment, Timeline
from pyannote.metrics.diarization import DiarizationErrorRate
from pyannote.metrics.identification import IdentificationErrorRate

from ..errors import AvidError
from ..types import SpeechTurn
from ..voice.speech import true_runs


def read_rttm(path: str | Path) -> dict[str, Annotation]:
    """All SPEAKER lines of an RTTM file as one Annotation per file id (uri)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AvidError("RTTM file not found", path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AvidError(f"cannot read RTTM file ({exc.__class__.__name__})", path) from None
    annotations: dict[str, Annotation] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0] != "SPEAKER":   # other RTTM record types and comments
            continue
        if len(fields) < 8:
            raise AvidError(f"line {number}: an RTTM SPEAKER line needs at least 8 fields", path)
        uri, speaker = fields[1], fields[7]
        try:
            start, duration = float(fields[3]), float(fields[4])
        except ValueError:
            raise AvidError(f"line {number}: start and duration must be numbers", path) from None
        if start < 0 or duration < 0:
            raise AvidError(f"line {number}: negative start or duration", path)
        annotation = annotations.setdefault(uri, Annotation(uri=uri))
        segment = Segment(start, start + duration)
        annotation[segment, annotation.new_track(segment)] = speaker
    return annotations


def load_reference(path: str | Path, uri: str | None = None) -> Annotation:
    """One file's annotation from an RTTM: the one named ``uri``, or the only one in the file."""
    annotations = read_rttm(path)
    if uri is not None:
        if uri not in annotations:
            raise AvidError(f"no turns for file id {uri!r} (ids here: {', '.join(sorted(annotations)) or 'none'})",
                            path)
        return annotations[uri]
    if len(annotations) != 1:
        raise AvidError(f"holds {len(annotations)} file ids; say which one to use", path)
    return next(iter(annotations.values()))


def _uem(duration: float | None) -> Timeline | None:
    return Timeline([Segment(0.0, duration)]) if duration else None


def score_der(reference: Annotation, hypothesis: Annotation, collar: float = 0.5, skip_overlap: bool = False,
              duration: float | None = None) -> dict[str, float]:
    """Diarization error rate and its parts (seconds and rates), optimal label mapping.

    ``duration`` (seconds) scores the whole file, silence included; without it pyannote approximates the
    scored extent from the two annotations.
    """
    metric = DiarizationErrorRate(collar=collar, skip_overlap=skip_overlap)
    return _summary(metric(reference, hypothesis, detailed=True, uem=_uem(duration)), "diarization error rate")


def oracle_labels(reference: Annotation, speech: Timeline, overlap: bool = True, step: float = 0.01,
                  counts: Annotation | None = None) -> Annotation:
    """The reference speakers inside ``speech`` (a system's detected speech): what that system would output if it
    labelled every instant of its speech perfectly. Scoring it against the reference measures the error that the
    speech detection alone leaves. With ``overlap=False`` only one speaker is kept at each instant (the one whose
    turn began first), the best a system without overlap detection can do there; with ``counts`` (a system's
    output) at most as many as that output has talking at each instant, the best a system can do with its
    speech detection and its count of simultaneous speakers.
    """
    cropped = reference.crop(speech.support(), mode="intersection")
    if overlap and counts is None:
        return cropped
    single = Annotation(uri=reference.uri)
    turns = sorted(cropped.itertracks(yield_label=True), key=lambda item: item[0].start)
    if not turns:
        return single
    times = np.arange(0.0, max(segment.end for segment, _, _ in turns), step) + step / 2
    most = np.ones(len(times), dtype=int)
    if counts is not None:
        most = sum(((times >= segment.start) & (times < segment.end)).astype(int)
                   for segment, _ in counts.itertracks()) + np.zeros(len(times), dtype=int)
        if not overlap:
            most = np.minimum(most, 1)
    taken = np.zeros(len(times), dtype=int)
    for segment, _, label in turns:             # earliest turns first: they keep the instants they share
        inside = (times >= segment.start) & (times < segment.end) & (taken < most)
        taken += inside
        for first, end in true_runs(inside):
            part = Segment(first * step, end * step)
            single[part, single.new_track(part)] = label
    return single.support()


def score_identification(reference: Annotation, hypothesis: Annotation, collar: float = 0.5,
                         skip_overlap: bool = False, duration: float | None = None) -> dict[str, float]:
    """Identification error rate: labels must match the reference names exactly (no mapping)."""
    metric = IdentificationErrorRate(collar=collar, skip_overlap=skip_overlap)
    return _summary(metric(reference, hypothesis, detailed=True, uem=_uem(duration)),
                    "identification error rate")


def _summary(components: dict, rate_name: str) -> dict[str, float]:
    total = components["total"]
    parts = {"error_rate": float(components[rate_name]), "total": float(total)}
    for name, key in (("missed", "missed detection"), ("false_alarm", "false alarm"), ("confusion", "confusion")):
        parts[name] = float(components[key])
        parts[f"{name}_rate"] = float(components[key] / total) if total else 0.0
    return parts


def diarize_file(path: str | Path, cfg, encoder=None, **count_args) -> list[SpeechTurn]:
    """Audio of ``path`` -> segmentation and local-speaker embeddings -> speaker turns (for scripts and tests).

    Silence gives no turns.
    ``count_args``: num_speakers, min_speakers, max_speakers, as for ``avid.voice.diarize.diarize``.
    """
    from ..io.media import iter_audio  # imported here: scoring alone needs no decoder or network
    from ..voice.diarize import diarize
    from ..voice.embed import get_voice_encoder
    from ..voice.speech import analyse_speech

    encoder = encoder or get_voice_encoder(cfg)
    sample_rate = int(cfg.media.audio_sample_rate)
    chunks = iter_audio(path, sample_rate=sample_rate, chunk_seconds=float(cfg.media.audio_chunk_seconds))
    _, analysis = analyse_speech(chunks, cfg, encoder, sample_rate=sample_rate)
    return diarize(analysis.segmentation, analysis.windows, cfg, **count_args).turns
