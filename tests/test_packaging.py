"""avid as a built wheel, installed outside its source tree: the configuration ships inside the package, and a real
command runs from another folder (issue 12). `make test` (and so CI's .ci/run) runs these."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory) -> Path:
    """A fresh venv (outside the source tree) with avid installed from a wheel built here. Its dependencies come
    from this venv's site-packages through a .pth line: a path so added is searched, but its own .pth files (this
    venv's editable install of avid) are not run, so only the wheel's avid is importable. Returns its bin folder."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "src"        # what an sdist holds, so the build reads nothing else of the checkout
    shutil.copytree(REPO / "avid", source / "avid", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "-w", str(root / "dist"), str(source)], check=True, cwd=root)
    wheel, = (root / "dist").glob("avid-*.whl")

    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "avid-deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
                    str(wheel)], check=True)
    return venv / "bin"


def _clean_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["HOME"] = env.get("HOME", "/tmp")
    return env


@pytest.mark.slow
def test_wheel_carries_its_config(installed_wheel, tmp_path):
    """The wheel's avid is the one imported, and its packaged defaults load."""
    run = subprocess.run([installed_wheel / "python", "-c", "import avid, avid.config; print(avid.__file__); "
                          "print(avid.config.load_config().media.frame_rate)"],
                         cwd=tmp_path, env=_clean_env(), capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    out = run.stdout.split()
    assert Path(out[0]).is_relative_to(installed_wheel.parent), f"imported {out[0]}, not the wheel's avid"
    assert not Path(out[0]).is_relative_to(REPO)
    assert float(out[1]) > 0


@pytest.mark.slow
def test_wheel_processes_a_clip_from_another_folder(installed_wheel, talking_video, tmp_path):
    """`cd /tmp && avid process CLIP --out o` with the installed console script."""
    run = subprocess.run([installed_wheel / "avid", "-q", "process", str(talking_video), "--out", "o"],
                         cwd=tmp_path, env=_clean_env(), capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    result = json.loads((tmp_path / "o" / f"{talking_video.stem}.json").read_text())
    assert result["schema"] == "avid.ingest"
    assert len(result["face_tracks"]) >= 1 and len(result["speech_regions"]) >= 1




@pytest.mark.slow
def test_wheel_runs_the_readme_python_examples(installed_wheel, readme_media):
    """README's "Python API" examples, with the installed wheel's avid, checked as tests/test_api.py checks them."""
    from tests.test_api import readme_examples

    script = readme_media / "examples.py"
    body = "\n".join([
        "import avid",
        f"assert not Path(avid.__file__).is_relative_to({str(REPO)!r}), avid.__file__",
        *readme_examples(),
        f"sys.path.insert(0, {str(REPO / 'tests')!r})",
        "from test_api import check_readme_results",
        "check_readme_results(Path.cwd(), globals())",
    ])
    # A script whose library workers are processes keeps its work under the main guard (as README says)
    script.write_text("import sys\nfrom pathlib import Path\n\nif __name__ == '__main__':\n"
                      + textwrap.indent(body, "    ") + "\n")
    env = _clean_env() | {"AVID_DB": str(readme_media / "default-gallery.db")}
    run = subprocess.run([installed_wheel / "python", script.name], cwd=readme_media, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]

def test_import_avid_loads_no_torch():
    """`import avid` (and touching its public names) stays cheap: torch, cv2 and the models load on first use."""
    code = ("import sys, avid; [getattr(avid, n) for n in avid.__all__]; "
            "print(' '.join(m for m in ('torch', 'cv2', 'av', 'sklearn', 'matplotlib', 'flask') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=REPO).stdout.split()
    assert loaded == [], f"import avid loaded {loaded}"
