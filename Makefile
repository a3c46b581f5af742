# xsplice-emu: `make demo` and `make test` do all the set-up themselves.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: all demo test bench firmware clean

all: firmware $(INSTALLED)

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

firmware:
	$(MAKE) -s -C firmware

demo: firmware $(INSTALLED)
	$(VENV)/bin/xsplice-emu boot --vcpus 8 --seed 1 --ms 10

test: firmware $(INSTALLED)
	$(PY) -m pytest -q

bench: firmware $(INSTALLED)
	$(PY) bench/machine.py

clean:
	$(MAKE) -s -C firmware clean
	rm -rf $(VENV) *.egg-info
