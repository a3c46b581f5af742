"""`pytest scenarios/` on a checkout: the payloads these scenarios load are built first (into the cache once,
then copied as `make payloads` and `make payloads-xen417` do). When Debian's Xen cannot be fetched, the plugin
skips the scenarios of scenarios/xen417, saying why."""

from __future__ import annotations

import shutil
from pathlib import Path

from xsplice_emu.authoring.xen_tests import xen_test_payloads, xen_tests_for
from xsplice_emu.errors import ToolchainError
from xsplice_emu.provision.debian import load_xen_syms

PAYLOADS = Path(__file__).resolve().parent.parent / "payloads"
collect_ignore = [] if (PAYLOADS / "build-xen-bugs" / "xen-syms").is_file() else ["bugs"]
"""scenarios/bugs run on the Xen image `make xen-bugs` builds from source (minutes): left out until it has."""


def pytest_sessionstart(session):
    """Xen's test payloads into payloads/build, and those built against Debian's Xen into payloads/build-xen417."""
    shutil.copytree(xen_test_payloads(), PAYLOADS / "build", dirs_exist_ok=True)
    try:
        built = xen_tests_for(load_xen_syms("debian").path)
    except ToolchainError:
        return  # the xen417 scenarios are skipped, each with the download's one-line error
    shutil.copytree(built, PAYLOADS / "build-xen417", dirs_exist_ok=True)
