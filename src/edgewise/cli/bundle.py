"""`edgewise bundle create|sign|verify|inspect|push|pull`: thin wrappers over core.bundle and registry."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from edgewise.core.errors import ConfigError

if TYPE_CHECKING:
    from edgewise.core.manifest import Manifest
    from edgewise.core.signing import PublicKey

bundle_app = typer.Typer(help="Create, sign, verify, inspect, push and pull model bundles.", no_args_is_help=True)

STORE_HELP = "bundle store: a directory, file:///path or oci://HOST:PORT/NAMESPACE (default ~/.edgewise/registry)"


def default_store_url() -> str:
    from edgewise.core.settings import default_home

    return str(default_home() / "registry")


def _parse_variant(text: str) -> tuple[str, Path, str, list[str]]:
    """NAME=PATH[:PRECISION[:FAMILY,FAMILY]] -> (name, path, precision, families)."""
    if "=" not in text:
        raise ConfigError(f"bad --variant {text!r}", "write it as NAME=PATH[:PRECISION[:FAMILY,FAMILY]]")
    name, rest = text.split("=", 1)
    parts = rest.split(":")
    precision = parts[1] if len(parts) > 1 and parts[1] else "fp32"
    families = parts[2].split(",") if len(parts) > 2 and parts[2] else ["cpu"]
    return name, Path(parts[0]), precision, families


def trusted_keys(trust: list[str]) -> list[PublicKey]:
    """Public keys from `.pub` paths or base64 text; a path that does not exist is named as such."""
    from edgewise.core.signing import load_public_key


    for entry in trust:
        if (entry.endswith(".pub") or "/" in entry) and not Path(entry).is_file():
            raise ConfigError(f"public key file {entry} not found", "pass the publisher's .pub file or its base64")
    return [load_public_key(entry) for entry in trust]


def _floats(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise ConfigError(f"bad number list {text!r}", "write three numbers like 0.485,0.456,0.406") from None
    if len(values) != 3:
        raise ConfigError(f"{text!r} needs three values (one per colour channel)", "e.g. 0.5,0.5,0.5")
    return values


@bundle_app.command("create")
def create(
    out_dir: Path = typer.Argument(..., help="bundle directory to create (must not exist or be empty)"),
    name: str = typer.Option(..., "--name", help="model name, e.g. detector"),
    version: str = typer.Option(..., "--version", help="bundle version, e.g. 1.0.0"),
    from_run: list[Path] = typer.Option([], "--from-run", help="a compress step folder RUN/steps/NN-name (repeat "
                                        "for more variants; the first fills labels, metrics and lineage)"),
    onnx: Path | None = typer.Option(None, "--onnx", help="an ONNX model (instead of --from-run)"),
    variant: list[str] = typer.Option([], "--variant", help="extra variant NAME=PATH[:PRECISION[:FAMILY,...]]"),
    precision: str = typer.Option("fp32", "--precision", help="precision of --onnx"),
    families: str = typer.Option("cpu", "--families", help="target families of --onnx, comma separated"),
    task: str = typer.Option("classify", "--task", help="classify, detect or segment"),
    labels: str | None = typer.Option(None, "--labels", help="class names in output order, comma separated"),
    image_size: int | None = typer.Option(None, "--image-size", help="square input size (default: from model)"),
    mean: str | None = typer.Option(None, "--mean", help="per-channel mean, e.g. 0.5,0.5,0.5"),
    std: str | None = typer.Option(None, "--std", help="per-channel std, e.g. 0.5,0.5,0.5"),
    target: str | None = typer.Option(None, "--target", help="hardware target name (default: the run's)"),
    parent: str | None = typer.Option(None, "--parent", help="parent model reference for the lineage"),
    dataset: Path | None = typer.Option(None, "--dataset", help="image folder: its digest goes in the lineage"),
    key: Path | None = typer.Option(None, "--key", help="sign right away with this private key"),
    card: Path | None = typer.Option(None, "--card", help="the model's card (default: MODEL.card.yaml beside --onnx, "
                                     "the card a compress run recorded, or an edgewise export's own)"),
    color_order: str | None = typer.Option(None, "--color-order", help="card field: RGB, BGR or GRAY"),
    input_size: str | None = typer.Option(None, "--input-size", help="card field: HxW the model runs at"),
    resize_mode: str | None = typer.Option(None, "--resize-mode", help="card field: stretch, letterbox, center-crop"),
    pad_value: int | None = typer.Option(None, "--pad-value", help="card field: letterbox padding 0-255"),
    scale: float | None = typer.Option(None, "--scale", help="card field: pixel multiplier, e.g. 0.003921568627"),
    decode: str | None = typer.Option(None, "--decode", help="card field: logits, probabilities or sigmoid"),
) -> None:
    """Build a bundle from a compress run step, or from ONNX model(s) plus their card (or its fields)."""
    from edgewise.cli.train import parse_size
    from edgewise.core.bundle import sign_bundle
    from edgewise.core.model_card import load_card
    from edgewise.core.signing import load_private_key
    from edgewise.studio.bundling import (
        BundleOptions,
        VariantSource,
        bundle_from_onnx,
        bundle_from_steps,
        dataset_digest,
    )

    if card is not None and any(v is not None for v in (color_order, input_size, resize_mode, pad_value, scale,
                                                         decode, image_size, mean, std)):
        raise ConfigError("--card and card fields (--color-order, --input-size, ...) were both given",
                          "edit the card, or leave --card out and give every field")
    if task not in ("classify", "detect", "segment"):
        raise ConfigError(f"unknown task {task!r}", "use classify, detect or segment")
    options = BundleOptions(
        name=name, version=version, task=task,  # type: ignore[arg-type]
        labels=[label.strip() for label in labels.split(",")] if labels else None, image_size=image_size,
        mean=_floats(mean), std=_floats(std), target=target, parent=parent,
        dataset_digest=dataset_digest(dataset) if dataset else None,
        card=load_card(card) if card else None,
        card_fields={"color_order": color_order, "resize_mode": resize_mode, "pad_value": pad_value, "scale": scale,
                     "resize": list(parse_size(input_size)) if input_size else None, "decode": decode},
    )
    private_key = load_private_key(key) if key else None  # fail before any work on a bad key path
    extra = [VariantSource(n, p, prec, fams) for n, p, prec, fams in map(_parse_variant, variant)]
    if from_run and onnx:
        raise ConfigError("give --from-run or --onnx, not both", "use --variant to add more model files")
    if from_run:
        if extra:
            raise ConfigError("--variant goes with --onnx", "repeat --from-run to add steps as variants")
        manifest = bundle_from_steps(out_dir, from_run, options)
    elif onnx is not None:
        first = VariantSource(f"{families.split(',')[0]}-{precision}", onnx, precision, families.split(","))
        manifest = bundle_from_onnx(out_dir, [first, *extra], options)
    else:
        raise ConfigError("nothing to bundle", "pass --from-run RUN/steps/NN-name or --onnx MODEL.onnx")
    typer.echo(f"created {out_dir}: {manifest.ref} with {len(manifest.variants)} variant(s), digest {manifest.digest}")
    if private_key is not None:
        sign_bundle(out_dir, private_key)
        typer.echo(f"signed with key {private_key.public.key_id}")


@bundle_app.command("sign")
def sign(
    bundle_dir: Path = typer.Argument(..., help="bundle directory"),
    key: Path = typer.Option(Path("publisher.key"), "--key", help="publisher private key (from `keys new`)"),
) -> None:
    """Sign a bundle's manifest (writes bundle.sig)."""
    from edgewise.core.bundle import check_unsigned_bundle, sign_bundle
    from edgewise.core.signing import load_private_key

    private_key = load_private_key(key)
    manifest = check_unsigned_bundle(bundle_dir)  # never sign files that no longer match the manifest
    sign_bundle(bundle_dir, private_key)
    typer.echo(f"signed {manifest.ref} ({manifest.digest}) with key {private_key.public.key_id}")


@bundle_app.command("verify")
def verify(
    bundle_dir: Path = typer.Argument(..., help="bundle directory"),
    trust: list[str] = typer.Option(..., "--trust", help="trusted publisher public key: a .pub file or base64"),
) -> None:
    """Check the signature against trusted keys and every file's sha256; exit 1 with the reason if not."""
    from edgewise.core.bundle import verify_bundle

    manifest = verify_bundle(bundle_dir, trusted_keys(trust))
    typer.echo(f"OK {manifest.ref} {manifest.digest}: signature trusted, {len(manifest.files)} file(s) intact")


@bundle_app.command("inspect")
def inspect(
    bundle: str = typer.Argument(..., help="bundle directory, or a reference NAME:VERSION in --store"),
    store: str | None = typer.Option(None, "--store", envvar="EDGEWISE_STORE", help=STORE_HELP),
    as_json: bool = typer.Option(False, "--json", help="print the manifest as JSON"),
) -> None:
    """Show a bundle's manifest as a human-readable summary."""
    from edgewise.core.bundle import read_manifest, read_signature

    path = Path(bundle)
    signer: str | None = None
    if path.is_dir():
        manifest = read_manifest(path)
        if (path / "bundle.sig").is_file():
            signer = read_signature(path)[0]
    else:
        from edgewise.registry import open_store

        manifest = open_store(store or default_store_url()).manifest(bundle)
    if as_json:
        typer.echo(manifest.model_dump_json(indent=2))
        return
    typer.echo(describe_manifest(manifest, signer if path.is_dir() else None, signed_known=path.is_dir()))


@bundle_app.command("push")
def push(
    bundle_dir: Path = typer.Argument(..., help="bundle directory"),
    store: str | None = typer.Option(None, "--store", envvar="EDGEWISE_STORE", help=STORE_HELP),
    alias: list[str] = typer.Option([], "--alias", help="also point this alias (e.g. staging) at the version"),
    trust: list[str] = typer.Option([], "--trust", help="refuse to push unless signed by one of these keys"),
) -> None:
    """Publish a bundle; the same content again is a no-op, other content under its version fails."""
    from edgewise.core.bundle import verify_bundle
    from edgewise.registry import open_store

    if trust:
        verify_bundle(bundle_dir, trusted_keys(trust))
    target = open_store(store or default_store_url())
    published = target.publish(bundle_dir)
    for name in alias:
        target.set_alias(published.name, name, published.version)
    extra = f" (aliases: {', '.join(alias)})" if alias else ""
    typer.echo(f"pushed {published.ref} {published.digest} to {target.url}{extra}")


@bundle_app.command("pull")
def pull(
    ref: str = typer.Argument(..., help="NAME:VERSION, NAME:ALIAS or NAME@sha256:DIGEST"),
    dest: Path = typer.Argument(..., help="directory to create (atomically, hashes checked)"),
    store: str | None = typer.Option(None, "--store", envvar="EDGEWISE_STORE", help=STORE_HELP),
    trust: list[str] = typer.Option([], "--trust", help="also verify the signature against these keys"),
) -> None:
    """Fetch a published bundle into DEST."""
    from edgewise.registry import open_store

    keys = trusted_keys(trust) if trust else None  # a bad key path fails before any download
    source = open_store(store or default_store_url())
    published = source.resolve(ref)
    source.fetch(published.ref, dest, trusted_keys=keys)  # DEST appears only once every check passed
    verified = " (signature verified)" if trust else ""
    typer.echo(f"pulled {published.ref} {published.digest} into {dest}{verified}")


def describe_manifest(manifest: Manifest, signer: str | None, *, signed_known: bool) -> str:
    """A few aligned lines a person can read: what the model is, for what hardware, how good, from where."""
    size = manifest.input.resize
    lines = [
        f"bundle     {manifest.ref}",
        f"digest     {manifest.digest}",
        f"task       {manifest.task}, {len(manifest.labels)} labels: {', '.join(manifest.labels[:10])}"
        + (" ..." if len(manifest.labels) > 10 else ""),
        f"input      {size[0]}x{size[1]} {manifest.input.color_order} {manifest.input.layout} {manifest.input.dtype},"
        f" mean {manifest.input.mean} std {manifest.input.std}",
        f"output     {manifest.output.decode}",
        f"target     {manifest.target} ({manifest.precision})",
        "variants",
    ]
    for v in manifest.variants:
        lines.append(f"  {v.name:<20} {v.file:<24} {v.precision:<11} {','.join(v.target_families):<14}"
                     f" {v.size_bytes:>10,} bytes")
    metrics = manifest.metrics
    shown = {"accuracy": metrics.accuracy, "size_bytes": metrics.size_bytes, "host_latency_ms": metrics.host_latency_ms,
             "est_target_latency_ms": metrics.estimated_target_latency_ms}
    lines.append("metrics    " + (", ".join(f"{k} {v}" for k, v in shown.items() if v is not None) or "none recorded"))
    lineage = manifest.lineage
    lines.append(f"lineage    parent {lineage.parent or '-'}; recipe {' -> '.join(lineage.recipe) or '-'}")
    lines.append(f"           dataset {lineage.dataset_digest or '-'}; created {lineage.created_at or '-'}"
                 f" by {lineage.created_by or '-'}")
    lines.append(f"files      {len(manifest.files)}")
    if signed_known:
        lines.append(f"signature  {'key ' + signer if signer else 'NONE (unsigned: devices will refuse it)'}")
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    app.add_typer(bundle_app, name="bundle")
