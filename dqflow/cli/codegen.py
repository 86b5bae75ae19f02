"""``dqflow codegen``: write typed models and the ``Jobs`` facade for the declaration."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dqflow.cli._app import command, declaration_path, options
from dqflow.cli._output import print_json


def module_path(module: str, base: Path) -> Path:
    """``myapp.typed_jobs`` → ``<base>/myapp/typed_jobs.py``."""
    if not all(part.isidentifier() for part in module.split(".")):
        raise typer.BadParameter(f"{module!r} is not a dotted module name", param_hint="--module")
    return base.joinpath(*module.split(".")).with_suffix(".py")


@command("codegen")
def codegen(
    out: Annotated[
        Path | None, typer.Option("--out", "-o", metavar="FILE", help="Write the module here.", show_default=False)
    ] = None,
    module: Annotated[
        str | None,
        typer.Option("--module", "-m", metavar="NAME", help="Or: a dotted module name, under the folder of jobs.yaml."),
    ] = None,
    check_only: Annotated[
        bool, typer.Option("--check", help="Write nothing; exit 1 when the module is out of date.")
    ] = False,
) -> int:
    """Write pydantic models for every payload and output, and a typed Jobs facade (docs/TYPING.md)."""
    from dqflow.codegen import generate_module, staleness
    from dqflow.declaration import load_declaration

    if (out is None) == (module is None):
        raise typer.BadParameter("give --out FILE or --module NAME (one of them)", param_hint="--out")
    config = declaration_path()
    declaration = load_declaration(config, import_handlers=False)
    target = out if out is not None else module_path(module or "", config.resolve().parent)
    if check_only:
        problem = staleness(declaration, target)
        if options().json:
            print_json({"ok": problem is None, "module": str(target), "problem": problem})
        elif problem is not None:
            typer.echo(f"error: {target}: {problem}", err=True)
        else:
            typer.echo(f"{target}: up to date")
        return 0 if problem is None else 1
    text = generate_module(declaration, config.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    if options().json:
        print_json({"ok": True, "module": str(target), "job_types": list(declaration.job_types)})
    else:
        typer.echo(f"wrote {target}: {len(declaration.job_types)} job types")
    return 0
