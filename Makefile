# The two fresh-machine commands (see README.md). Each sets up .venv itself.
.PHONY: setup demo test

setup:
	@bash scripts/setup.sh

demo: setup
	.venv/bin/python scripts/make_sample.py --out samples
	.venv/bin/avid process samples/sample.mp4 --out out/demo

test: setup
	.venv/bin/python -m pytest -q
