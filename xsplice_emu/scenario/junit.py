"""JUnit XML for CI: one testcase per scenario, one failure per failed expectation."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from .runner import ScenarioResult


def junit_xml(results: list[ScenarioResult]) -> str:
    """The results as a JUnit `<testsuites>` document."""
    failures = sum(not result.ok for result in results)
    suites = ET.Element("testsuites", name="xsplice-emu", tests=str(len(results)), failures=str(failures))
    suite = ET.SubElement(suites, "testsuite", name="scenarios", tests=str(len(results)), failures=str(failures),
                          errors="0", skipped="0", time=f"{sum(r.host_seconds for r in results):.3f}")
    for result in results:
        case = ET.SubElement(suite, "testcase", classname=f"scenarios.{result.scenario.path.stem}",
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
