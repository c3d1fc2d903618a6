"""The fleet database: models, engine set-up and Alembic migrations shipped inside the package."""

from edgewise.fleet.db.engine import Database, open_database

__all__ = ["Database", "open_database"]
