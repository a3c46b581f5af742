"""The Debian Xen 4.17 builds xsplice-emu supports: each one's exact version, the sha256 of its two .debs, and
what its xen-syms says of itself (build-id, and the version its xen_*_version functions return).

`debian` (in `--xen-syms`, `--against`, `[machine] xen_syms`) is PINNED_BUILD; `debian:VERSION` names any
row. Tests take their expectations from this table, never from what a download happened to bring. Debian
keeps only the newest version of each suite, so an older row may no longer be fetchable; a newer Debian
build is a new row (its facts are read from a download once: `sha256sum`, `readelf -n`, `session.versions()`).
"""

from __future__ import annotations

from dataclasses import dataclass

XEN_UTILS = "xen-utils-4.17"
"""The package holding xen-livepatch."""

XEN_HYPERVISOR_DBG = "xen-hypervisor-4.17-amd64-dbg"
"""The package holding xen-syms-4.17-amd64, the hypervisor ELF with its symbols."""


@dataclass(frozen=True, kw_only=True)
class DebianXenBuild:
    """One Debian build of Xen 4.17."""

    version: str  # Debian's version of both packages
    utils_sha256: str  # of XEN_UTILS's .deb
    hypervisor_dbg_sha256: str  # of XEN_HYPERVISOR_DBG's .deb
    build_id: str  # xen-syms' .note.gnu.build-id, in hex
    major: int  # xen_major_version()
    minor: int  # xen_minor_version()
    extra: str  # the string xen_extra_version() points to

    @property
    def debs(self) -> tuple[tuple[str, str], ...]:
        """(package, sha256 of its .deb) for both packages, which always come at this one version."""
        return (XEN_UTILS, self.utils_sha256), (XEN_HYPERVISOR_DBG, self.hypervisor_dbg_sha256)


PINNED_BUILD = DebianXenBuild(
    version="4.17.7+13-g2445b30a44-0+deb12u1",  # bookworm-security
    utils_sha256="1c928e408738cab624ee1d0ce2a824b0e9bc8874e91d635208f346940fb6d47c",
    hypervisor_dbg_sha256="e5f831d9f8106661ac4d753a90b7446307dc1331979d48b522d6bd53e76540a5",
    build_id="151b373fd64b321593bf987fd923cd10dabadac4",
    major=4, minor=17, extra=".7",
)

DEBIAN_XEN_BUILDS = (
    PINNED_BUILD,
    DebianXenBuild(
        version="4.17.5+72-g01140da4e8-1",  # bookworm
        utils_sha256="2e0dc8bf6f08bd655b58ed1150ff97790637b641c79f9c8331ee242d651ae935",
        hypervisor_dbg_sha256="237556dac8419388e90807c6489ef500a11b32d8cdd9f1b926558846e787db68",
        build_id="39a640e6f1412319235087391df9f1c5e13ae920",
        major=4, minor=17, extra=".5",
    ),
)
"""Every supported build, the pinned one first."""
