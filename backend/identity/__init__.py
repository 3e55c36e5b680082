"""Residents, real-name data, staff, roles and tokens."""
