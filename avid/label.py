"""Who speaks when, by name, linked to the face that is talking.

``label_recording`` runs the whole job on one recording:

1. ingest: face tracks (with mouth openness per detection), speech regions and voice windows;
2. diarization: segmentation-3.0 local speakers and their voice embeddings -> speaker turns ("spk0", "spk1"...;
   overlapped speech has both speakers' turns, flagged);
3. active-speaker association: each speaker is linked to the visible face tracks whose mouths move while it speaks.
   Evidence per (speaker, track): co-occurrence (how much of the speaker's speech the face is on screen for) and
   mouth motion (the spread of mouth openness during that speech above the jitter of a still mouth, against its
   spread while the speaker is silent, plus its correlation with the speech energy). A speaker with no such face
   stays voice-only; a face track belongs to at most one speaker, and a speaker has one face at a time.
4. naming: each speaker's voice (the mean of its local-speaker embeddings) plus the embedding of its main face track are
   matched against the gallery; unmatched speakers get stable ``unknown-N`` labels in order of first speech, and
   ``enroll_unknown`` adds them to the gallery.

Nothing here holds decoded video or audio: faces, voices and the speech energy track all come from the streaming
ingest.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from . import media
from .config import Config
from .errors import AvidError
from .ingest import Models, ProgressCallback, process_file
from .stages import stage
from .types import EnergyTrack, FaceTrack, IngestResult, LabelResult, Match, SpeakerLabel, SpeechTurn, VoiceWindow
from .vectors import unit_mean


# --------------------------------------------------------------------------------------------------- association
@dataclass
class PairEvidence:
    """How well one face track fits one speaker as the face that is talking."""

    speaker: str
    track_id: int
    visible_seconds: float        # the track is on screen this long while the speaker speaks
    cooccurrence: float           # visible_seconds over the speaker's speech time, 0..1
    mouth_score: Optional[float]  # 0..1 from mouth activity, contrast and correlation; None without mouth values
    activity: float = 0.0         # std of mouth openness while the speaker speaks
    activity_elsewhere: Optional[float] = None   # ... while the track is on screen and the speaker is silent
    correlation: float = 0.0      # mouth openness vs speech energy while the speaker speaks
    score: float = 0.0


def _in_turns(times: np.ndarray, turns: list[SpeechTurn]) -> np.ndarray:
    """Which of ``times`` fall inside any of ``turns`` (O(n log m): hours of face samples against many turns)."""
    merged: list[list[float]] = []
    for turn in sorted(turns, key=lambda t: t.start):
        if merged and turn.start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], turn.end)
        else:
            merged.append([turn.start, turn.end])
    if not merged:
        return np.zeros(np.shape(times), dtype=bool)
    starts, ends = np.array(merged).T
    index = np.searchsorted(starts, times, side="right") - 1
    return (index >= 0) & (times < ends[np.maximum(index, 0)])


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if a.size < 3 or np.std(a) < 1e-9 or np.std(b) < 1e-9:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def sample_period(cfg: Config) -> float:
    """Seconds each face detection stands for: the face sampling period."""
    return 1.0 / float(cfg.media.frame_rate)


def pair_evidence(speaker: str, turns: list[SpeechTurn], track: FaceTrack, energy: Optional[EnergyTrack],
                  cfg: Config) -> PairEvidence:
    """Co-occurrence and mouth-motion evidence that ``track`` is the face of ``speaker`` (whose turns are given).

    Mouth evidence, when the track has mouth openness values: the mouth must move while the speaker speaks (its
    spread above the jitter of a still mouth, or how much more open it is than while the speaker is silent),
    more than it does while the speaker is silent (a listener moves its mouth at other times: the contrast), and a mouth that opens on the loud syllables adds to it (correlation
    with speech energy; weak at a few frames a second, and music or noise blur it, so it only adds).
    """
    opts = cfg.association
    times = np.array([d.time for d in track.detections], dtype=np.float64)
    speaking = _in_turns(times, turns)
    speech_seconds = sum(t.end - t.start for t in turns)
    visible = float(speaking.sum()) * sample_period(cfg)
    cooccurrence = min(1.0, visible / speech_seconds) if speech_seconds > 0 else 0.0
    evidence = PairEvidence(speaker, track.id, visible, cooccurrence, None)
    mouth = np.asarray(track.mouth_openness, dtype=np.float64)
    min_samples = int(opts.min_mouth_samples)
    if mouth.size != times.size:
        evidence.score = cooccurrence   # no mouth evidence: co-occurrence alone
        return evidence
    measured = np.isfinite(mouth)
    talking, elsewhere = speaking & measured, ~speaking & measured
    if talking.sum() < min_samples:
        evidence.score = cooccurrence
        return evidence
    floor = float(opts.mouth_motion_floor)
    evidence.activity = float(np.std(mouth[talking]))
    motion = evidence.activity
    if elsewhere.sum() >= min_samples:
        # A mouth held more open while the speaker speaks than otherwise moves with the speech too, even when it
        # varies little within it (a short phrase sampled a few times).
        motion = max(motion, float(np.mean(mouth[talking]) - np.mean(mouth[elsewhere])))
    above = max(0.0, motion - floor) / floor   # how many jitter floors beyond a still mouth
    mouth_score = above / (1.0 + above)
    if energy is not None:
        level = energy.around(times[talking], float(opts.energy_window_seconds))
        evidence.correlation = _pearson(mouth[talking], level)
        # Correlation only counts for a mouth that moves: the jitter of a still one correlates by chance.
        mouth_score = 1.0 - (1.0 - mouth_score) * (1.0 - mouth_score * max(0.0, evidence.correlation))
    if elsewhere.sum() >= min_samples:
        evidence.activity_elsewhere = float(np.std(mouth[elsewhere]))
        contrast = evidence.activity / max(evidence.activity + evidence.activity_elsewhere, 1e-9)
        mouth_score *= min(1.0, 2.0 * contrast)   # 0.5 = moves as much either way; less = moves when others speak
    evidence.mouth_score = mouth_score
    weight = float(opts.mouth_weight)
    evidence.score = (1 - weight) * cooccurrence + weight * mouth_score
    return evidence


@dataclass
class Association:
    """What association found: speaker -> linked face tracks (best first), the evidence for every candidate
    (speaker, track) pair, and the voice clusters merged because one face speaks them all (absorbed, kept)."""

    links: dict[str, list[int]]
    evidence: list[PairEvidence]
    merged: list[tuple[str, str]]


def associate(turns: list[SpeechTurn], tracks: list[FaceTrack], energy: Optional[EnergyTrack],
              cfg: Config) -> Association:
    """Link speakers to the face tracks that are talking, and set ``track_id`` on each turn where one is visible.

    A track is linked to at most one speaker, the one it fits best; a speaker may have several tracks (the same
    person in several shots) but only one face at a time, so of two tracks on screen together only the better
    one is linked. Two speakers who never talk at the same time and whose speech the same face is talking are
    one person that diarization split (singing and talking, say): they are merged, and the turns relabelled.
    """
    merged: list[tuple[str, str]] = []
    while True:
        by_speaker = _turns_by_speaker(turns)
        candidates = [e for speaker, speaker_turns in by_speaker.items()
                      for e in _candidates(speaker, speaker_turns, tracks, energy, cfg)]
        accepted = [e for e in candidates if _acceptable(e, candidates, cfg)]
        merge = _speakers_sharing_a_face(accepted, by_speaker, cfg)
        if merge is None:
            break
        absorbed, kept = merge
        for turn in turns:
            if turn.speaker == absorbed:
                turn.speaker = kept
        merged.append(merge)
    best_for_track: dict[int, PairEvidence] = {}    # each track goes to the speaker it fits best
    for evidence in accepted:
        held = best_for_track.get(evidence.track_id)
        if held is None or (evidence.score, evidence.visible_seconds) > (held.score, held.visible_seconds):
            best_for_track[evidence.track_id] = evidence
    by_id = {track.id: track for track in tracks}
    links: dict[str, list[int]] = {speaker: [] for speaker in by_speaker}
    for evidence in sorted(best_for_track.values(), key=lambda e: -e.score):
        linked = [by_id[t] for t in links[evidence.speaker]]
        if not linked or _same_person_elsewhere(by_id[evidence.track_id], linked, cfg):
            links[evidence.speaker].append(evidence.track_id)
    _link_turns(turns, tracks, links, cfg)
    return Association(links, candidates, merged)


def _turns_by_speaker(turns: list[SpeechTurn]) -> dict[str, list[SpeechTurn]]:
    """Turns grouped by speaker, speakers in order of first speech."""
    by_speaker: dict[str, list[SpeechTurn]] = {}
    for turn in sorted(turns, key=lambda t: t.start):
        by_speaker.setdefault(turn.speaker, []).append(turn)
    return by_speaker


def _candidates(speaker: str, speaker_turns: list[SpeechTurn], tracks: list[FaceTrack],
                energy: Optional[EnergyTrack], cfg: Config) -> list[PairEvidence]:
    """Evidence for each track on screen long enough while the speaker speaks."""
    need = min(float(cfg.association.min_overlap_seconds), 0.5 * sum(t.end - t.start for t in speaker_turns))
    found = []
    for track in tracks:
        if track.detections:
            evidence = pair_evidence(speaker, speaker_turns, track, energy, cfg)
            if evidence.visible_seconds >= need:
                found.append(evidence)
    return found


def _speakers_sharing_a_face(accepted: list[PairEvidence], by_speaker: dict[str, list[SpeechTurn]],
                             cfg: Config) -> Optional[tuple[str, str]]:
    """(absorbed, kept): two speakers whose speech one face track is talking, who never speak together; the
    later speaker is absorbed into the earlier. None when there are no such two."""
    order = {speaker: i for i, speaker in enumerate(by_speaker)}
    speakers_of: dict[int, list[str]] = {}
    for evidence in accepted:
        if evidence.mouth_score is not None:    # co-occurrence alone is no proof that a face speaks
            speakers_of.setdefault(evidence.track_id, []).append(evidence.speaker)
    for speakers in speakers_of.values():
        speakers = sorted(speakers, key=order.get)
        for i, kept in enumerate(speakers):
            for absorbed in speakers[i + 1:]:
                together = _overlap_seconds(by_speaker[kept], by_speaker[absorbed])
                if together < float(cfg.association.min_overlap_seconds):
                    return absorbed, kept
    return None


def _overlap_seconds(a: list[SpeechTurn], b: list[SpeechTurn]) -> float:
    """Seconds during which a turn of ``a`` and a turn of ``b`` are both running (both sorted by start)."""
    total, j = 0.0, 0
    for turn in a:
        while j < len(b) and b[j].end <= turn.start:
            j += 1
        k = j
        while k < len(b) and b[k].start < turn.end:
            total += min(turn.end, b[k].end) - max(turn.start, b[k].start)
            k += 1
    return total


def _same_person_elsewhere(track: FaceTrack, linked: list[FaceTrack], cfg: Config) -> bool:
    """Whether ``track`` can be one more face track of a speaker already linked to ``linked`` (best first): it
    is never on screen together with them, and it looks like the best one, as the face encoder's calibrated
    acceptance threshold judges (a speaker is one person)."""
    for other in linked:
        if min(track.end, other.end) - max(track.start, other.start) >= float(cfg.association.min_overlap_seconds):
            return False
    main = linked[0].embedding
    if track.embedding is None or main is None:
        return False
    from .identify import raw_threshold   # the encoder's calibrated same-person similarity

    return float(np.dot(track.embedding, main)) >= raw_threshold(cfg, cfg.faces.encoder.backend)


def _acceptable(evidence: PairEvidence, candidates: list[PairEvidence], cfg: Config) -> bool:
    opts = cfg.association
    if evidence.mouth_score is None:
        # Without mouth values only an unambiguous face can be linked: the one face on screen for that speaker.
        rivals = [c for c in candidates if c.speaker == evidence.speaker and c.track_id != evidence.track_id]
        return not rivals and evidence.cooccurrence >= float(opts.min_cooccurrence_alone)
    return evidence.mouth_score >= float(opts.min_mouth_score) and evidence.score >= float(opts.min_score)


def _link_turns(turns: list[SpeechTurn], tracks: list[FaceTrack], links: dict[str, list[int]], cfg: Config) -> None:
    """Each turn gets the speaker's linked track that is on screen longest during it, if long enough."""
    times_of = {track.id: np.array([d.time for d in track.detections]) for track in tracks}
    for turn in turns:
        turn.track_id = None
        need = min(float(cfg.association.min_overlap_seconds), 0.5 * (turn.end - turn.start))
        best, best_seconds = None, 0.0
        for track_id in links.get(turn.speaker, []):
            times = times_of[track_id]
            count = np.searchsorted(times, turn.end, side="left") - np.searchsorted(times, turn.start, side="left")
            seconds = float(count) * sample_period(cfg)
            if seconds >= need and seconds > best_seconds:
                best, best_seconds = track_id, seconds
        turn.track_id = best


# --------------------------------------------------------------------------------------------------- naming
def speaker_voice(speaker_windows: list[VoiceWindow], min_alone: float) -> Optional[np.ndarray]:
    """A speaker's voice: the mean (re-normalised) of the embeddings of its windows where it talks alone for at
    least ``min_alone`` seconds (mixed or short speech blurs the voice); of its longest ones if none does."""
    if not speaker_windows:
        return None
    longest = max(w.clean_seconds for w in speaker_windows)
    clean = [w for w in speaker_windows if w.clean_seconds >= min(min_alone, longest)]
    mean = unit_mean([w.embedding for w in clean])
    return mean if mean is not None and mean.any() else None


def _unknown_number(name: str, prefix: str) -> Optional[int]:
    found = re.fullmatch(rf"{re.escape(prefix)}-(\d+)", name)
    return int(found.group(1)) if found else None


def name_speakers(turns: list[SpeechTurn], voices: dict[str, list[VoiceWindow]], tracks: list[FaceTrack],
                  links: dict[str, list[int]], cfg: Config, gallery=None, enroll_unknown: bool = False,
                  source: str = "", backends: tuple[str, str] = ("", "")) -> list[SpeakerLabel]:
    """Name every speaker from the gallery (voice + main linked face), or ``unknown-N`` in order of first speech.

    ``voices``: each speaker's voice windows (what diarization assigned to it).

    Numbering continues after the highest ``unknown-N`` already in the gallery, so labels never collide with
    people enrolled earlier; ``enroll_unknown`` stores each unknown speaker (voice and face) under its label.
    ``backends`` names the (face, voice) encoders that made the embeddings, as the gallery records them.
    """
    prefix = str(cfg.label.unknown_prefix)
    by_speaker: dict[str, list[SpeechTurn]] = {}
    for turn in sorted(turns, key=lambda t: t.start):
        by_speaker.setdefault(turn.speaker, []).append(turn)
    tracks_by_id = {track.id: track for track in tracks}
    next_unknown = 1 + max([n for n in (_unknown_number(p, prefix) for p in _gallery_names(gallery)) if n] or [0])
    speakers: list[SpeakerLabel] = []
    for speaker, speaker_turns in by_speaker.items():   # in order of first speech
        track_ids = links.get(speaker, [])
        voice = speaker_voice(voices.get(speaker, []), float(cfg.label.voice_min_alone_seconds))
        face = tracks_by_id[track_ids[0]].embedding if track_ids else None
        sharpness = tracks_by_id[track_ids[0]].sharpness if track_ids else None
        label = SpeakerLabel(speaker=speaker, name="", track_ids=list(track_ids),
                             speech_seconds=float(sum(t.end - t.start for t in speaker_turns)),
                             n_turns=len(speaker_turns))
        match = _identify(gallery, face, voice, cfg, backends, sharpness)
        if match is not None:
            label.score, label.modality = match.score, match.modality
        if match is not None and match.accepted and match.person_id is not None:
            label.name, label.person_id, label.known = match.name, match.person_id, True
        else:
            label.name = f"{prefix}-{next_unknown}"
            next_unknown += 1
            if enroll_unknown and gallery is not None and (face is not None or voice is not None):
                label.person_id = _enroll(gallery, label, face, voice, source, speaker_turns, backends)
        speakers.append(label)
    names = {s.speaker: s for s in speakers}
    for turn in turns:
        turn.name, turn.score = names[turn.speaker].name, names[turn.speaker].score
    return speakers


def _gallery_names(gallery) -> list[str]:
    if gallery is None:
        return []
    return [person.name for person in gallery.people()]


def _identify(gallery, face: Optional[np.ndarray], voice: Optional[np.ndarray], cfg: Config,
              backends: tuple[str, str], face_sharpness: Optional[float] = None) -> Optional[Match]:
    """The best gallery match for a face and/or voice embedding (``accepted`` says whether it passes the open-set
    threshold), or None with no gallery, an empty one, or nothing to match."""
    if gallery is None or (face is None and voice is None) or not gallery.people():
        return None
    from .identify import Evidence, query_embeddings

    evidence = Evidence(face=face, voice=voice, face_backend=backends[0], voice_backend=backends[1],
                        face_sharpness=face_sharpness)
    matches = query_embeddings(gallery, evidence, top_k=1, cfg=cfg).matches
    return matches[0] if matches else None


def _enroll(gallery, label: SpeakerLabel, face: Optional[np.ndarray], voice: Optional[np.ndarray], source: str,
            speaker_turns: list[SpeechTurn], backends: tuple[str, str]) -> int:
    """Store an unknown speaker under its label: its face (if linked) and its voice, paired as one person's."""
    from .identify import refresh_z_prototypes

    start, end = speaker_turns[0].start, speaker_turns[-1].end
    face_backend, voice_backend = backends
    with gallery.transaction():   # all of it or nothing
        person_id = gallery.add_person(label.name).id
        face_id = None
        if face is not None:
            face_id = gallery.add_observation(person_id, "face", face, face_backend, source, start=start, end=end,
                                              track_id=label.track_ids[0])
        if voice is not None:
            gallery.add_observation(person_id, "voice", voice, voice_backend, source, start=start, end=end,
                                    paired_with=face_id)
        refresh_z_prototypes(gallery, [person_id])   # findable in the shared space too, if a model is trained
    return person_id


def name_tracks(tracks: list[FaceTrack], speakers: list[SpeakerLabel], gallery, cfg: Config,
                face_backend: str = "") -> dict[int, str]:
    """The name to show on each face track: its speaker's, or a face-only gallery match for silent faces."""
    names: dict[int, str] = {}
    for speaker in speakers:
        for track_id in speaker.track_ids:
            names[track_id] = speaker.name
    for track in tracks:
        if track.id in names or track.embedding is None:
            continue
        match = _identify(gallery, track.embedding, None, cfg, (face_backend, ""), track.sharpness)
        if match is not None and match.accepted and match.person_id is not None:
            names[track.id] = match.name
    return names


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
    cut the turns (avid.active_speaker); elsewhere, and with no such stretch, the audio's turns stay."""
    from .active_speaker import fuse, lip_sync, relink, turn_sync

    with stage("lip sync"):
        sync = lip_sync(path, result.media, result.face_tracks, result.speech_regions, result.energy, cfg)
    if sync is None or not sync.scores:
        return turns, links
    links = relink(turns, links, sync, cfg)
    turns, links = fuse(turns, links, sync, cfg)
    _link_turns(turns, result.face_tracks, links, cfg)
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
        from .voice.diarize import diarize

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
        from .transcribe import attach_words

        attach_words(result.words, labelled.turns, float(cfg.transcribe.word_gap_seconds))
        labelled.words = list(result.words)
    elif transcribe and result.speech_regions:
        labelled.warnings.append("no words transcribed")
    return labelled
