"""Xen's test payloads (payloads/src), built with the scenarios into the cache.

An entry mirrors the checkout, so the scenarios' `../payloads/build/FILE`
paths hold in it too:

    ENTRY/payloads/build/NAME.livepatch      one per payloads/src/NAME.c, and:
        xen_bye_world          depends on xen_hello_world (its build-id)
    ENTRY/payloads/build/bad/NAME.livepatch  one per payloads/src/bad/NAME.c, and:
        truncated              xen_hello_world cut to half its size
        xen_no_xen_buildid     xen_nop without .livepatch.xen_depends
    ENTRY/scenarios/*.toml                   a copy of scenarios/

The entry is keyed by the payload sources, the scenarios and the firmware.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .cache import cached, digest
from .firmware import builtin_firmware
from .livepatch.build import build_payload
from .sources import sources_dir

DEMO_SCENARIO = "xen_test_sequence.toml"


def xen_tests() -> Path:
    """The cache entry holding payloads/build and scenarios/, built for the built-in firmware."""
    firmware = builtin_firmware()
    root = sources_dir()
    key = digest(root / "payloads" / "include", root / "payloads" / "src", root / "scenarios", firmware)
    return cached("xen-tests", key, lambda work: _build(root, work, firmware))


def xen_test_payloads() -> Path:
    """The directory of Xen's built test payloads (bad/ holds the ones the loader refuses)."""
    return xen_tests() / "payloads" / "build"


def _build(root: Path, work: Path, firmware: Path) -> None:
    source, build = root / "payloads" / "src", work / "payloads" / "build"
    hello = build / "xen_hello_world.livepatch"
    (build / "bad").mkdir(parents=True)
    for file in sorted(source.glob("*.c")) + sorted(source.glob("bad/*.c")):
        if file.stem != "xen_bye_world":
            build_payload(file, build / file.relative_to(source).with_suffix(".livepatch"), firmware=firmware)
    build_payload(source / "xen_bye_world.c", build / "xen_bye_world.livepatch", firmware=firmware, depends=hello)
    build_payload(source / "xen_nop.c", build / "bad" / "xen_no_xen_buildid.livepatch", firmware=firmware,
                  xen_depends=False)
    data = hello.read_bytes()
    (build / "bad" / "truncated.livepatch").write_bytes(data[: len(data) // 2])
    shutil.copytree(root / "scenarios", work / "scenarios")
