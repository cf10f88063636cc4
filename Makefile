# The venv lives in .venv; every target installs the project into it when needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SOURCES := $(VENV)/.sources

.PHONY: demo test test-all bench lock clean FORCE

# The list of the packages' files, rewritten only when a file is added or removed: the strict
# editable install links each file, so a new module needs a reinstall; an edit does not.
$(SOURCES): FORCE
	@mkdir -p $(VENV)
	@git ls-files degradations shards pipeline model > $@.new 2>/dev/null || true
	@cmp -s $@.new $@ || mv $@.new $@
	@rm -f $@.new

# Strict editable mode: the packages are found through a folder of links on sys.path, so a
# folder named shards/, model/, pipeline/ or degradations/ in the working directory (a data
# folder, say) cannot hide them, as it does with the default editable finder.
# Exact versions from requirements.lock (constraints: they pin what is installed, add nothing).
$(STAMP): pyproject.toml requirements.lock $(SOURCES)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c requirements.lock -e '.[dev]' --config-settings editable_mode=strict
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

# After changing a dependency: install it into .venv, then rewrite the lock from what is there.
lock: $(STAMP)
	{ sed -n '1,3p' requirements.lock; $(PY) -m pip freeze --exclude-editable | grep -v '^perceive-ir'; } > requirements.lock.new
	mv requirements.lock.new requirements.lock

clean:
	rm -rf $(VENV) demo_out build .pytest_cache
