"""The `edgewise` entry point: gathers every command module and turns our errors into one line."""

from __future__ import annotations

import importlib
import pkgutil
import sys

import typer

import edgewise
import edgewise.cli as cli_package
from edgewise.core.errors import EdgewiseError

app = typer.Typer(
    name="edgewise",
    help="Computer vision at the edge: adapt, compress, bundle, deploy and run models on a fleet.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

_SKIP = {"main", "output"}


def _register_commands() -> None:
    """Each `edgewise.cli.<name>` module contributes its commands through `register(app)`."""
    for module_info in sorted(pkgutil.iter_modules(cli_package.__path__), key=lambda m: m.name):
        if module_info.name in _SKIP or module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"edgewise.cli.{module_info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(app)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(edgewise.__version__)
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="show full tracebacks for unexpected errors"),
    version: bool = typer.Option(
        False, "--version", help="print the version and exit", is_eager=True, callback=_print_version
    ),
) -> None:
    """Computer vision at the edge: adapt, compress, bundle, deploy and run models on a fleet."""


_register_commands()


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; EdgewiseError becomes `error: ...` + `fix: ...` and exit code 1."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        app(args=args, prog_name="edgewise", standalone_mode=False)
    except EdgewiseError as error:
        if debug:
            raise
        typer.secho(f"error: {error.message}", fg=typer.colors.RED, err=True)
        if error.fix:
            typer.echo(f"  fix: {error.fix}", err=True)
        return 1
    except typer.Exit as stop:
        return stop.exit_code
    except typer.Abort:
        typer.echo("aborted", err=True)
        return 130
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        return 130
    except Exception as click_error:
        # Usage errors (from click, or the click that typer vendors) carry their own message and exit code.
        show = getattr(click_error, "show", None)
        if callable(show) and isinstance(getattr(click_error, "exit_code", None), int):
            show()
            return int(click_error.exit_code)  # type: ignore[attr-defined]
        if debug:
            raise
        typer.secho(f"unexpected error: {click_error!r}", fg=typer.colors.RED, err=True)
        typer.echo("  fix: run again with --debug for the traceback and report it", err=True)
        return 2
    return 0


def run() -> None:
    sys.exit(main())
