"""Run the control plane under uvicorn (TLS when a certificate and key are given)."""

from __future__ import annotations

from edgewise.core.errors import ConfigError
from edgewise.fleet.settings import ServerSettings


def serve(settings: ServerSettings, log_level: str = "info") -> None:
    import uvicorn

    from edgewise.fleet.app import create_app

    if (settings.tls_cert is None) != (settings.tls_key is None):
        raise ConfigError("--tls-cert and --tls-key go together", "pass both, or neither for plain HTTP")
    for path in (settings.tls_cert, settings.tls_key):
        if path is not None and not path.is_file():
            raise ConfigError(f"TLS file {path} not found", "pass the PEM certificate and key files")
    app = create_app(settings)
    app.state.ctx.device_requests.prepare()  # a device process that cannot start: one line, not a traceback
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        ssl_certfile=str(settings.tls_cert) if settings.tls_cert else None,
        ssl_keyfile=str(settings.tls_key) if settings.tls_key else None,
        log_level=log_level,
        access_log=False,
        timeout_keep_alive=75,
    )
