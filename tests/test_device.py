"""The ``device`` setting: auto is the CPU path, unchanged, where there is no GPU; cuda without one is a clear error;
and with a GPU every network gives what it gives on the CPU (skipped without one)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from avid.cli import main
from avid.config import load_config
from avid.device import resolve_device
from avid.errors import ConfigError

HAS_GPU = torch.cuda.is_available()
no_gpu = pytest.mark.skipif(HAS_GPU, reason="this machine has a CUDA GPU")
needs_gpu = pytest.mark.skipif(not HAS_GPU, reason="needs a CUDA GPU (none here)")


def test_cpu_is_cpu_and_auto_follows_the_machine():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if HAS_GPU else "cpu")
    with pytest.raises(ConfigError, match="device must be one of"):
        resolve_device("tpu")


@no_gpu
def test_asking_for_cuda_without_a_gpu_is_a_clear_error(tmp_path, capsys, synthetic):
    with pytest.raises(ConfigError, match="no usable CUDA device.*device: cpu or auto"):
        resolve_device("cuda")
    config = tmp_path / "gpu.yaml"
    config.write_text("device: cuda\n")
    clip = synthetic.write_wav(tmp_path / "speech.wav", synthetic.speak("Hello there, this is a test."))
    code = main(["--quiet", "--config", str(config), "label", str(clip), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code != 0 and "no usable CUDA device" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@no_gpu
def test_auto_on_a_machine_without_a_gpu_is_the_cpu_path_bit_for_bit(synthetic):
    from avid.faces import FaceDetector
    from avid.voice.embed import get_voice_encoder
    from avid.voice.segmentation_net import load_segmentation

    auto, cpu = load_config(overrides={"device": "auto"}), load_config(overrides={"device": "cpu"})
    photo = synthetic.astronaut().image
    boxes = [[d.box for d in FaceDetector(cfg).detect_image(photo)] for cfg in (auto, cpu)]
    assert boxes[0] == boxes[1] and boxes[0]
    audio = synthetic.speak("The quick brown fox jumps over the lazy dog.")
    voices = [get_voice_encoder(cfg).embed_utterance(audio) for cfg in (auto, cpu)]
    assert np.array_equal(voices[0], voices[1])
    window = np.zeros((1, 160000), np.float32)
    window[0, :len(audio)] = audio[:160000]
    scores = [load_segmentation(cfg).log_probs(window) for cfg in (auto, cpu)]
    assert np.array_equal(scores[0], scores[1])


@needs_gpu
def test_on_a_gpu_each_network_agrees_with_the_cpu(synthetic):
    from avid.faces import FaceDetector
    from avid.voice.embed import get_voice_encoder
    from avid.voice.segmentation_net import load_segmentation

    gpu, cpu = load_config(overrides={"device": "cuda"}), load_config(overrides={"device": "cpu"})
    photo = synthetic.astronaut().image
    on_gpu, on_cpu = (FaceDetector(cfg).detect_image(photo) for cfg in (gpu, cpu))
    assert len(on_gpu) == len(on_cpu) >= 1
    assert np.allclose([d.box for d in on_gpu], [d.box for d in on_cpu], atol=2.0)
    audio = synthetic.speak("The quick brown fox jumps over the lazy dog.")
    a, b = (get_voice_encoder(cfg).embed_utterance(audio) for cfg in (gpu, cpu))
    assert float(np.dot(a, b)) > 0.999
    window = np.zeros((1, 160000), np.float32)
    window[0, :len(audio)] = audio[:160000]
    x, y = (load_segmentation(cfg).log_probs(window) for cfg in (gpu, cpu))
    assert np.abs(np.exp(x) - np.exp(y)).max() < 1e-3


def test_every_model_factory_sets_the_configured_threads():
    """torch and OpenCV keep one thread count per process: whichever model loads first sets it from `threads`."""
    code = ("import sys, cv2, torch\n"
            "from avid.config import load_config\n"
            "from avid.voice.embed import get_voice_encoder\n"
            "cfg = load_config(overrides={'threads': {'torch': int(sys.argv[1]), 'opencv': int(sys.argv[2])}})\n"
            "get_voice_encoder(cfg)\n"
            "print(torch.get_num_threads(), cv2.getNumThreads())")
    import subprocess
    import sys

    for torch_threads, opencv_threads in ((1, 1), (2, 3)):
        out = subprocess.run([sys.executable, "-c", code, str(torch_threads), str(opencv_threads)],
                             capture_output=True, text=True, check=True).stdout.split()
        assert out == [str(torch_threads), str(opencv_threads)]


def test_the_blas_libraries_get_the_configured_threads():
    """numpy's OpenBLAS and dlib's (where dlib is built with one) are held to `threads.blas` once the face encoder
    has loaded: by default a thread per core spins beside the other work."""
    code = ("import sys, numpy as np, threadpoolctl\n"
            "from avid.config import load_config\n"
            "from avid.faces import get_face_encoder\n"
            "cfg = load_config(overrides={'threads': {'blas': int(sys.argv[1])}})\n"
            "get_face_encoder(cfg).embed_chips([np.zeros((150, 150, 3), np.uint8)])\n"
            "print(*sorted({i['num_threads'] for i in threadpoolctl.threadpool_info() if i['user_api'] == 'blas'}))")
    import subprocess
    import sys

    for blas_threads in (1, 2):
        out = subprocess.run([sys.executable, "-c", code, str(blas_threads)],
                             capture_output=True, text=True, check=True).stdout.split()
        assert out == [str(blas_threads)]
