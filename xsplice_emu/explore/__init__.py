"""Exploration campaigns: a scenario under thousands of seeded schedules and fault draws (explore command)."""
