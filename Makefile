# The course's commands. On a fresh machine `make lab` and `make test` each install what is
# missing first (pip requirements; for the tests also Debian's chromium and the slide packages).
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip

.PHONY: install install-browser lab test bench slides html retrain

install:
	$(PIP) install -q -r requirements.txt
	$(PIP) install -q --no-deps -r requirements-nodeps.txt

install-browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium)
	@if [ -f slides/package.json ] && ! [ slides/node_modules/.package-lock.json -nt slides/package-lock.json ]; then \
		npm ci --prefix slides --no-audit --no-fund --loglevel=error; fi

lab: install
	cd notebooks && $(PYTHON) -m jupyter lab

test: install install-browser
	$(PYTHON) -m pytest

slides: install
	@[ slides/node_modules/.package-lock.json -nt slides/package-lock.json ] || npm ci --prefix slides --no-audit --no-fund --loglevel=error
	$(PYTHON) -m helpers.slides

html: install
	@[ slides/node_modules/.package-lock.json -nt slides/package-lock.json ] || npm ci --prefix slides --no-audit --no-fund --loglevel=error
	$(PYTHON) -m helpers.slides --html

bench: install
	$(PYTHON) -m helpers.bench

retrain: install
	$(PYTHON) -m helpers.models
