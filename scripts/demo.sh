#!/usr/bin/env bash
# The main job on the project's own sample, offline: make a two-person interview video, process it, enrol both
# people from a photo and a voice clip, train the shared model, then label who speaks when; then make a library of it
# for `avid serve`.
# Results go to out/demo/ (its gallery too, so the user's own gallery is left alone).
set -euo pipefail
cd "$(dirname "$0")/.."
avid=.venv/bin/avid
out=out/demo
db=$out/gallery.db
mkdir -p "$out"
rm -f "$db" "$db"-wal "$db"-shm

.venv/bin/python scripts/make_sample.py --out samples
$avid --quiet process samples/interview.mp4 --out "$out/process"
$avid --quiet enroll astronaut --image samples/astronaut.jpg --audio samples/astronaut_voice.wav --db "$db"
$avid --quiet enroll grace_hopper --image samples/grace_hopper.jpg --audio samples/grace_hopper_voice.wav --db "$db"
$avid --quiet train --db "$db"
$avid --quiet query --audio samples/grace_hopper_voice.wav --db "$db"
$avid --quiet label samples/interview.mp4 --db "$db" --out "$out/label" --format json,rttm,srt,vtt,txt,png,mp4 --transcribe
cat "$out/label/interview.txt"

# The demo's library, for `avid serve`: Grace Hopper is enrolled, the astronaut is left to be named in the web app.
lib=$out/library.db
rm -rf "$lib" "$lib"-wal "$lib"-shm "$lib".lock "$lib"-thumbnails "$lib"-index
$avid --quiet process samples/interview.mp4 --db "$lib" --transcribe
$avid --quiet enroll grace_hopper --image samples/grace_hopper.jpg --audio samples/grace_hopper_voice.wav --db "$lib"
$avid --quiet people unknown --db "$lib" >/dev/null

echo "demo outputs in $out/:"
ls -1R "$out"
echo "browse the library (people, the unknown astronaut to name, who speaks when, search): .venv/bin/avid serve --db $lib"
