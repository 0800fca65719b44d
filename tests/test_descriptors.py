"""dlib's face descriptors in a second process (avid.faces.descriptors): the same tracks and embeddings as in-process,
and a child that ends with its parent."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np

from avid.config import load_config


def test_background_descriptors_give_the_same_tracks_and_embeddings(two_speaker_video):
    from avid.pipeline.ingest import process_file
    from avid.pipeline.models import Models

    results = {}
    for background in (True, False):
        cfg = load_config(overrides={"faces": {"encoder": {"background_process": background}}})
        models = Models(cfg)
        results[background] = process_file(two_speaker_video, cfg, models=models)
        assert (models._background is not None) == background
    on, off = results[True].face_tracks, results[False].face_tracks
    assert len(on) == len(off) == 2
    for a, b in zip(on, off):
        assert (a.start, a.end, len(a.detections)) == (b.start, b.end, len(b.detections))
        np.testing.assert_allclose(a.embedding, b.embedding, atol=1e-6)


def test_pool_workers_and_other_backends_embed_in_their_own_process():
    from avid.pipeline.models import Models

    assert Models(load_config(), background=False).face_background is None
    sface = load_config(overrides={"faces": {"encoder": {"backend": "sface"}}})
    assert Models(sface).face_background is None


def test_the_child_ends_when_its_parent_is_killed(tmp_path):
    """The parent starts the descriptor process and is SIGKILLed: the child does not live on holding its model."""
    script = textwrap.dedent("""
        import os, sys, time
        from avid.faces.descriptors import BackgroundDescriptors
        from avid.faces.dlib_files import DLIB_DESCRIPTOR_FILE, dlib_model_path

        background = BackgroundDescriptors(str(dlib_model_path(DLIB_DESCRIPTOR_FILE)), 0, 2.0, 1)
        background.submit([]).result()
        print(*(p.pid for p in background._pool._processes.values()), flush=True)
        time.sleep(60)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    for _ in range(100):
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(child, signal.SIGKILL)
        raise AssertionError("the descriptor process outlived its parent")


def test_a_dead_descriptor_process_leaves_the_embeddings_to_this_one(two_speaker_video):
    """The child is killed mid-video: the tracks are still embedded (here), the same as without it."""
    from avid.pipeline.ingest import process_file
    from avid.pipeline.models import Models

    cfg = load_config()
    models = Models(cfg)
    background = models.face_background
    background.submit([]).result()
    for process in background._pool._processes.values():
        os.kill(process.pid, signal.SIGKILL)
    killed = process_file(two_speaker_video, cfg, models=models)
    plain = process_file(two_speaker_video, load_config(overrides={"faces": {"encoder": {"background_process": False}}}))
    assert len(killed.face_tracks) == len(plain.face_tracks) == 2
    for a, b in zip(killed.face_tracks, plain.face_tracks):
        np.testing.assert_allclose(a.embedding, b.embedding, atol=1e-6)


def test_the_descriptor_process_imports_neither_torch_nor_scipy():
    """It starts beside the parent's model loading: what it imports is start-up time on the other core."""
    code = ("import sys, avid.faces.descriptors; "
            "print(' '.join(m for m in ('torch', 'scipy', 'cv2', 'av') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert loaded == []


def test_the_best_two_chips_are_embedded_first_and_the_rest_only_when_they_disagree():
    from avid.faces.descriptors import embed_best_first

    calls = []

    def embed(chips):
        calls.append(len(chips))
        return np.stack([c / np.linalg.norm(c) for c in chips])

    alike = [np.array([1.0, 0.0]), np.array([1.0, 0.1]), np.array([0.0, 1.0]), np.array([0.3, 1.0])]
    assert len(embed_best_first(embed, alike, 0.97)) == 2 and calls == [2]       # cos 0.995: the two suffice
    calls.clear()
    apart = [alike[0], alike[2], alike[1], alike[3]]
    assert len(embed_best_first(embed, apart, 0.97)) == 4 and calls == [2, 2]    # cos 0: all four are embedded
    calls.clear()
    assert len(embed_best_first(embed, alike, 2.0)) == 4                          # 2: never enough agreement
    assert len(embed_best_first(embed, alike[:1], 0.97)) == 1
