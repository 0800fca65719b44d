#!/usr/bin/env bash
# Create (or bring up to date) the project's virtual environment in .venv with avid and its test tools installed.
# Idempotent: it reinstalls only when pyproject.toml changed since the last successful run.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), "avid needs Python 3.11"' \
  || { echo "setup: Python 3.11 is required (found $("$PYTHON" --version 2>&1))" >&2; exit 1; }
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
stamp=.venv/.avid-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".[dev]"
  echo "$want" > "$stamp"
fi
# dlib-bin, the wheel avid depends on, is built without BLAS: a face descriptor costs ~78 ms of CPU. Where this
# machine can build dlib against OpenBLAS (cmake, a C++ compiler, libopenblas-dev), the same dlib version is built
# from source in its place, once (~6 minutes; the wheel is kept in .venv/dlib-blas): ~15 ms, the same descriptors
# to within 3e-7 (docs/speed.md). AVID_DLIB_BLAS=0 keeps dlib-bin.
if [ "${AVID_DLIB_BLAS:-1}" != 0 ] && ! .venv/bin/python -c 'import dlib, sys; sys.exit(not dlib.DLIB_USE_BLAS)'; then
  if command -v cmake >/dev/null && command -v c++ >/dev/null \
      && [ -n "$(ls /usr/lib/libopenblas.so /usr/lib/*/libopenblas.so 2>/dev/null)" ]; then
    version=$(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("dlib-bin").split(".post")[0])')
    wheels=.venv/dlib-blas
    if ls "$wheels"/dlib-"$version"-*.whl >/dev/null 2>&1 || {
        echo "setup: building dlib $version against OpenBLAS (a few minutes, once)"
        .venv/bin/python -m pip wheel --quiet --no-deps --no-binary dlib "dlib==$version" -w "$wheels"; }; then
      # Both wheels hold the same files: dlib-bin's go first, then dlib's are written over (--force-reinstall).
      .venv/bin/python -m pip uninstall --quiet --yes dlib-bin
      .venv/bin/python -m pip install --quiet --no-deps --force-reinstall "$wheels"/dlib-"$version"-*.whl
    else
      echo "setup: the dlib build failed; keeping dlib-bin (slower face descriptors)" >&2
    fi
  else
    echo "setup: keeping dlib-bin; with cmake, g++ and libopenblas-dev installed, setup builds dlib with BLAS" \
         "(~5x faster face descriptors)"
  fi
fi
