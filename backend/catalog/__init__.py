"""Service items (事项), halls, counters, schedules, holiday calendar."""
