"""The service starters themselves: each real service comes up and answers."""

from __future__ import annotations

import socket

import httpx


def test_postgres_accepts_sql(postgres_url: str) -> None:
    import sqlalchemy

    engine = sqlalchemy.create_engine(postgres_url)
    with engine.connect() as connection:
        assert connection.execute(sqlalchemy.text("select 41 + 1")).scalar() == 42
    engine.dispose()


def test_oci_registry_speaks_distribution_api(oci_registry) -> None:
    response = httpx.get(f"http://{oci_registry.url}/v2/")
    assert response.status_code == 200


def test_mosquitto_listens(mqtt_broker) -> None:
    with socket.create_connection(("127.0.0.1", mqtt_broker.port), timeout=2):
        pass
