"""Alembic migrations of the fleet database (a package so that it ships in wheels)."""
