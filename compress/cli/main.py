"""The ``compress`` typer app. Subcommands are registered from their own modules."""

from __future__ import annotations

import os
import sys
import traceback
from typing import Any

import typer
from typer import core as _typer_core
from typer.core import TyperGroup

# typer 0.29 vendors click; use the same module it raises from.
click = getattr(_typer_core, "_click", None) or __import__("click")

from compress import __version__
from compress.core.errors import CompressError, InternalError, exit_code_for


class _Group(TyperGroup):
    """Turns user errors into one ``error: ...`` line and bugs into one line with the ``--debug`` hint;
    the exit code comes from the exception's type (:func:`compress.core.errors.exit_code_for`)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            try:
                return super().invoke(ctx)
            finally:  # run-directory and table locks end with the command (also when run in-process)
                if "compress.core.locks" in sys.modules:
                    sys.modules["compress.core.locks"].release_all()
        except CompressError as err:
            _report(err, ctx)
            ctx.exit(exit_code_for(err))
        except KeyboardInterrupt as err:
            click.echo("error: interrupted", err=True)
            ctx.exit(exit_code_for(err))
        except (typer.Exit, typer.Abort, click.ClickException):
            raise
        except InternalError as err:  # a broken invariant of ours: a bug, whatever its message says
            _report(err, ctx, unexpected=True)
            ctx.exit(exit_code_for(err))
        except OSError as err:  # a storage fault a writer did not map itself is still not a bug
            from compress.core.storage import describe

            mapped = describe(err)
            _report(mapped or err, ctx, unexpected=mapped is None)
            ctx.exit(mapped.exit_code if mapped is not None else 1)
        except Exception as err:  # noqa: BLE001 - last-resort handler for unexpected bugs
            _report(err, ctx, unexpected=True)
            ctx.exit(exit_code_for(err))


def _debug_on(ctx: click.Context) -> bool:
    root = ctx.find_root()
    return bool((root.params or {}).get("debug")) or os.environ.get("COMPRESS_DEBUG") == "1"


def _report(err: BaseException, ctx: click.Context, *, unexpected: bool = False) -> None:
    if _debug_on(ctx):
        traceback.print_exception(err, file=sys.stderr)
    msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    if unexpected:
        msg = f"{type(err).__name__}: {msg} (this is a bug; rerun with --debug for the traceback)"
    click.echo(f"error: {msg}", err=True)
    for line in getattr(err, "details", ()):  # errors that list several problems (pipeline preflight)
        click.echo(f"  - {line}", err=True)


app = typer.Typer(
    cls=_Group,
    name="compress",
    help="Hardware-aware compression and export of vision models: search, prune, export, benchmark.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"compress {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show Python tracebacks for errors."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """compress: from a trained supernet and a target device to a checked, deployable engine."""


def _register() -> None:
    """Import every module of :mod:`compress.cli`; each adds its own command(s) to ``app``.

    Importing a command module must not import torch (``compress --help`` stays fast).
    """
    import importlib
    import pkgutil

    import compress.cli as pkg

    for mod in sorted(m.name for m in pkgutil.iter_modules(pkg.__path__)):
        if mod not in ("main", "common") and not mod.startswith("_"):
            importlib.import_module(f"compress.cli.{mod}")


_register()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
