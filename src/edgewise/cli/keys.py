"""`edgewise keys new`: publisher (and device) ed25519 key pairs."""

from __future__ import annotations

from pathlib import Path

import typer

keys_app = typer.Typer(help="Manage ed25519 signing keys.", no_args_is_help=True)


@keys_app.command("new")
def new_key(
    path: Path = typer.Argument(Path("publisher.key"), help="private key file to create (mode 0600)"),
) -> None:
    """Create an ed25519 key pair: PATH (private, 0600) and PATH.pub (public, base64)."""
    from edgewise.core.signing import PrivateKey, write_key_pair

    key = PrivateKey.generate()
    public_path = write_key_pair(key, path)
    typer.echo(f"private key: {path} (mode 0600)")
    typer.echo(f"public key:  {public_path}  id {key.public.key_id}")


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")
