"""`edgewise registry list|show|promote`: the model registry over a bundle store."""

from __future__ import annotations

import typer

from edgewise.cli.bundle import STORE_HELP, default_store_url, describe_manifest
from edgewise.cli.output import JSON_OUT, print_json

registry_app = typer.Typer(help="Browse model versions, stages and lineage; promote versions.", no_args_is_help=True)


def _models(store: str | None):  # type: ignore[no-untyped-def]
    from edgewise.registry import open_store
    from edgewise.registry.models import ModelRegistry

    return ModelRegistry(open_store(store or default_store_url()))


@registry_app.command("list")
def list_versions(
    name: str | None = typer.Argument(None, help="model name (default: every model)"),
    store: str | None = typer.Option(None, "--store", envvar="EDGEWISE_STORE", help=STORE_HELP),
    as_json: bool = JSON_OUT,
) -> None:
    """Every published version with its aliases, accuracy, size and digest."""
    models = _models(store)
    names = [name] if name else models.names()
    listed = [{"model": model_name, "version": version.published.version, "aliases": list(version.aliases),
               "accuracy": version.metrics.accuracy, "size_bytes": version.metrics.size_bytes,
               "digest": version.published.digest}
              for model_name in names for version in models.versions(model_name)]
    if as_json:
        return print_json(listed)
    if not listed:
        typer.echo(f"no bundles in {models.store.url}")
        return
    typer.echo(f"{'MODEL':<20} {'VERSION':<14} {'ALIASES':<22} {'ACCURACY':>9} {'SIZE':>11}  DIGEST")
    for item in listed:
        accuracy, size = item["accuracy"], item["size_bytes"]
        typer.echo(
            f"{item['model']:<20} {item['version']:<14} {','.join(item['aliases']) or '-':<22} "
            f"{'-' if accuracy is None else f'{accuracy:.4f}':>9} {'-' if size is None else f'{size:,}':>11}  "
            f"{item['digest'][:19]}"
        )


@registry_app.command("show")
def show(
    ref: str = typer.Argument(..., help="NAME:VERSION, NAME:ALIAS or NAME@sha256:DIGEST"),
    store: str | None = typer.Option(None, "--store", envvar="EDGEWISE_STORE", help=STORE_HELP),
) -> None:
    """One version: manifest summary, aliases and its lineage chain."""
    models = _models(store)
    version = models.show(ref)
    typer.echo(describe_manifest(models.store.manifest(version.published.ref), None, signed_known=False))
    typer.echo(f"aliases    {', '.join(version.aliases) or '-'}")
    typer.echo(f"chain      {' <- '.join(models.lineage_chain(version.published.ref))}")


@registry_app.command("promote")
def promote(
    ref: str = typer.Argument(..., help="the version to promote: NAME:VERSION, NAME:ALIAS or NAME@sha256:..."),
    stage: str = typer.Option("production", "--to", help="alias/stage to point at it (staging, production...)"),
    store: str | None = typer.Option(None, "--store", envvar="EDGEWISE_STORE", help=STORE_HELP),
) -> None:
    """Move an alias (default `production`) to a published version."""
    models = _models(store)
    before = models.store.aliases(ref.split("@")[0].split(":")[0]).get(stage)
    published = models.promote(ref, stage)
    moved = f" (was {before})" if before and before != published.version else ""
    typer.echo(f"{published.name}:{stage} -> {published.version} {published.digest}{moved}")


def register(app: typer.Typer) -> None:
    app.add_typer(registry_app, name="registry")
