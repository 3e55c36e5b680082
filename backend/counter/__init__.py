"""The clerk-facing HTTP surface (/api/v1/staff)."""
