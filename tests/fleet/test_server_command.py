"""`edgewise server` as a user runs it: a real process, here over HTTPS with a self-signed certificate."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.services import free_port, wait_for_port


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_server_command_serves_https_and_openapi(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "edgewise", "server", "--db", f"sqlite:///{tmp_path / 'f.db'}", "--port", str(port),
         "--store", str(tmp_path / "store"), "--tls-cert", str(cert), "--tls-key", str(key), "--log-level", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_port(port, 60, process)
        with httpx.Client(verify=ssl.create_default_context(cafile=str(cert))) as client:
            assert client.get(f"https://127.0.0.1:{port}/healthz").json()["status"] == "ok"
            paths = client.get(f"https://127.0.0.1:{port}/openapi.json").json()["paths"]
            assert "/api/v1/enroll" in paths and "/api/v1/device/ingest" in paths
    finally:
        process.terminate()
        process.wait(15)


def test_server_command_refuses_half_a_tls_pair(tmp_path: Path) -> None:
    cert, _key = self_signed(tmp_path)
    result = subprocess.run([sys.executable, "-m", "edgewise", "server", "--db", f"sqlite:///{tmp_path / 'f.db'}",
                             "--tls-cert", str(cert)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "--tls-cert and --tls-key go together" in result.stderr
