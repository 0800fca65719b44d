"""Who speaks when, by name, linked to the face that is talking.

``label_recording`` runs the whole job on one recording:

1. ingest: face tracks (with mouth openness per detection), speech regions and voice windows;
2. diarization: segmentation-3.0 local speakers and their voice embeddings -> speaker turns ("spk0", "spk1"...;
   overlapped speech has both speakers' turns, flagged);
3. association (avid.pipeline.associate): each speaker is linked to the visible face tracks whose mouths move while
   it speaks; where two faces share the screen, the lips in time with the sound decide (avid.pipeline.active_speaker);
4. naming (avid.pipeline.name): each speaker's voice plus the embedding of its main face track are matched against
   the gallery; unmatched speakers get stable ``unknown-N`` labels in order of first speech, and ``enroll_unknown``
   adds them to the gallery.

Nothing here holds decoded video or audio: faces, voices and the speech energy track all come from the streaming
ingest.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..config import Config
from ..errors import AvidError
from ..io import media
from ..stages import stage
from ..types import IngestResult, LabelResult, SpeechTurn, VoiceWindow
from .associate import link_turns, associate
from .ingest import ProgressCallback, process_file
from .models import Models
from .name import name_speakers, name_tracks


# --------------------------------------------------------------------------------------------------- the job
def _join_adjacent(turns: list[SpeechTurn], gap: float) -> list[SpeechTurn]:
    """Join back-to-back turns of one speaker (and face) that touch or are at most ``gap`` apart."""
    joined: list[SpeechTurn] = []
    for turn in sorted(turns, key=lambda t: t.start):
        last = joined[-1] if joined else None
        if (last is not None and last.speaker == turn.speaker and last.track_id == turn.track_id
                and turn.start - last.end <= gap):
            last.end = max(last.end, turn.end)
            last.overlap = last.overlap or turn.overlap
        else:
            joined.append(turn)
    return joined


def _with_the_lips(path, result: IngestResult, turns: list[SpeechTurn], links: dict[str, list[int]],
                   warnings: list[str], cfg: Config) -> tuple[list[SpeechTurn], dict[str, list[int]]]:
    """Where two faces share the screen during speech, the mouths in time with the sound decide the links and
    cut the turns (avid.pipeline.active_speaker); elsewhere, and with no such stretch, the audio's turns stay."""
    from .active_speaker import fuse, lip_sync, relink, turn_sync

    with stage("lip sync"):
        sync = lip_sync(path, result.media, result.face_tracks, result.speech_regions, result.energy, cfg)
    if sync is None or not sync.scores:
        return turns, links
    links = relink(turns, links, sync, cfg)
    turns, links = fuse(turns, links, sync, cfg)
    link_turns(turns, result.face_tracks, links, cfg)
    turn_sync(turns, sync)
    if not any(turn.lip_sync is not None and turn.lip_sync >= float(cfg.active_speaker.min_sync) for turn in turns):
        warnings.append("faces share the screen but no mouth moves in time with the speech: turns from the audio")
    return turns, links


def label_recording(path: str | Path, cfg: Config, gallery=None, num_speakers: Optional[int] = None,
                    min_speakers: Optional[int] = None, max_speakers: Optional[int] = None,
                    enroll_unknown: bool = False, ingest: Optional[IngestResult] = None,
                    models: Optional[Models] = None, progress: Optional[ProgressCallback] = None,
                    transcribe: bool = False, language: Optional[str] = None) -> LabelResult:
    """Label the speakers of a video or audio recording: turns with names, linked to the face that is talking;
    with ``transcribe`` also the words, each under the name of the turn it was said in.

    ``ingest`` reuses an earlier ``process_file`` result of the same file. Audio-only input gives voice-only
    speakers; a video without audio gives its face tracks and no turns (said in ``warnings``); silence gives no
    turns. Raises MediaError for unreadable input and NoContentError when there is neither a face nor speech.
    """
    if enroll_unknown and gallery is None:
        raise AvidError("--enroll-unknown needs a gallery to enrol into")
    if media.media_kind(path) == "image":
        raise AvidError("an image has no speakers to label (use `avid query --image` to identify a face)", path)
    result = ingest or process_file(path, cfg, models=models, progress=progress, transcribe=transcribe,
                                    language=language)
    info = result.media
    labelled = LabelResult(media=info, face_tracks=list(result.face_tracks), warnings=list(result.warnings))
    turns: list[SpeechTurn] = []
    voices: dict[str, list[VoiceWindow]] = {}
    if info.has_audio and result.voice_windows and result.segmentation is not None:
        from ..voice.diarize import diarize

        with stage("diarize"):
            diarization = diarize(result.segmentation, result.voice_windows, cfg, num_speakers=num_speakers,
                                  min_speakers=min_speakers, max_speakers=max_speakers)
        turns, voices = diarization.turns, diarization.voices(result.voice_windows)
    if not turns and result.speech_regions:   # (no audio stream and no speech are already in the warnings)
        labelled.warnings.append("speech too short to tell speakers apart: no speaker turns")
    links: dict[str, list[int]] = {}
    if turns and result.face_tracks:
        with stage("associate"):
            association = associate(turns, result.face_tracks, result.energy, cfg)
        links = association.links
        for absorbed, kept in association.merged:
            labelled.warnings.append(f"voices {kept} and {absorbed} are one speaker: the same face speaks both")
            voices.setdefault(kept, []).extend(voices.pop(absorbed, []))
        if association.merged:
            turns = _join_adjacent(turns, float(cfg.diarization.merge_gap_seconds))
        turns, links = _with_the_lips(path, result, turns, links, labelled.warnings, cfg)
    labelled.turns = sorted(turns, key=lambda t: (t.start, t.end))
    with stage("name"):
        labelled.speakers = name_speakers(labelled.turns, voices, result.face_tracks, links, cfg,
                                          gallery=gallery, enroll_unknown=enroll_unknown, source=str(path),
                                          backends=(result.face_backend, result.voice_backend))
        labelled.track_names = name_tracks(result.face_tracks, labelled.speakers, gallery, cfg,
                                           result.face_backend)
    if result.words:
        from ..text.transcribe import attach_words

        attach_words(result.words, labelled.turns, float(cfg.transcribe.word_gap_seconds))
        labelled.words = list(result.words)
    elif transcribe and result.speech_regions:
        labelled.warnings.append("no words transcribed")
    return labelled
