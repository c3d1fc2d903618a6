"""The dashboard: server-rendered HTML (Jinja2) plus a little vanilla JS, no build step."""

from edgewise.fleet.dashboard.views import mount_dashboard

__all__ = ["mount_dashboard"]
