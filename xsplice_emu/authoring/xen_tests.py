"""Xen's test payloads (payloads/src), built with the scenarios into the cache.

An entry mirrors the checkout, so the scenarios' `../payloads/build/FILE`
paths hold in it too:

    ENTRY/payloads/build/NAME.livepatch      one per payloads/src/NAME.c, and:
        xen_bye_world          depends on xen_hello_world (its build-id)
    ENTRY/payloads/build/bad/NAME.livepatch  one per payloads/src/bad/NAME.c, and:
        truncated              xen_hello_world cut to half its size
        xen_no_xen_buildid     xen_hello_world without .livepatch.xen_depends
    ENTRY/scenarios/*.toml                   a copy of scenarios/

The entry is keyed by the payload sources, the scenarios and the firmware.

`xen_tests_for(xen_syms)` builds the same payloads against a real Xen image
(`payload build --against`) into ENTRY/payloads/build-xen417, the directory
the scenarios in scenarios/xen417 name, except FIRMWARE_ONLY: payloads whose
sources assert facts of the built-in firmware's code.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ..provision.cache import cached, digest
from ..provision.firmware import builtin_firmware
from ..provision.sources import sources_dir
from .build import build_payload

DEMO_SCENARIO = "xen_test_sequence.toml"


REAL_XEN_BUILD = "build-xen417"
FIRMWARE_ONLY = frozenset({
    "xen_nop",  # asserts the firmware's xen_minor_version is `mov $7,%eax; ret`
    "bad/static_target",  # targets a static of the firmware's tiny_a.c
    "bad/too_short",  # targets the firmware's one-byte tiny_ret
    "busy_chunk",  # targets the firmware's busy task
    "hook_lab_actions", "hook_lab_load",  # their hooks call the firmware's check_for_xsplice_work
})


def xen_tests() -> Path:
    """The cache entry holding payloads/build and scenarios/, built for the built-in firmware."""
    firmware = builtin_firmware()
    root = sources_dir()
    key = digest(root / "payloads" / "include", root / "payloads" / "src", root / "scenarios", firmware)

    def build(work: Path) -> None:
        _build(root, work / "payloads" / "build", firmware, frozenset())
        shutil.copytree(root / "scenarios", work / "scenarios")

    return cached("xen-tests", key, build)


def xen_tests_for(xen_syms: Path) -> Path:
    """The directory of Xen's test payloads built against the real Xen image `xen_syms` (but FIRMWARE_ONLY)."""
    root = sources_dir()
    key = digest(root / "payloads" / "include", root / "payloads" / "src", xen_syms)
    entry = cached("xen-tests-real", key, lambda work: _build(root, work / REAL_XEN_BUILD, xen_syms, FIRMWARE_ONLY))
    return entry / REAL_XEN_BUILD


def xen_test_payloads() -> Path:
    """The directory of Xen's built test payloads (bad/ holds the ones the loader refuses)."""
    return xen_tests() / "payloads" / "build"


def _build(root: Path, build: Path, firmware: Path, skip: frozenset[str]) -> None:
    """Every payload of payloads/src (but `skip`) built against `firmware` into `build`."""
    source = root / "payloads" / "src"
    hello = build / "xen_hello_world.livepatch"
    (build / "bad").mkdir(parents=True)
    for file in sorted(source.glob("*.c")) + sorted(source.glob("bad/*.c")):
        name = file.relative_to(source).with_suffix("")
        if file.stem != "xen_bye_world" and str(name) not in skip:
            build_payload(file, build / name.with_suffix(".livepatch"), firmware=firmware)
    build_payload(source / "xen_bye_world.c", build / "xen_bye_world.livepatch", firmware=firmware, depends=hello)
    build_payload(source / "xen_hello_world.c", build / "bad" / "xen_no_xen_buildid.livepatch", firmware=firmware,
                  xen_depends=False)
    data = hello.read_bytes()
    (build / "bad" / "truncated.livepatch").write_bytes(data[: len(data) // 2])
