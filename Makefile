# cvgl_ros: everything is set up from this file. Two commands on a fresh machine:
#   make demo   the whole system on the embedded default data and model
#   make test   the test suite
# Both create .venv (python3.11) and install the pinned requirements first.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
REQS := requirements/constraints.txt requirements/runtime.txt requirements/training.txt requirements/dev.txt
# The stamp is keyed on the requirement files and the package definition: when none of
# them changed, `make setup` does nothing.
REQ_HASH := $(shell cat $(REQS) setup.py setup.cfg package.xml | sha256sum | cut -c1-16)
STAMP := $(VENV)/.installed-$(REQ_HASH)
PYTEST_ARGS ?=

.PHONY: setup test bench demo lock clean

setup: $(STAMP)

$(STAMP):
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check pip==26.3
	$(BIN)/pip install --quiet -c requirements/constraints.txt \
		-r requirements/runtime.txt -r requirements/training.txt -r requirements/dev.txt
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	@rm -f $(VENV)/.installed-*
	@touch $@

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: setup
	$(BIN)/cvgl bench --out bench/results/latest.json

demo: setup
	$(BIN)/cvgl demo

# Re-pin: install the top-level requirements unpinned into a scratch venv, freeze it.
lock:
	rm -rf /tmp/cvgl-lock && $(PYTHON) -m venv /tmp/cvgl-lock
	/tmp/cvgl-lock/bin/pip install --quiet $$(grep -hv '^[#-]' requirements/runtime.txt requirements/training.txt requirements/dev.txt | cut -d= -f1)
	/tmp/cvgl-lock/bin/pip freeze > requirements/constraints.txt

clean:
	rm -rf $(VENV) build install log .pytest_cache
