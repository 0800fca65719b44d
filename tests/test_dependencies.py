"""Dependencies that earn their place (issue 12): every runtime dependency in pyproject.toml is imported by avid or
named by it as the package whose files it reads; an optional feature's missing extra is named in its error."""
from __future__ import annotations

import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest

from avid.cli import main

REPO = Path(__file__).resolve().parents[1]
# Dependencies used without avid naming their module: why each is there.
INDIRECT = {"setuptools": "webrtcvad (a dependency of resemblyzer and the webrtc VAD) imports pkg_resources",
            "torchvision": "facenet-pytorch imports it (the facenet encoder); pinned as the build that matches torch"}
# Distributions whose module name is not the one packages_distributions() gives first.
MODULES = {"dlib-bin": ["dlib"], "pyannote.core": ["pyannote.core"], "pyannote.metrics": ["pyannote.metrics"]}


def _name(requirement: str) -> str:
    return re.split(r"[\s<>=!~\[;]", requirement, maxsplit=1)[0]


def _modules(distribution: str) -> list[str]:
    if distribution in MODULES:
        return MODULES[distribution]
    wanted = distribution.lower().replace("_", "-")
    return [module for module, dists in importlib.metadata.packages_distributions().items()
            if wanted in (d.lower().replace("_", "-") for d in dists)]


def test_every_runtime_dependency_is_used():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    source = "\n".join(p.read_text(encoding="utf-8") for p in (REPO / "avid").rglob("*.py"))
    unused = []
    for requirement in project["dependencies"]:
        name = _name(requirement)
        if name in INDIRECT:
            continue
        modules = _modules(name)
        assert modules, f"{name} is not installed here"
        used = any(re.search(rf"^\s*(import|from)\s+{re.escape(m)}\b|[\"']{re.escape(m)}[\"']", source, re.MULTILINE)
                   for m in modules)
        if not used:
            unused.append(name)
    assert unused == [], f"declared but never imported nor located by avid: {unused}"
    assert "moviepy" not in {_name(r) for r in project["dependencies"]}


def test_extras_hold_the_optional_features():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = {extra: {_name(r) for r in reqs} for extra, reqs in project["optional-dependencies"].items()}
    core = {_name(r) for r in project["dependencies"]}
    assert "flask" in extras["serve"] and "ray" in extras["ray"]
    assert not {"flask", "ray"} & core
    assert extras["serve"] | extras["ray"] <= extras["dev"], "`make test` installs dev: it must hold every extra"


def test_avid_serve_without_flask_names_the_extra(monkeypatch, tmp_path, capsys):
    for module in ("flask", "werkzeug", "werkzeug.serving", "avid.serve.app"):
        monkeypatch.setitem(sys.modules, module, None)       # as if not installed: importing it fails
    code = main(["serve", "--db", str(tmp_path / "library.db")])
    err = capsys.readouterr().err
    assert code == 1 and "pip install 'avid[serve]'" in err and err.count("\n") == 1


def test_engine_ray_without_ray_names_the_extra(monkeypatch, speech_wav, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)
    code = main(["-q", "process", str(speech_wav), "--db", str(tmp_path / "l.db"), "--engine", "ray"])
    err = capsys.readouterr().err
    assert code == 1 and "pip install 'avid[ray]'" in err
    assert not (tmp_path / "l.db").exists()


@pytest.mark.parametrize("module", ["moviepy"])
def test_removed_dependencies_are_not_imported(module):
    source = "\n".join(p.read_text(encoding="utf-8") for p in (REPO / "avid").rglob("*.py"))
    assert not re.search(rf"^\s*(import|from)\s+{module}\b", source, re.MULTILINE)
