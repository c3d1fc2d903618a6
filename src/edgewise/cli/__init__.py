"""Thin command wrappers. Each module here defines `register(app)` and imports its part lazily,
inside the command, so `edgewise agent` never loads torch."""
