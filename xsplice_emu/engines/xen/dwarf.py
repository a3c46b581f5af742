"""Structure offsets of a Xen build read from its DWARF (a xen-syms built with debug information, such as
`xsplice-emu xen build` leaves): the same fields `layout.StructOffsets` holds for Debian's build, whose xen-syms
has none."""

from __future__ import annotations

from pathlib import Path

from elftools.common.exceptions import DWARFError, ELFError
from elftools.dwarf.die import DIE
from elftools.elf.elffile import ELFFile

from ...errors import ConfigError
from ...files import file_errors, open_regular

MEMBERS = {
    "cpu_info": ("processor_id", "current_vcpu", "per_cpu_offset", "cr4"),
    "vcpu": ("vcpu_id", "processor", "vcpu_info", "domain", "sched_unit"),
    "sched_unit": ("domain",),
    "domain": ("domain_id",),
    "cpu_time": ("tsc_scale",),
    "time_scale": ("shift", "mul_frac"),
}
"""The structures (by tag name) and members the platform fills."""
SIZE = ""
"""The key of a structure's size among its member offsets."""

Layouts = dict[str, dict[str, int]]


def struct_layouts(path: Path) -> Layouts:
    """Offsets of `MEMBERS` (and each structure's size under `SIZE`) in the xen-syms at `path` (ConfigError, one
    line, when it has no debug information or lacks one of them)."""
    with open_regular(path, what="Xen image") as file, file_errors(path, "read the Xen image"):
        try:
            elf = ELFFile(file)
            if not elf.has_dwarf_info() or elf.get_section_by_name(".debug_info") is None:
                raise ConfigError(f"{path}: the Xen image has no DWARF (build it with debug information: "
                                  "`xsplice-emu xen build`)")
            return _find(path, elf)
        except (ELFError, DWARFError) as exc:
            raise ConfigError(f"{path}: cannot read the Xen image's DWARF: {exc}") from None


def _find(path: Path, elf: ELFFile) -> Layouts:
    found: Layouts = {}
    for unit in elf.get_dwarf_info().iter_CUs():
        for die in unit.get_top_DIE().iter_children():
            name = _name(die)
            if (die.tag == "DW_TAG_structure_type" and name in MEMBERS and name not in found
                    and "DW_AT_declaration" not in die.attributes):
                found[name] = _members(die)
        if len(found) == len(MEMBERS):
            break
    for struct, members in MEMBERS.items():
        missing = [member for member in members if member not in found.get(struct, {})]
        if missing:
            raise ConfigError(f"{path}: the Xen image's DWARF has no struct {struct} member {missing[0]}")
    return found


def _members(die: DIE) -> dict[str, int]:
    members = {_name(child): child.attributes["DW_AT_data_member_location"].value for child in die.iter_children()
               if child.tag == "DW_TAG_member" and "DW_AT_data_member_location" in child.attributes}
    members[SIZE] = die.attributes["DW_AT_byte_size"].value
    return members


def _name(die: DIE) -> str:
    attribute = die.attributes.get("DW_AT_name")
    return attribute.value.decode("utf-8", "replace") if attribute is not None else ""
