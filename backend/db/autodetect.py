"""The config tortoise's migration autodetector reads (`palmhall makemigrations`).

Migrations are database-neutral operations; the autodetector compares the models with the
committed migration files, so an in-memory database is all it needs.
"""

from backend.db import tortoise_config

TORTOISE_ORM = tortoise_config("sqlite://:memory:")
