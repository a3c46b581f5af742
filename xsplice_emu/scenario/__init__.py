"""Scenarios: TOML files of operator commands, machine events and expectations."""

from .junit import junit_xml
from .runner import Check, ScenarioResult, StepResult, run_scenario
from .spec import Scenario, load_scenario

__all__ = ["Check", "Scenario", "ScenarioResult", "StepResult", "junit_xml", "load_scenario", "run_scenario"]
