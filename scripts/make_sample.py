"""Make the demo sample: a short video of two people taking turns to speak, plus what it takes to enrol them.

Everything comes from what avid's dependencies ship (scikit-image's astronaut photo, matplotlib's Grace Hopper photo,
eSpeak NG speech), so it runs offline, in a few seconds, and gives the same files every time.

    python scripts/make_sample.py            # writes into samples/
    python scripts/make_sample.py --out DIR
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))     # the source tree, for its tests/media.py
from tests import media as synthetic  # noqa: E402

# What each person says in the video, in turn: (person, sentence).
DIALOGUE = [
    ("astronaut", "Hello, and welcome aboard. I have flown on the space shuttle four times."),
    ("grace_hopper", "Thank you. I taught computers to understand English words."),
    ("astronaut", "From orbit, the Earth looks calm and very blue."),
    ("grace_hopper", "The most dangerous phrase in the language is: we have always done it this way."),
]

# Different sentences for the enrolment voice clips, so that enrolment and the video share no words' audio.
ENROLMENT_SPEECH = {
    "astronaut": "Training for a launch takes years of practice, and every checklist matters. "
                 "Before each flight we rehearse every step in the simulator.",
    "grace_hopper": "A ship in port is safe, but that is not what ships are built for. "
                    "I kept a clock on my wall that ran counterclockwise.",
}


def make_sample(out_dir: Path, size: tuple[int, int] = (960, 540)) -> list[Path]:
    """Write the sample video, a photo and a voice clip per person into ``out_dir``; return the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    people = {"astronaut": synthetic.astronaut(), "grace_hopper": synthetic.grace_hopper()}
    order = list(people)
    segments = [synthetic.Segment(synthetic.speak(text, people[who].voice), speaker=order.index(who))
                for who, text in DIALOGUE]
    video = out_dir / "interview.mp4"
    # One encoder thread: the same bytes every run.
    synthetic.write_talking_video(video, segments, [people[name] for name in order], size=size, threads=1)
    written = [video]
    for name, person in people.items():
        written.append(synthetic.write_image(out_dir / f"{name}.jpg", person.image))
        written.append(synthetic.write_wav(out_dir / f"{name}_voice.wav", synthetic.speak(ENROLMENT_SPEECH[name],
                                                                                          person.voice)))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "samples",
                        help="folder to write into (default: samples/ in the project)")
    parser.add_argument("--size", default="960x540", help="video frame size WIDTHxHEIGHT (default 960x540)")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    started = time.perf_counter()
    paths = make_sample(args.out, (width, height))
    for path in paths:
        print(f"wrote {path} ({path.stat().st_size / 1e3:.0f} kB)")
    print(f"made the sample in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
