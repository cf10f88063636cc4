# The venv lives in .venv; every target installs the project into it when needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-all bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/perceive-ir demo

test: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

test-all: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	@# imagecorruptions is the degradation benchmark's baseline only: 1.1.2 needs pkg_resources,
	@# and --no-deps keeps its opencv-python from shadowing opencv-python-headless.
	$(PY) -m pip install -q --no-deps imagecorruptions==1.1.2 'setuptools<81'
	@for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) demo_out .pytest_cache
