"""Scenarios: TOML files of operator commands, machine events and expectations."""

from .junit import junit_xml, report_names
from .runner import ScenarioResult, StepResult, run_scenario
from .spec import Scenario, load_scenario
from .steps import STEP_KINDS, Check, Step

__all__ = ["STEP_KINDS", "Check", "Scenario", "ScenarioResult", "Step", "StepResult", "junit_xml", "load_scenario",
           "report_names", "run_scenario"]
