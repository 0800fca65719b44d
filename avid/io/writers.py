"""Writers for a labelled recording: JSON, RTTM, SRT, WebVTT, a timeline PNG and an annotated MP4.

Every writer takes a ``LabelResult`` and a destination path and returns that path. The annotated MP4 streams the
original video frame by frame (decode, draw, encode) and copies the original audio packets into the output, so its
memory does not grow with the length of the video.
"""
from __future__ import annotations

import json
import math
from bisect import bisect_left, bisect_right
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from ..config import Config, load_config
from ..errors import AvidError, MediaError
from ..private import private_output, write_private_text
from ..types import FaceTrack, LabelResult, SpeechTurn, Word

JSON_SCHEMA = "avid.label"
JSON_SCHEMA_VERSION = 1
FORMATS = ("json", "rttm", "srt", "vtt", "txt", "png", "mp4")
# Audio codecs an MP4 container carries as they are; anything else is re-encoded to AAC.
MP4_AUDIO_COPY_CODECS = {"aac", "mp3", "alac", "ac3", "eac3", "opus", "flac"}


# --------------------------------------------------------------------------------------------------- face on screen
def visible_intervals(track: FaceTrack, result: LabelResult, cfg: Config) -> list[tuple[float, float]]:
    """When ``track``'s face is on screen: its sampled detections, one sample period each (1 / media.frame_rate),
    joined over unseen gaps up to export.visible_gap_seconds, and cut at the end of the media."""
    intervals = track.visible_intervals(1.0 / float(cfg.media.frame_rate), float(cfg.export.visible_gap_seconds))
    duration = result.media.duration
    if duration > 0:
        intervals = [(start, min(end, duration)) for start, end in intervals if start < duration]
    return intervals


# --------------------------------------------------------------------------------------------------- JSON
def to_dict(result: LabelResult, cfg: Config | None = None) -> dict:
    """The labelled recording as plain JSON-ready data, in the versioned ``avid.label`` schema.

    Each face track gives its first and last detection (``start``, ``end``) and when it is on screen between them
    (``visible``: [start, end] pairs, and their total ``visible_seconds``), by ``cfg`` (the defaults when None)."""
    if cfg is None:
        cfg = load_config()
    people: dict[str, dict] = {}
    for spk in result.speakers:
        person = people.setdefault(spk.name, {"name": spk.name, "person_id": spk.person_id, "known": spk.known,
                                              "speakers": [], "track_ids": [], "speech_seconds": 0.0,
                                              "n_turns": 0, "score": spk.score, "modality": spk.modality})
        person["speakers"].append(spk.speaker)
        person["track_ids"] += [t for t in spk.track_ids if t not in person["track_ids"]]
        person["speech_seconds"] = round(person["speech_seconds"] + spk.speech_seconds, 3)
        person["n_turns"] += spk.n_turns
    speaker_of_track = {t: spk.speaker for spk in result.speakers for t in spk.track_ids}
    turns = sorted(result.turns, key=lambda t: (t.start, t.end))
    texts = turn_texts(result.words, turns) if result.words else [None] * len(turns)
    return {
        "schema": JSON_SCHEMA,
        "version": JSON_SCHEMA_VERSION,
        "media": asdict(result.media),
        "turns": [{"start": round(t.start, 3), "end": round(t.end, 3), "speaker": t.speaker, "name": t.name,
                   "score": None if t.score is None else round(float(t.score), 4), "track_id": t.track_id,
                   "overlap": t.overlap, "lip_sync": t.lip_sync, **({"text": text} if result.words else {})}
                  for t, text in zip(turns, texts)],
        "words": [{"start": round(w.start, 3), "end": round(w.end, 3), "text": w.text.strip(),
                   "speaker": w.speaker, "name": w.name, "probability": w.probability} for w in result.words],
        "speakers": [{**asdict(s), "score": None if s.score is None else round(float(s.score), 4),
                      "speech_seconds": round(s.speech_seconds, 3)} for s in result.speakers],
        "people": list(people.values()),
        "face_tracks": [_track_dict(tr, result, cfg, speaker_of_track) for tr in result.face_tracks],
        "warnings": list(result.warnings),
    }


def _track_dict(track: FaceTrack, result: LabelResult, cfg: Config, speaker_of_track: dict[int, str]) -> dict:
    visible = visible_intervals(track, result, cfg)
    return {"id": track.id, "start": round(track.start, 3), "end": round(track.end, 3),
            "visible": [[round(start, 3), round(end, 3)] for start, end in visible],
            "visible_seconds": round(sum(end - start for start, end in visible), 3),
            "n_detections": len(track.detections), "mean_probability": round(track.mean_probability, 4),
            "name": result.track_names.get(track.id), "speaker": speaker_of_track.get(track.id),
            # where the face is at each sampled time, to draw it: [time, x1, y1, x2, y2] in video pixels
            "boxes": [[round(d.time, 3)] + [round(float(v), 1) for v in d.box] for d in track.detections]}


def write_json(result: LabelResult, path: str | Path, cfg: Config | None = None) -> Path:
    path = Path(path)
    write_private_text(path, json.dumps(to_dict(result, cfg), indent=2, ensure_ascii=False) + "\n")
    return path


# --------------------------------------------------------------------------------------------------- RTTM
def write_rttm(turns: LabelResult | Iterable[SpeechTurn], path: str | Path, uri: str | None = None,
               use_names: bool | None = None) -> Path:
    """Standard 10-field RTTM SPEAKER lines, as pyannote.core writes them: a labelled recording's turns (its file
    name the file id unless ``uri``), or any speaker turns. The speaker id is the person's name where
    ``use_names`` (by default: for a labelled recording) and one is set, else the speaker label; fields are
    space-separated, so spaces become '_'. Written here rather than through pyannote, whose import costs a second
    of every `avid label`."""
    if isinstance(turns, LabelResult):
        uri, turns = uri or Path(turns.media.path).stem, turns.turns
        use_names = True if use_names is None else use_names
    uri = _no_spaces(uri or "audio") or "<NA>"
    lines = [f"SPEAKER {uri} 1 {turn.start:.3f} {turn.end - turn.start:.3f} <NA> <NA> "
             f"{_no_spaces(turn.name if use_names and turn.name else turn.speaker)} <NA> <NA>\n"
             for turn in sorted(turns, key=lambda t: (t.start, t.end)) if turn.end > turn.start]
    path = Path(path)
    write_private_text(path, "".join(lines))
    return path


def _no_spaces(text) -> str:
    return "_".join(str(text).split())


def to_annotation(turns: Iterable[SpeechTurn], uri: str = "audio", use_names: bool = False):
    """Speaker turns as a pyannote.core Annotation, labelled by speaker (or by name where ``use_names`` and set)."""
    from pyannote.core import Annotation, Segment

    annotation = Annotation(uri=uri)
    for turn in turns:
        if turn.end <= turn.start:
            continue
        segment = Segment(turn.start, turn.end)
        annotation[segment, annotation.new_track(segment)] = turn.name if use_names and turn.name else turn.speaker
    return annotation


def turn_texts(words: list[Word], turns) -> list[str]:
    """For each turn, the words attributed to its speaker whose middle falls inside it, as one string."""
    words = sorted(words, key=lambda w: w.start)
    middles = [(w.start + w.end) / 2 for w in words]
    texts = []
    for turn in turns:
        lo, hi = bisect_left(middles, turn.start - 1e-6), bisect_right(middles, turn.end + 1e-6)
        texts.append("".join(w.text for w in words[lo:hi] if w.speaker == turn.speaker).strip())
    return texts


# --------------------------------------------------------------------------------------------------- subtitles
def format_timestamp(seconds: float, decimal_marker: str) -> str:
    """HH:MM:SS,mmm (SRT, decimal_marker=',') or HH:MM:SS.mmm (WebVTT, '.'), rounded to the millisecond."""
    millis = max(0, int(round(seconds * 1000)))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal_marker}{millis:03d}"


def _plain(name: str) -> str:
    """Text on one line: line breaks and other control characters (which would forge cues) become spaces, and
    the cue-timing arrow is broken (WebVTT forbids it in cue text)."""
    return "".join(" " if ch.isspace() or not ch.isprintable() else ch for ch in name).replace("-->", "->").strip()


def _cue_text(turn: SpeechTurn, turns: list[SpeechTurn]) -> str:
    """Who speaks; in overlapped speech also who talks over them: "Ada (with Charles)"."""
    name = _plain(turn.name or turn.speaker)
    if not turn.overlap:
        return name
    others = [_plain(t.name or t.speaker) for t in turns
              if t.speaker != turn.speaker and t.start < turn.end and turn.start < t.end]
    others = list(dict.fromkeys(o for o in others if o != name))
    return f"{name} (with {', '.join(others)})" if others else f"{name} (overlapping)"


def _subtitle_turns(result: LabelResult) -> list[SpeechTurn]:
    # Cues come in order of start time; zero-length turns would be invalid cues.
    return [t for t in sorted(result.turns, key=lambda t: (t.start, t.end)) if t.end - t.start >= 0.001]


@dataclass
class Cue:
    start: float
    end: float
    name: str          # who speaks (one line, unescaped)
    text: str          # what they say ("" without a transcript)
    who: str = ""      # the speaker line without a transcript: "Ada (with Charles)"


def cues(result: LabelResult, cfg: Config) -> list[Cue]:
    """Subtitle cues: without a transcript one per turn, naming who speaks; with one, the words of each speaker
    in order, a new cue at each change of speaker and at transcribe.max_cue_seconds / max_cue_chars."""
    turns = _subtitle_turns(result)
    if not result.words:
        return [Cue(t.start, t.end, _plain(t.name or t.speaker), "", _cue_text(t, turns)) for t in turns]
    max_seconds, max_chars = float(cfg.transcribe.max_cue_seconds), int(cfg.transcribe.max_cue_chars)
    return [Cue(run[0].start, run[-1].end, _speaker_of(run), "".join(w.text for w in run).strip())
            for run in _word_runs(result.words, max_seconds, max_chars)]


def _speaker_of(run: list[Word]) -> str:
    return _plain(run[0].name or run[0].speaker or "unknown")


def _word_runs(words: list[Word], max_seconds: float = math.inf, max_chars: float = math.inf) -> Iterator[list[Word]]:
    """Consecutive words of one speaker in time order, cut also where a run would last longer than
    ``max_seconds`` or hold more than ``max_chars`` characters."""
    run: list[Word] = []
    for word in sorted(words, key=lambda w: w.start):
        if run and (word.speaker != run[0].speaker or word.end - run[0].start > max_seconds
                    or len("".join(w.text for w in run)) + len(word.text) > max_chars):
            yield run
            run = []
        run.append(word)
    if run:
        yield run


def write_srt(result: LabelResult, path: str | Path, cfg: Config | None = None) -> Path:
    """SubRip subtitles: numbered cues, "Name: text" with a transcript, else who speaks per turn."""
    path = Path(path)
    items = cues(result, cfg or load_config())
    lines = [f"{i}\n{format_timestamp(c.start, ',')} --> {format_timestamp(c.end, ',')}\n"
             f"{(c.name + ': ' + _plain(c.text)) if c.text else c.who}\n" for i, c in enumerate(items, start=1)]
    write_private_text(path, "\n".join(lines))
    return path


def _vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def write_vtt(result: LabelResult, path: str | Path, cfg: Config | None = None) -> Path:
    """WebVTT subtitles: cues with the speaker's name in a voice span (<v Name>), and what they say."""
    path = Path(path)
    lines = ["WEBVTT\n"]
    for i, c in enumerate(cues(result, cfg or load_config()), start=1):
        body = _plain(c.text) if c.text else c.who
        lines.append(f"{i}\n{format_timestamp(c.start, '.')} --> {format_timestamp(c.end, '.')}\n"
                     f"<v {_vtt_escape(c.name)}>{_vtt_escape(body)}</v>\n")
    write_private_text(path, "\n".join(lines))
    return path


def write_txt(result: LabelResult, path: str | Path) -> Path:
    """The named transcript: a line per run of one speaker's words, "[hh:mm:ss] Name: text"."""
    path = Path(path)
    lines = [f"[{format_timestamp(run[0].start, '.')[:8]}] {_speaker_of(run)}: {_plain(''.join(w.text for w in run))}"
             for run in _word_runs(result.words)]
    write_private_text(path, "".join(line + "\n" for line in lines))
    return path


# --------------------------------------------------------------------------------------------------- timeline
def _row_order(result: LabelResult) -> list[str]:
    """People in order of first speech: the order a reader meets them."""
    first: dict[str, float] = {}
    for t in result.turns:
        name = t.name or t.speaker
        first[name] = min(first.get(name, math.inf), t.start)
    return sorted(first, key=first.get)


def write_timeline_png(result: LabelResult, path: str | Path, cfg: Config) -> Path:
    """One row per person: their turns as bars (hatched where speech overlaps), and under them a thin line where
    their linked faces are on screen (``visible_intervals``: gaps where the face is not seen stay empty)."""
    # A Figure with the Agg canvas, not pyplot: no GUI backend to pick and no global figure state to leak.
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    opts = cfg.export.png
    names = _row_order(result)
    visible = {tr.id: visible_intervals(tr, result, cfg) for tr in result.face_tracks}
    duration = max([result.media.duration] + [t.end for t in result.turns]
                   + [end for intervals in visible.values() for _, end in intervals])
    fig = Figure(figsize=(opts.width_inches, 1.4 + 0.45 * max(1, len(names))), dpi=opts.dpi)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    colours = colormaps["tab10"]
    for row, name in enumerate(names):
        colour = colours(row % 10)
        turns = [t for t in result.turns if (t.name or t.speaker) == name]
        plain = [(t.start, t.end - t.start) for t in turns if not t.overlap]
        overlapped = [(t.start, t.end - t.start) for t in turns if t.overlap]
        ax.broken_barh(plain, (row - 0.3, 0.6), facecolors=colour)
        ax.broken_barh(overlapped, (row - 0.3, 0.6), facecolors=colour, hatch="///", edgecolor="white", alpha=0.7)
        on_screen = [interval for track_id in {t.track_id for t in turns if t.track_id is not None}
                     for interval in visible.get(track_id, [])]
        if on_screen:
            starts, ends = zip(*on_screen)
            ax.hlines([row + 0.38] * len(on_screen), starts, ends, colors=[colour], linewidth=2, capstyle="butt")
    ax.set_yticks(range(len(names)), labels=names)
    ax.set_ylim(max(1, len(names)) - 0.5, -0.5)
    ax.set_xlim(0, max(duration, 1e-3))
    ax.set_xlabel("time (s)")
    title = Path(result.media.path).name
    ax.set_title(title if names else f"{title}: no speech", fontsize=10, loc="left")
    ax.grid(axis="x", alpha=0.3)
    if names:
        from matplotlib.lines import Line2D
        from matplotlib.patches import Patch

        legend = [Patch(facecolor="grey", label="speech"),
                  Patch(facecolor="grey", hatch="///", edgecolor="white", label="overlapping speech"),
                  Line2D([0], [0], color="grey", linewidth=2, label="their face on screen")]
        ax.legend(handles=legend, loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=3, fontsize=8, frameon=False)
    fig.tight_layout()
    with private_output(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


# --------------------------------------------------------------------------------------------------- annotated MP4
@lru_cache(maxsize=8)
def _font(pixels: int):
    """DejaVu Sans at ``pixels`` px: it ships with matplotlib (a dependency) and covers Latin, Greek and Cyrillic,
    where OpenCV's own fonts draw ASCII only."""
    import matplotlib
    from PIL import ImageFont

    return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"), pixels)


@lru_cache(maxsize=256)
def _label_sprite(text: str, pixels: int, colour: tuple[int, int, int]) -> np.ndarray:
    """A name tag, BGR: ``text`` in black on a ``colour`` (BGR) box. Made once per name, size and colour."""
    from PIL import Image, ImageDraw

    font = _font(pixels)
    left, top, right, bottom = font.getbbox(text)
    pad = max(2, pixels // 6)
    tag = Image.new("RGB", (right - left + 2 * pad, bottom - top + 2 * pad), tuple(reversed(colour)))
    ImageDraw.Draw(tag).text((pad - left, pad - top), text, font=font, fill=(0, 0, 0))
    return np.ascontiguousarray(np.asarray(tag)[:, :, ::-1])


def _paste(image: np.ndarray, sprite: np.ndarray, x: int, y: int) -> None:
    """Copy ``sprite`` into ``image`` with its top-left corner at (x, y), clipped to the frame."""
    height, width = image.shape[:2]
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + sprite.shape[1], width), min(y + sprite.shape[0], height)
    if x1 > x0 and y1 > y0:
        image[y0:y1, x0:x1] = sprite[y0 - y:y1 - y, x0 - x:x1 - x]


class _TrackBoxes:
    """Face boxes of one track at any time: linear interpolation between its sampled detections."""

    def __init__(self, track: FaceTrack, hold_seconds: float):
        self.id = track.id
        self.times = np.array([d.time for d in track.detections], dtype=np.float64)
        self.boxes = np.array([d.box for d in track.detections], dtype=np.float64)
        self.hold = hold_seconds

    def box_at(self, t: float) -> np.ndarray | None:
        if len(self.times) == 0 or t < self.times[0] - self.hold or t > self.times[-1] + self.hold:
            return None
        i = int(np.searchsorted(self.times, t))
        if i == 0:
            return self.boxes[0]
        if i == len(self.times):
            return self.boxes[-1]
        t0, t1 = self.times[i - 1], self.times[i]
        if t - t0 > self.hold and t1 - t > self.hold:
            return None   # a gap inside the track: the face was not seen here
        w = (t - t0) / (t1 - t0) if t1 > t0 else 0.0
        return (1 - w) * self.boxes[i - 1] + w * self.boxes[i]


class _TurnIndex:
    """Which tracks are speaking at time t, from the turns, in O(log n) per query."""

    def __init__(self, turns: Iterable[SpeechTurn]):
        linked = sorted((t for t in turns if t.track_id is not None), key=lambda t: t.start)
        self.starts = np.array([t.start for t in linked])
        self.ends = np.array([t.end for t in linked])
        self.track_ids = [t.track_id for t in linked]
        self.longest = float((self.ends - self.starts).max()) if linked else 0.0

    def speaking(self, t: float) -> set[int]:
        hi = int(np.searchsorted(self.starts, t, side="right"))
        lo = int(np.searchsorted(self.starts, t - self.longest, side="left"))
        return {self.track_ids[i] for i in range(lo, hi) if self.ends[i] > t}


def _draw(image: np.ndarray, t: float, tracks: list[_TrackBoxes], names: dict[int, str],
          speaking: set[int], opts: Config) -> None:
    import cv2

    scale = max(image.shape[:2]) / 720.0   # line widths and text follow the frame size
    thickness = max(1, round(2 * scale))
    for track in tracks:
        box = track.box_at(t)
        if box is None:
            continue
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        talking = track.id in speaking
        colour = tuple(opts.speaking_colour) if talking else tuple(opts.box_colour)
        cv2.rectangle(image, (x1, y1), (x2, y2), colour, thickness * (2 if talking else 1))
        tag = _label_sprite(names.get(track.id) or f"face {track.id}", max(10, round(18 * scale)), colour)
        above = y1 - tag.shape[0] - thickness
        _paste(image, tag, x1, above if above >= 0 else y2 + thickness)   # below the box at the top edge
        if talking:   # the speaking marker: a filled dot at the box's top-right corner
            radius = max(4, round(8 * scale))
            cv2.circle(image, (x2 - radius - 2, y1 + radius + 2), radius, colour, cv2.FILLED, cv2.LINE_AA)


def write_annotated_mp4(result: LabelResult, path: str | Path, cfg: Config,
                        progress: Callable[[float], None] | None = None) -> Path:
    """The original video with face boxes, names and a speaking marker, and the original audio muxed back.

    Streams: each video packet is decoded, drawn on and encoded before the next is read; audio packets are copied
    as they are (or re-encoded to AAC when MP4 cannot carry the source codec). ``progress`` gets media seconds done.
    """
    import av

    src = Path(result.media.path)
    path = Path(path)
    if not result.media.has_video:
        raise AvidError("no video stream, so no annotated MP4 (the other formats need none)", src)
    opts = cfg.export.mp4
    tracks = [_TrackBoxes(tr, opts.box_hold_seconds) for tr in result.face_tracks if tr.detections]
    turn_index = _TurnIndex(result.turns)
    names = dict(result.track_names)
    try:
        source = av.open(str(src), metadata_errors="ignore")
    except (av.error.FFmpegError, OSError) as exc:
        raise MediaError(f"cannot open media ({exc.__class__.__name__}: {exc})", src) from None
    with private_output(path) as tmp, source, av.open(str(tmp), mode="w", format="mp4") as sink:
        in_video = source.streams.video[0]
        in_video.thread_type = "AUTO"
        in_audio = source.streams.audio[0] if source.streams.audio else None
        rate = in_video.average_rate or in_video.guessed_rate or 25
        out_video = sink.add_stream(opts.codec, rate=rate)
        out_video.width, out_video.height = in_video.codec_context.width, in_video.codec_context.height
        out_video.pix_fmt = "yuv420p"
        out_video.time_base = in_video.time_base
        out_video.options = {"preset": opts.preset, "crf": str(opts.crf)}
        out_audio, copy_audio, resampler = None, False, None
        if in_audio is not None:
            copy_audio = in_audio.codec_context.name in MP4_AUDIO_COPY_CODECS
            if copy_audio:
                out_audio = sink.add_stream_from_template(in_audio)
            else:
                out_audio = sink.add_stream("aac", rate=in_audio.codec_context.sample_rate or 48000)
                resampler = av.AudioResampler(format="fltp", layout="stereo" if in_audio.codec_context.channels > 1
                                              else "mono", rate=out_audio.codec_context.sample_rate)
        streams = [in_video] + ([in_audio] if in_audio is not None else [])
        try:
            for packet in source.demux(*streams):
                if packet.stream is in_audio:
                    if packet.dts is None:
                        continue
                    if copy_audio:
                        packet.stream = out_audio
                        sink.mux(packet)
                    else:
                        for frame in packet.decode():
                            for audio_frame in resampler.resample(frame):
                                audio_frame.pts = None
                                sink.mux(out_audio.encode(audio_frame))
                    continue
                for frame in packet.decode():
                    if frame.pts is None:
                        continue
                    t = float(frame.time)
                    image = frame.to_ndarray(format="bgr24")
                    _draw(image, t, tracks, names, turn_index.speaking(t), opts)
                    out_frame = av.VideoFrame.from_ndarray(image, format="bgr24")
                    out_frame.pts, out_frame.time_base = frame.pts, frame.time_base
                    sink.mux(out_video.encode(out_frame))
                    if progress is not None:
                        progress(t)
            sink.mux(out_video.encode(None))
            if out_audio is not None and not copy_audio:
                sink.mux(out_audio.encode(None))
        except av.error.FFmpegError as exc:
            raise MediaError(f"cannot write the annotated video ({exc.__class__.__name__}: {exc})", src) from None
    return path


# --------------------------------------------------------------------------------------------------- all at once
def write_outputs(result: LabelResult, out_dir: str | Path, formats: Iterable[str], cfg: Config,
                  stem: str | None = None) -> dict[str, Path]:
    """Write every requested format as ``out_dir/<stem>.<ext>`` (the MP4 as ``<stem>.labelled.mp4``)."""
    formats = list(dict.fromkeys(f.strip().lower() for f in formats if f.strip()))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise AvidError(f"unknown output format(s) {', '.join(unknown)} (choose from {', '.join(FORMATS)})")
    if "mp4" in formats and not result.media.has_video:
        formats.remove("mp4")
        result.warnings.append("audio-only input: no annotated MP4 written")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = stem or Path(result.media.path).stem
    written: dict[str, Path] = {}
    for fmt in formats:
        if fmt == "json":
            written[fmt] = write_json(result, out_dir / f"{stem}.json", cfg)
        elif fmt == "rttm":
            written[fmt] = write_rttm(result, out_dir / f"{stem}.rttm")
        elif fmt == "srt":
            written[fmt] = write_srt(result, out_dir / f"{stem}.srt", cfg)
        elif fmt == "vtt":
            written[fmt] = write_vtt(result, out_dir / f"{stem}.vtt", cfg)
        elif fmt == "txt":
            written[fmt] = write_txt(result, out_dir / f"{stem}.txt")
        elif fmt == "png":
            written[fmt] = write_timeline_png(result, out_dir / f"{stem}.timeline.png", cfg)
        elif fmt == "mp4":
            written[fmt] = write_annotated_mp4(result, out_dir / f"{stem}.labelled.mp4", cfg)
    return written
