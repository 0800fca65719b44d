"""Acceptance figures for the batch library (issue 5), measured on ../shared/data.

1. Resumability: all of ../shared/data processed into a library in one clean run; the same again in a run that is
   killed (SIGKILL to its whole process group) once about half of the files are stored, then rerun: both stores
   must hold the same contents.
2. Search by photo: each photo of Lin-Manuel Miranda must find his appearances in short_hamilton_clip.mp4, with
   time ranges.
3. Search by voice: every LibriSpeech utterance is cut in two (halves written to a temporary folder, never into the
   project); the second halves make a library, and each first half must find the file of its other half first
   (target: at least 90% of speakers).
4. ``--engine ray`` must give the same store as the local engine on the same data.

    python scripts/eval_library.py                 # everything (long: four passes over the data)
    python scripts/eval_library.py --parts search voice
"""
from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))     # the source tree, for its tests/media.py
from avid.config import load_config  # noqa: E402
from avid.io import media  # noqa: E402
from avid.library.collection import compare_contents, library_contents, process_collection  # noqa: E402
from avid.library.search import search  # noqa: E402

DATA = Path(os.environ.get("AVID_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
PARTS = ("resume", "search", "voice", "ray")


def done_count(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            return conn.execute("SELECT count(*) FROM files WHERE status = 'done'").fetchone()[0]
    except sqlite3.Error:      # not created yet
        return 0


def run_clean(db: Path, cfg, workers: int, engine: str = "local") -> float:
    t0 = time.monotonic()
    summary = process_collection([DATA], db, cfg, workers=workers, engine=engine, quiet=True)
    seconds = time.monotonic() - t0
    print(f"  {engine} run: {len(summary.processed)} files processed, {len(summary.failed)} failed, "
          f"{summary.n_face} face tracks, {summary.n_voice} speech regions in {seconds:.0f} s", flush=True)
    for path, error in summary.failed[:10]:
        print(f"    failed: {path}: {error}")
    return seconds


def killed_then_rerun(db: Path, cfg, workers: int, total: int) -> None:
    """Start a run in a child process, SIGKILL it (and its workers) halfway, then finish in this process."""
    code = ("import sys; from avid.config import load_config; from avid.library.collection import process_collection; "
            "process_collection([sys.argv[1]], sys.argv[2], load_config(), workers=int(sys.argv[3]), quiet=True)")
    child = subprocess.Popen([sys.executable, "-c", code, str(DATA), str(db), str(workers)],
                             start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while child.poll() is None and done_count(db) < total // 2:
        time.sleep(0.5)
    killed_at = done_count(db)
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    print(f"  killed the run (SIGKILL to its process group) with {killed_at} of {total} files stored", flush=True)
    t0 = time.monotonic()
    summary = process_collection([DATA], db, cfg, workers=workers, quiet=True)
    print(f"  rerun: {len(summary.skipped)} skipped as done, {len(summary.processed)} processed, "
          f"{len(summary.failed)} failed in {time.monotonic() - t0:.0f} s", flush=True)


def part_resume(tmp: Path, cfg, workers: int) -> Path:
    print("1. clean run, then a run killed halfway and rerun", flush=True)
    clean = tmp / "clean.db"
    run_clean(clean, cfg, workers)
    total = len(library_contents(clean)["files"])
    resumed = tmp / "resumed.db"
    killed_then_rerun(resumed, cfg, workers, total)
    a, b = library_contents(clean), library_contents(resumed)
    problems = compare_contents(a, b)
    exact = a == b
    print(f"  stores: {len(a['files'])} files, {len(a['observations'])} observations in the clean one; "
          f"{'identical' if exact else 'equal within 1e-4' if not problems else 'DIFFERENT'}")
    for problem in problems[:10]:
        print(f"    {problem}")
    print(f"  RESULT resume: {'PASS' if not problems else 'FAIL'}", flush=True)
    return clean


def part_search(db: Path, cfg) -> None:
    print("2. a photo of Lin-Manuel Miranda searched in the library", flush=True)
    clip = DATA / "video" / "short_hamilton_clip.mp4"
    found = 0
    photos = sorted(p for p in (DATA / "faces" / "lin_manuel_miranda").iterdir() if p.suffix.lower() in
                    media.IMAGE_EXTENSIONS)
    for photo in photos:
        hits = search(db, image=str(photo), cfg=cfg, top_k=50)
        faces = [h for h in hits if h.modality == "face"]
        in_clip = [(rank, h) for rank, h in enumerate(faces, 1) if Path(h.file) == clip]
        others = [Path(h.file).parent.name + "/" + Path(h.file).name for h in faces if Path(h.file) != clip]
        if in_clip:
            rank, hit = in_clip[0]
            found += 1
            ranges = ", ".join(f"{a:.1f}-{b:.1f} s" for a, b in hit.ranges)
            print(f"  {photo.name}: clip found at face rank {rank}, score {hit.score:.3f}, ranges {ranges}")
        else:
            print(f"  {photo.name}: clip NOT found")
        print(f"    other face hits: {len(others)} ({', '.join(others[:6])}{' ...' if len(others) > 6 else ''})")
    print(f"  RESULT photo search: clip found from {found} of {len(photos)} photos", flush=True)


def part_voice(tmp: Path, cfg, workers: int) -> None:
    print("3. LibriSpeech: one half of each utterance searched among the other halves", flush=True)
    from tests.media import write_wav

    library_dir, query_dir = tmp / "second_halves", tmp / "first_halves"
    library_dir.mkdir()
    query_dir.mkdir()
    sr = cfg.media.audio_sample_rate
    utterances = sorted((DATA / "voices" / "librispeech_train-clean-100").glob("*.flac"))
    for path in utterances:
        audio = media.load_audio(path, sr)
        half = len(audio) // 2
        write_wav(query_dir / f"{path.stem}.wav", audio[:half], sr)
        write_wav(library_dir / f"{path.stem}.wav", audio[half:], sr)
    db = tmp / "halves.db"
    process_collection([library_dir], db, cfg, workers=workers, quiet=True)
    top1, misses = 0, []
    t0 = time.monotonic()
    for query in sorted(query_dir.iterdir()):
        try:
            hits = search(db, audio=str(query), cfg=cfg)
        except Exception as exc:      # a query with no speech found counts as a miss
            misses.append(f"{query.stem}: {exc}")
            continue
        if hits and Path(hits[0].file).stem == query.stem:
            top1 += 1
        else:
            misses.append(f"{query.stem}: first hit {Path(hits[0].file).stem if hits else None}")
    n = len(utterances)
    print(f"  {top1} of {n} first halves find their other half first: {100 * top1 / n:.1f}% "
          f"({(time.monotonic() - t0) / n * 1000:.0f} ms per search)")
    for miss in misses[:15]:
        print(f"    miss: {miss}")
    print(f"  RESULT voice search: {'PASS' if top1 >= 0.9 * n else 'FAIL'} (target 90%)", flush=True)


def part_ray(tmp: Path, local_db: Path, cfg, workers: int) -> None:
    print("4. --engine ray against the local engine", flush=True)
    db = tmp / "ray.db"
    run_clean(db, cfg, workers, engine="ray")
    a, b = library_contents(local_db), library_contents(db)
    problems = compare_contents(a, b)
    print(f"  stores {'identical' if a == b else 'equal within 1e-4' if not problems else 'DIFFERENT'}")
    for problem in problems[:10]:
        print(f"    {problem}")
    print(f"  RESULT ray: {'PASS' if not problems else 'FAIL'}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--workers", type=int, default=0, help="worker processes (default: library.workers)")
    args = parser.parse_args()
    if not (DATA / "README.md").exists():
        print(f"shared dev data not found at {DATA} (set AVID_SHARED_DATA)", file=sys.stderr)
        return 2
    cfg = load_config()
    workers = args.workers or cfg.library.workers or min(os.cpu_count() or 1, cfg.library.max_auto_workers)
    print(f"data {DATA}, {workers} workers", flush=True)
    with tempfile.TemporaryDirectory(prefix="avid-eval-library-") as tmp:
        tmp = Path(tmp)
        local_db = None
        if "resume" in args.parts:
            local_db = part_resume(tmp, cfg, workers)
        if local_db is None and ({"search", "ray"} & set(args.parts)):
            print("0. clean run", flush=True)
            local_db = tmp / "clean.db"
            run_clean(local_db, cfg, workers)
        if "search" in args.parts:
            part_search(local_db, cfg)
        if "voice" in args.parts:
            part_voice(tmp, cfg, workers)
        if "ray" in args.parts:
            part_ray(tmp, local_db, cfg, workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
