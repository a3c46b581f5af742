# xsplice-emu: `make demo` and `make test` do all the set-up themselves.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
# Python writes its bytecode cache (__pycache__, ignored by git) even where the environment says not to: the tests
# start the CLI in dozens of processes (docs recipes, serve, the wheel), each of which would compile the package
# again (0.4 s each), and pytest would rewrite every test module on every run.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: all demo test test-fast test-long fuzz lint bench explore-demo payloads payloads-xen417 xenctrl xen-tools \
	reference reference-install recipes xen-bugs clean

all: $(INSTALLED) payloads

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

# The firmware and Xen's test payloads are built into the user's cache on
# first use; payloads/build is a copy for the scenarios and examples here.
payloads: $(INSTALLED)
	$(VENV)/bin/xsplice-emu payload build-tests payloads/build >/dev/null

# Xen's test payloads built against Debian's real xen-syms-4.17 (the pinned build, fetched once),
# for scenarios/xen417.
payloads-xen417: $(INSTALLED)
	$(VENV)/bin/xsplice-emu payload build-tests payloads/build-xen417 --against debian >/dev/null

# libxenctrl.so.4.17 (xenctrl/) for Xen's own xen-livepatch, built into the cache;
# xen-tools fetches Debian's xen-utils-4.17 and xen-syms-4.17 of the pinned build there (tests that need
# it skip, saying why, when it cannot).
xenctrl: $(INSTALLED)
	$(VENV)/bin/xsplice-emu xenctrl-path

xen-tools: $(INSTALLED)
	$(VENV)/bin/xsplice-emu xen-tools

# Xen's maintainers' sequence, replace with the refusals, and forward revert on Debian's real Xen 4.17 under
# QEMU (TCG) and on the testbed: the differences (timeout_rc.toml needs a stall and a preempted vCPU, which only
# the testbed has).
# Needs QEMU: `make reference-install` installs it.
reference: $(INSTALLED) payloads-xen417
	$(VENV)/bin/xsplice-emu reference scenarios/xen417/xen_test_sequence.toml \
		scenarios/xen417/replace_and_rejections.toml scenarios/xen417/forward_revert.toml

# Installs Debian's qemu-system-x86 with apt-get (root) and fetches the reference's Debian packages into the
# user's cache (Xen, the kernel, busybox, xen-livepatch and its libraries: downloaded and unpacked, not installed).
reference-install: $(INSTALLED)
	$(VENV)/bin/xsplice-emu reference --install

# Xen 4.17.7 built from source four times (as released, and with each of patches/xen-bugs: minutes each, cached),
# then each scenario of scenarios/bugs fails on its buggy build and passes on 4.17.7. XEN_SOURCE=DIR builds a
# Xen 4.17.7 tree; else Debian's source package of the pinned build (apt-get source). Needs flex and bison.
xen-bugs: $(INSTALLED)
	$(PY) -m pytest -q -s tests/test_xen_bugs.py --xen-build

demo: $(INSTALLED)
	$(VENV)/bin/xsplice-emu demo

# The tiers (README: Tests). test-fast: the inner loop, no test marked slow or long. test: the static checks
# and every test but the long ones, with the slowest ten named. test-long: the long tier (QEMU, many-vCPU Xen,
# full campaigns, docs/ci.md), then the other pages with their slow recipes (Debian downloads); CI runs it
# after make test.
test-fast: $(INSTALLED)
	$(PY) -m pytest -q -m "not slow"

test: $(INSTALLED) lint
	$(PY) -m pytest -q -m "not long" --durations=10

test-long: $(INSTALLED) payloads-xen417
	$(PY) -m pytest -q -m long --durations=10
	$(PY) -m pytest -q tests/test_docs_recipes.py --slow-recipes -m "not long"

# 10,000 mutated payloads (make test runs 300) and 2,000 cases on each other axis (make test runs 200);
# FUZZ_SEED=N for another set.
fuzz: $(INSTALLED)
	$(PY) -m pytest -q -s tests/test_fuzz.py tests/test_fuzz_*.py --fuzz-cases 10000 --fuzz-axis-cases 2000 \
		--fuzz-seed $${FUZZ_SEED:-1}

# Every README and docs block, those marked slow too (Debian downloads; make test runs the others).
recipes: $(INSTALLED)
	$(PY) -m pytest -q tests/test_docs_recipes.py --slow-recipes

# The exploration campaigns at full size (make test runs them smaller): figures in the README.
explore-demo: $(INSTALLED) payloads
	$(VENV)/bin/xsplice-emu explore scenarios/explore/unsafe_patch.toml --runs 200 --jobs 2
	$(VENV)/bin/xsplice-emu explore scenarios/explore/safe_apply.toml --runs 2000 --strategy chaos --jobs 2 \
		--plot explore-safe-apply.png
	$(VENV)/bin/xsplice-emu explore scenarios/explore/drop_flush.toml --runs 100 --jobs 2
	$(VENV)/bin/xsplice-emu explore scenarios/explore/racy_counter.toml --runs 1000 --strategy random --jobs 2
	$(VENV)/bin/xsplice-emu explore scenarios/explore/racy_counter.toml --runs 1000 --strategy pct --jobs 2

# mypy keeps its cache in the user's cache, not the tree: a fresh clone (CI's) checks again only the modules whose
# text changed since the last check on this machine (0.6 s instead of 12 s).
lint: $(INSTALLED)
	$(VENV)/bin/ruff check xsplice_emu tests bench
	MYPY_CACHE_DIR="$${XDG_CACHE_HOME:-$$HOME/.cache}/xsplice-emu/mypy" $(VENV)/bin/mypy

bench: $(INSTALLED) payloads
	$(PY) bench/machine.py
	$(PY) bench/livepatch.py
	$(PY) bench/trace.py
	$(PY) bench/viewer.py
	$(PY) bench/oracle.py
	$(PY) bench/real_xen.py
	$(PY) bench/explore.py

clean:
	$(MAKE) -s -C firmware clean
	$(MAKE) -s -C xenctrl clean
	rm -rf payloads/build payloads/build-xen417
	rm -rf $(VENV) *.egg-info build
