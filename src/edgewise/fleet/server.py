"""Run the control plane under uvicorn (TLS when a certificate and key are given)."""

from __future__ import annotations

import errno
import socket

from edgewise.core.errors import ConfigError
from edgewise.fleet.settings import ServerSettings


def check_port_free(host: str, port: int) -> None:
    """ConfigError naming the port when another program listens there (uvicorn would print a raw Errno)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is no conflict
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise ConfigError(f"port {port} on {host} is already in use (another edgewise server?)",
                                  "stop the other program, or pass --port with a free port") from None
            raise ConfigError(f"cannot listen on {host}:{port}: {error.strerror}",
                              "check --host (an address of this machine) and --port") from None


def serve(settings: ServerSettings, log_level: str = "info") -> None:
    import uvicorn

    from edgewise.fleet.app import create_app

    if (settings.tls_cert is None) != (settings.tls_key is None):
        raise ConfigError("--tls-cert and --tls-key go together", "pass both, or neither for plain HTTP")
    for path in (settings.tls_cert, settings.tls_key):
        if path is not None and not path.is_file():
            raise ConfigError(f"TLS file {path} not found", "pass the PEM certificate and key files")
    check_port_free(settings.host, settings.port)
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
