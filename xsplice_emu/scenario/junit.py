"""JUnit XML for CI: one testcase per scenario, one failure per failed expectation, one error per bad file."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from ..errors import ConfigError
from .runner import ScenarioResult


def junit_xml(cases: list[tuple[str, ScenarioResult | ConfigError]]) -> str:
    """The results as a JUnit `<testsuites>` document: each case is a unique name (see `report_names`)
    and a result, or the ConfigError of a scenario file that could not be read (an `<error>`)."""
    results = [result for _, result in cases if isinstance(result, ScenarioResult)]
    failures = sum(not result.ok for result in results)
    errors = len(cases) - len(results)
    suites = ET.Element("testsuites", name="xsplice-emu", tests=str(len(cases)), failures=str(failures),
                        errors=str(errors))
    suite = ET.SubElement(suites, "testsuite", name="scenarios", tests=str(len(cases)), failures=str(failures),
                          errors=str(errors), skipped="0", time=f"{sum(r.host_seconds for r in results):.3f}")
    for name, result in cases:
        if isinstance(result, ConfigError):
            case = ET.SubElement(suite, "testcase", classname=f"scenarios.{name}", name=name, time="0")
            ET.SubElement(case, "error", message=str(result), type="malformed scenario").text = str(result)
            continue
        case = ET.SubElement(suite, "testcase", classname=f"scenarios.{name}",
                             name=result.scenario.name, time=f"{result.host_seconds:.3f}")
        for step, check in result.failures:
            if check is None:
                message = f"step {step.number} ({step.command}): {step.error}"
            else:
                message = (f"step {step.number} ({step.command}): {check.what}: "
                           f"expected {check.expected!r}, got {check.got!r}")
            failure = ET.SubElement(case, "failure", message=message, type="expectation" if check else "error")
            failure.text = f"{message}\nreproduce: {result.reproduce}\ndigest: {result.digest}"
        ET.SubElement(case, "system-out").text = f"digest {result.digest}\nvirtual time {result.virtual_ns} ns"
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def report_names(paths: list[Path]) -> list[str]:
    """A unique name per scenario file, for trace files and JUnit classnames: its stem; where stems repeat,
    parent folders joined with `-` (`a-s`, `b-s`) until they differ; a file given twice gets `-2`, `-3`."""
    parts = [Path(path).resolve().with_suffix("").parts for path in paths]
    names = [part[-1] for part in parts]
    for depth in range(2, max((len(p) for p in parts), default=1) + 1):
        clashing = {name for name in names if names.count(name) > 1}
        if not clashing:
            break
        names = ["-".join(part[-depth:]) if name in clashing else name for name, part in zip(names, parts, strict=True)]
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        unique.append(name if seen[name] == 1 else f"{name}-{seen[name]}")
    return unique
