# xsplice-emu: `make demo` and `make test` do all the set-up themselves.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: all demo test bench firmware payloads clean

all: firmware $(INSTALLED) payloads

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

firmware:
	$(MAKE) -s -C firmware

payloads: firmware $(INSTALLED)
	$(MAKE) -s -C payloads XSPLICE_EMU=$(CURDIR)/$(VENV)/bin/xsplice-emu

demo: firmware $(INSTALLED) payloads
	$(VENV)/bin/xsplice-emu run scenarios/xen_test_sequence.toml

test: firmware $(INSTALLED) payloads
	$(PY) -m pytest -q

bench: firmware $(INSTALLED) payloads
	$(PY) bench/machine.py
	$(PY) bench/livepatch.py
	$(PY) bench/trace.py
	$(PY) bench/viewer.py

clean:
	$(MAKE) -s -C firmware clean
	rm -rf payloads/build
	rm -rf $(VENV) *.egg-info
