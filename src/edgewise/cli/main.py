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

# The extra that brings each heavy dependency: a device installs `edgewise[agent]` only, so a studio
# or server command there must say what to install, not end in ModuleNotFoundError.
EXTRA_OF_MODULE = {
    **dict.fromkeys(("torch", "onnx", "onnxscript", "onnxslim", "optuna", "matplotlib", "sklearn", "torch_pruning",
                     "tensorly", "tqdm"), "studio"),
    **dict.fromkeys(("fastapi", "uvicorn", "uvloop", "httptools", "sqlalchemy", "alembic", "jinja2", "psycopg",
                     "paho", "prometheus_client", "starlette"), "server"),
    **dict.fromkeys(("onnxruntime", "httpx", "PIL", "cv2", "psutil"), "agent"),
    "oras": "registry",
}


def missing_extra(error: ModuleNotFoundError) -> tuple[str, str] | None:
    """(message, fix) when `error` is a dependency of one of our extras that is not installed."""
    top = (error.name or "").split(".")[0]
    extra = EXTRA_OF_MODULE.get(top)
    if extra is None:
        return None
    return (f"this command needs edgewise[{extra}]: the module {top!r} is not installed",
            f"pip install 'edgewise[{extra}]'")


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


INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; EdgewiseError becomes `error: ...` + `fix: ...` and exit code 1."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        returned = app(args=args, prog_name="edgewise", standalone_mode=False)
        if returned == INTERRUPTED:  # typer turns a KeyboardInterrupt into this return value, not a raise
            typer.echo("interrupted", err=True)
            return INTERRUPTED
        if isinstance(returned, int) and returned:  # with standalone_mode=False, `typer.Exit(n)` arrives here
            return returned
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
    except ModuleNotFoundError as missing:
        explained = missing_extra(missing)
        if explained is None or debug:
            raise
        typer.secho(f"error: {explained[0]}", fg=typer.colors.RED, err=True)
        typer.echo(f"  fix: {explained[1]}", err=True)
        return 1
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
