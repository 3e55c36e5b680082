"""The anonymous HTTP surface (health, catalog, halls, progress, certificate verify)."""
