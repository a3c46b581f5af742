"""Debian's Xen builds (issue 19): each row of the table is what its xen-syms says, a payload built against one
build is refused by another, and a build that cannot be had is one line that changes nothing."""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import ROOT, debian_file

from xsplice_emu.cli import main
from xsplice_emu.control.session import Session
from xsplice_emu.errors import ToolchainError
from xsplice_emu.provision.debian import load_xen_syms, unpacked, xen_syms, xen_syms_path
from xsplice_emu.provision.debian_builds import DEBIAN_XEN_BUILDS, PINNED_BUILD, XEN_UTILS, DebianXenBuild

SYSTEM_LISTS = Path("/var/lib/apt/lists")


def _name(build: DebianXenBuild) -> str:
    return f"debian:{build.version}"


@pytest.mark.parametrize("build", DEBIAN_XEN_BUILDS, ids=_name)
def test_each_build_is_what_the_table_says(build):
    """Fetched by its version, the build's xen-syms has the table's build-id, and every vCPU's real
    xen_*_version functions return the table's major, minor and extra version."""
    xen = load_xen_syms(debian_file(lambda: xen_syms_path(_name(build))))
    assert xen.build_id.hex() == build.build_id
    session = Session(vcpus=2, seed=1, xen_syms=xen.path)
    assert {(v.major, v.minor, v.extra) for v in session.versions()} == {(build.major, build.minor, build.extra)}


@pytest.mark.slow
@pytest.mark.parametrize(("built", "other"), [DEBIAN_XEN_BUILDS[:2], DEBIAN_XEN_BUILDS[1::-1]],
                         ids=lambda build: build.version)
def test_a_payload_built_against_one_build_is_refused_by_the_other(built, other, tmp_path):
    """hello built --against debian:A: on debian:B the upload is -EINVAL naming both build-ids; on A it
    applies and the real xen_extra_version says "Hello World"."""
    for build in (built, other):
        debian_file(lambda build=build: xen_syms(build))
    payload = tmp_path / "hello.livepatch"
    runner = CliRunner()
    made = runner.invoke(main, ["payload", "build", str(ROOT / "payloads" / "src" / "xen_hello_world.c"),
                                "--against", _name(built), "-o", str(payload)])
    assert made.exit_code == 0 and made.output.endswith(f"depends {built.build_id})\n"), made.output
    refused = runner.invoke(main, ["payload", "check", str(payload), "--xen-syms", _name(other)])
    assert refused.exit_code == 1
    assert refused.output.splitlines()[1:] == [
        f"  upload   refused: -EINVAL: hello: .livepatch.xen_depends {built.build_id} is not the hypervisor's "
        f"build-id {other.build_id}", "  apply    not tried (the upload was refused)", "verdict: NOT OK"]
    accepted = runner.invoke(main, ["payload", "check", str(payload), "--xen-syms", _name(built)])
    assert accepted.exit_code == 0
    assert f"  xen_extra_version  '{built.extra}' -> 'Hello World'" in accepted.output.splitlines()


def test_a_scenario_names_a_build_by_version(tmp_path):
    """`[machine] xen_syms = "debian:VERSION"` of the build that is not pinned: its real xen_extra_version runs
    on every vCPU (not the pinned build's, not a file named so beside the scenario)."""
    other = next(build for build in DEBIAN_XEN_BUILDS if build != PINNED_BUILD)
    debian_file(lambda: xen_syms(other))
    scenario = tmp_path / "other.toml"
    scenario.write_text(f'[machine]\nvcpus = 2\nxen_syms = "{_name(other)}"\n\n'
                        f'[[step]]\nexpect = {{ extra_version = "{other.extra}" }}\n')
    result = CliRunner().invoke(main, ["run", str(scenario), "-q"])
    assert result.exit_code == 0 and result.output.startswith("PASS "), result.output


def test_a_build_the_table_does_not_have_is_one_line():
    """`--xen-syms debian:4.17.0`: exit 2 and one line naming it and the builds there are."""
    result = CliRunner().invoke(main, ["livepatch", "--xen-syms", "debian:4.17.0", "list"])
    known = ", ".join(build.version for build in DEBIAN_XEN_BUILDS)
    assert result.exit_code == 2
    assert result.output == f"error: debian:4.17.0: not a Debian Xen build xsplice-emu knows (it knows {known})\n"


def _system_lists() -> list[tuple[str, int, int]]:
    return sorted((file.name, file.stat().st_size, file.stat().st_mtime_ns)
                  for file in SYSTEM_LISTS.iterdir() if file.is_file())


@pytest.mark.slow
def test_a_version_apt_does_not_offer_is_one_line_and_the_systems_lists_stay_as_they_were(tmp_path, monkeypatch):
    """A row whose version Debian never made: not in the system's lists, so apt's lists are updated into the
    cache and it is not there either: one line naming the version and `apt-get update`; the cache holds
    nothing and the system's lists are unchanged."""
    if shutil.which("apt-get") is None:
        pytest.skip("no apt-get here")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    before = _system_lists()
    with pytest.raises(ToolchainError) as refused:
        unpacked(replace(PINNED_BUILD, version="4.17.0+0-g0000000000-0"))
    message = str(refused.value)
    assert message.startswith("cannot fetch Debian's Xen 4.17.0+0-g0000000000-0: ") and "\n" not in message
    assert "`apt-get update`" in message
    assert list((tmp_path / "cache" / "xsplice-emu").iterdir()) == []
    assert _system_lists() == before


def test_a_deb_whose_sha256_is_not_the_tables_is_refused_before_it_is_unpacked(tmp_path, monkeypatch):
    """An archive that serves other bytes under the pinned version (an apt-get that downloads junk): one line
    naming the .deb, its sha256 and the table's; nothing is unpacked or cached."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "apt-get").write_text('#!/bin/sh\nfor want; do case $want in *=*) '
                                     'echo junk > "${want%%=*}_${want#*=}_amd64.deb";; esac; done\n')
    (bin_dir / "apt-get").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(ToolchainError) as refused:
        unpacked(PINNED_BUILD)
    junk = hashlib.sha256(b"junk\n").hexdigest()
    assert str(refused.value) == (f"cannot fetch Debian's Xen {PINNED_BUILD.version}: {XEN_UTILS}_"
                                  f"{PINNED_BUILD.version}_amd64.deb has sha256 {junk}, not the pinned "
                                  f"{PINNED_BUILD.sha256[XEN_UTILS]}")
    assert list((tmp_path / "cache" / "xsplice-emu").iterdir()) == []
