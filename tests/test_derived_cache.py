"""What is derived from an image is kept in the build cache, for the next process (provision/derived.py)."""

from __future__ import annotations

import pytest

from xsplice_emu import builtin_firmware, image
from xsplice_emu.image import Image, load_image
from xsplice_emu.provision.derived import derived

COMPUTED: list[int] = []


def function_names(loaded: Image) -> tuple[str, ...]:
    """An analysis that counts its runs."""
    COMPUTED.append(1)
    return tuple(sorted(symbol.name for symbol in loaded.functions()))


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """A loader of the built-in firmware as a process starting anew would (no image kept in memory), with the
    build cache in `tmp_path/cache`."""
    firmware = builtin_firmware()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    COMPUTED.clear()

    def load() -> Image:
        image._loaded.clear()
        return load_image(firmware)
    return load


def test_an_analysis_is_computed_once_then_read_back_by_the_next_process(fresh, tmp_path):
    """The first image computes it and leaves one entry; the same bytes loaded anew read it back, equal."""
    first = derived(fresh(), function_names)
    assert "check_for_xsplice_work" in first and len(COMPUTED) == 1
    assert len(list((tmp_path / "cache" / "xsplice-emu").glob("derived-*/value.pickle"))) == 1
    assert derived(fresh(), function_names) == first
    assert len(COMPUTED) == 1


def test_a_damaged_entry_is_computed_again(fresh, tmp_path):
    """An entry cut short is not trusted: the analysis runs again and gives what it gave."""
    first = derived(fresh(), function_names)
    entry = next((tmp_path / "cache" / "xsplice-emu").glob("derived-*/value.pickle"))
    entry.write_bytes(entry.read_bytes()[:10])
    assert derived(fresh(), function_names) == first
    assert len(COMPUTED) == 2


def test_a_cache_that_cannot_be_written_computes_in_every_process(monkeypatch, fresh, tmp_path):
    """The cache's place is a file: nothing is kept, nothing fails, each process computes."""
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    assert derived(fresh(), function_names) == derived(fresh(), function_names)
    assert len(COMPUTED) == 2
