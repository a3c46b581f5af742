"""The Debian packages xsplice-emu fetches, each by exact version and sha256: the Xen 4.17 builds it supports,
and what the reference's dom0 needs beside Xen's own packages.

A build row holds its exact version, the sha256 of each of its packages' .debs (Xen's source package builds
them all at one version) and what its xen-syms says of itself (build-id, and the version its xen_*_version
functions return). `debian` (in `--xen-syms`, `--against`, `[machine] xen_syms`) is PINNED_BUILD;
`debian:VERSION` names any row. Tests take their expectations from this table, never from what a download
happened to bring. Debian keeps only the newest version of each suite, so an older row may no longer be
fetchable; a newer Debian build is a new row (its facts are read once: the sha256s from apt's package index,
`readelf -n`, `session.versions()`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

XEN_UTILS = "xen-utils-4.17"
"""The package holding xen-livepatch."""
XEN_HYPERVISOR_DBG = "xen-hypervisor-4.17-amd64-dbg"
"""The package holding xen-syms-4.17-amd64, the hypervisor ELF with its symbols."""
XEN_HYPERVISOR = "xen-hypervisor-4.17-amd64"
"""The package holding Xen's boot image (the reference boots it)."""
XEN_LIBRARIES = ("libxenmisc4.17", "libxencall1", "libxenforeignmemory1", "libxengnttab1", "libxendevicemodel1",
                 "libxentoolcore1", "libxentoollog1", "libxenevtchn1", "libxenstore4", "libxenhypfs1")
"""The libraries Debian's xen-livepatch loads that Xen's source package builds (libxenctrl.so.4.17 is in
libxenmisc4.17)."""


@dataclass(frozen=True)
class DebianPackage:
    """One .deb: its package name, exact version and sha256."""

    name: str
    version: str
    sha256: str


@dataclass(frozen=True, kw_only=True)
class DebianXenBuild:
    """One Debian build of Xen 4.17."""

    version: str  # Debian's version of every package of the build
    sha256: Mapping[str, str]  # of each package's .deb, by package name
    build_id: str  # xen-syms' .note.gnu.build-id, in hex
    major: int  # xen_major_version()
    minor: int  # xen_minor_version()
    extra: str  # the string xen_extra_version() points to

    def package(self, name: str) -> DebianPackage:
        """Package `name` of this build."""
        return DebianPackage(name, self.version, self.sha256[name])

    @property
    def testbed_packages(self) -> tuple[DebianPackage, ...]:
        """What the testbed uses of the build: xen-livepatch and xen-syms."""
        return self.package(XEN_UTILS), self.package(XEN_HYPERVISOR_DBG)


PINNED_BUILD = DebianXenBuild(
    version="4.17.7+13-g2445b30a44-0+deb12u1",  # bookworm-security
    sha256={
        XEN_UTILS: "1c928e408738cab624ee1d0ce2a824b0e9bc8874e91d635208f346940fb6d47c",
        XEN_HYPERVISOR_DBG: "e5f831d9f8106661ac4d753a90b7446307dc1331979d48b522d6bd53e76540a5",
        XEN_HYPERVISOR: "fc074298a677325306662eea382cc4503339b8e1f4db54b24702b0b07cf6741d",
        "libxenmisc4.17": "bb43a3633976c8dfa79e0cad473ffeb4f014a5f666b3b62a32bd42ab6daf8862",
        "libxencall1": "7479a19973fc1f5d35a73370e3ace8968d3bfb6c49f6b723b2ce85103fd7ebf1",
        "libxenforeignmemory1": "c3a57bceb6eb06d77b960a133ac0591024d992fd1e820b25c4e3323d4635e04e",
        "libxengnttab1": "3525aa228b3f27e0a267bc6f9f59ab9963a2adf490a0df406810988b5fdee98e",
        "libxendevicemodel1": "205a8f266517dee5ac9c676aa2540e2865758cc584e2602ed978a76f160ef042",
        "libxentoolcore1": "67deaa6b71b3f5caa5021f45f2aa1b3054ce3a972e236222e9d79affe54e0c72",
        "libxentoollog1": "2d3d38d45d8176dd5d1517020c2daf686885f034229c33595ca263d0a9c8ecd3",
        "libxenevtchn1": "95f4a1a52c95c62360881c1a2770a47b5ff52bed6658e008754bda0cf5c92f0b",
        "libxenstore4": "94197a6d85b33377f6f1775fa89b2c5eea96822736a87b4bb36f7a70fc7ff4d0",
        "libxenhypfs1": "2eb9de8ca25a0142f7a54fe05563fca78f7afcf4bad9c936602b4c96a68ddfb6",
    },
    build_id="151b373fd64b321593bf987fd923cd10dabadac4",
    major=4, minor=17, extra=".7",
)

DEBIAN_XEN_BUILDS = (
    PINNED_BUILD,
    DebianXenBuild(
        version="4.17.5+72-g01140da4e8-1",  # bookworm
        sha256={
            XEN_UTILS: "2e0dc8bf6f08bd655b58ed1150ff97790637b641c79f9c8331ee242d651ae935",
            XEN_HYPERVISOR_DBG: "237556dac8419388e90807c6489ef500a11b32d8cdd9f1b926558846e787db68",
            XEN_HYPERVISOR: "b602bb2aa83042bd1e3390ff66201b62da806d2ff6f2c86a2759997aa968222b",
            "libxenmisc4.17": "a4fa17c1b2ebcba786fb836668544adb3f3fb3fe364855d2185d8ffa62c53f9a",
            "libxencall1": "ebc1eee0055e48f3087010d146ced41a86d541964f9cfd307602c9636468b223",
            "libxenforeignmemory1": "403cdb05a64851e4eea4c87b1ab50845a8371ac5fc361bcf2daacbe63b79a6ae",
            "libxengnttab1": "31180a1f5076fc1c59f5035d9326d4c7cfc0ae1c5978485153b161d3b6a253bb",
            "libxendevicemodel1": "f16055e3a12c38abd5a10530a0895d274e69d26fb73aa373efd5f5477785712b",
            "libxentoolcore1": "18326e8ce11a42c7e2646a6954cfd22b1ac1cc889c4508d4ed94c913e2658541",
            "libxentoollog1": "063973644ce91c34dea31acc1d806c6cd26e7f7d6d152d06dd70fc817ad0a3e9",
            "libxenevtchn1": "8a72c80afd46771baa611e1a31de8c5becb06779dead336ad345e625ebb80859",
            "libxenstore4": "56d2c3577047398810ce6e318ecbcb88944f3cacdadcbf5a5ed1f1b74784111f",
            "libxenhypfs1": "60f0b99631a3b312b8c206f2caee5c59a0bfab738b90a88db4c322e7613e635f",
        },
        build_id="39a640e6f1412319235087391df9f1c5e13ae920",
        major=4, minor=17, extra=".5",
    ),
)
"""Every supported build, the pinned one first."""

DOM0_KERNEL = DebianPackage("linux-image-6.1.0-50-amd64", "6.1.176-1",  # bookworm and bookworm-security
                            "7b5597492a0a65aee61985a492e6bcc3f2cde830072a0e3b3d8c7e1b90279bd3")
DOM0_PACKAGES = (
    DOM0_KERNEL,
    DebianPackage("busybox-static", "1:1.35.0-4+deb12u1+b1",
                  "3d3fdbe91d4660c873e14b092c213fe81c1da6362daa236eb25d0171eb108744"),
    DebianPackage("libyajl2", "2.1.0-3+deb12u2", "b512a6efbe735e7c731185a1b3ea477ff306f0c3f6aa2970e85b12f01fe8063b"),
    DebianPackage("libc6", "2.36-9+deb12u14", "ba4f88f73dbc3ae9055f3c20f4523bfdbaf1ad13ff95e258924f77d20b4fbedf"),
)
"""What the reference's dom0 needs beside the Xen build's packages: its kernel (with the xen-privcmd, xenfs and
xen-evtchn modules), busybox, and xen-livepatch's other libraries."""
