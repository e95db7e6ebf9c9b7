# The course's commands. On a fresh machine `make lab` and `make test` each install what is
# missing first (pip requirements; for the tests also Debian's chromium and the slide packages).
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip

# JupyterLab refuses to start as root unless told; the test command already runs as root (apt-get).
LAB_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: install install-browser lab test test-fast sync bench slides html retrain

# pip runs again only when a requirements file changed since the last install into this environment
# (a stamp inside the environment: each venv keeps its own); `make -B install` forces it.
STAMP := $(shell $(PYTHON) -c "import sys; print(sys.prefix)")/.quantization-course-installed

install: $(STAMP)

$(STAMP): requirements.txt requirements-nodeps.txt
	@echo "Installing the course's pinned packages (the first time: about 7 GB, several quiet minutes)..."
	$(PIP) install -q -r requirements.txt
	$(PIP) install -q --no-deps -r requirements-nodeps.txt
	@touch $@ 2>/dev/null || true

install-browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium)
	@if [ -f slides/package.json ] && ! [ slides/node_modules/.package-lock.json -nt slides/package-lock.json ]; then \
		npm ci --prefix slides --no-audit --no-fund --loglevel=error; fi

# Opens on the start page, and the URLs it prints lead there too (for when no browser opens: headless, or as root);
# the course's lab settings (no news pop-up, no update check) come from lab-settings/.
lab: install
	cd notebooks && JUPYTERLAB_SETTINGS_DIR=$(CURDIR)/lab-settings $(PYTHON) -m jupyter lab $(LAB_ROOT) \
		--LabApp.default_url=/lab/tree/00_start_here.ipynb 00_start_here.ipynb

# The fast tier: unit, property, cross-check, bad-input, widget and lint tests; no notebooks, no browser.
test-fast: install
	$(PYTHON) -m pytest tests -o addopts="" -p no:cacheprovider -m "not browser and not portability and not platforms" --ignore=tests/browser -n 2 -q

# Refresh each notebook's text source (notebooks/NN_key.py) from the executed notebook.
sync:
	$(PYTHON) -m jupytext --sync notebooks/[0-9][0-9]_*.ipynb

test: install install-browser
	$(PYTHON) -m pytest

slides: install
	@[ slides/node_modules/.package-lock.json -nt slides/package-lock.json ] || npm ci --prefix slides --no-audit --no-fund --loglevel=error
	$(PYTHON) -m tools.slides

html: install
	@[ slides/node_modules/.package-lock.json -nt slides/package-lock.json ] || npm ci --prefix slides --no-audit --no-fund --loglevel=error
	$(PYTHON) -m tools.slides --html

bench: install
	$(PYTHON) -m tools.bench

retrain: install
	$(PYTHON) -m helpers.models
