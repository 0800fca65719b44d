# The two fresh-machine commands (see README.md). Each sets up .venv itself.
.PHONY: setup demo test

setup:
	@bash scripts/setup.sh

demo: setup
	bash scripts/demo.sh

test: setup
	.venv/bin/python -m pytest -q
