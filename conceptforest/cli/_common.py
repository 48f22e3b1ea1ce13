"""What every CLI verb shares: the error handling, the shared flags, and small helpers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from conceptforest.errors import BadInputError, ConceptforestError
from conceptforest.features.backbone import TINY_RANDOM

BAD_INPUT_EXIT = 2


class ErrorHandlingGroup(TyperGroup):
    """A command group that turns ConceptforestError into a one-paragraph message and exit code 2."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except ConceptforestError as exc:
            typer.echo(f"Error: {exc}", err=True)
            raise typer.Exit(code=BAD_INPUT_EXIT) from exc


def new_app(help_text: str) -> typer.Typer:
    return typer.Typer(
        cls=ErrorHandlingGroup,
        help=help_text,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
    )


LLMOption = Annotated[
    str | None,
    typer.Option(
        "--llm",
        metavar="MODEL",
        help="LLM model name as the server knows it, or 'none' for the "
        "LLM-free template tree. Default: config, then $CONCEPTFOREST_LLM_MODEL.",
    ),
]
LLMBaseURLOption = Annotated[
    str | None,
    typer.Option(
        "--llm-base-url",
        metavar="URL",
        help="OpenAI-compatible server, e.g. http://localhost:11434/v1 "
        "(Ollama). Default: config, then $OPENAI_BASE_URL, then OpenAI. The key comes from $OPENAI_API_KEY.",
    ),
]
ConfigOption = Annotated[
    Path | None, typer.Option("--config", metavar="FILE", help="TOML file of settings; flags override it.")
]
CacheDirOption = Annotated[
    Path | None,
    typer.Option(
        "--cache-dir",
        metavar="DIR",
        help="Cache folder. Default: $CONCEPTFOREST_HOME/cache (~/.cache/conceptforest/cache).",
    ),
]
ClipOption = Annotated[
    str | None,
    typer.Option(
        "--clip",
        metavar="MODEL",
        help="open_clip model name (default ViT-B-32), hf-hub:org/repo, "
        f"local-dir:/path, or {TINY_RANDOM} (untrained; labelled as such in every output).",
    ),
]
PretrainedOption = Annotated[
    str | None,
    typer.Option(
        "--pretrained",
        metavar="TAG",
        help="Weights tag for --clip (default laion2b_s34b_b79k); downloaded on first use.",
    ),
]
CheckpointOption = Annotated[
    Path | None, typer.Option("--checkpoint", metavar="FILE", help="Local weights file for --clip (works offline).")
]
ProgressOption = Annotated[bool, typer.Option("--progress/--no-progress", help="Show progress bars on stderr.")]


def read_text_file(path: Path, what: str, hint: str) -> str:
    """A file's text, or a clear error naming it."""
    if not path.exists() or path.is_dir():
        raise BadInputError(f"The {what} {str(path)!r} does not exist or is not a file.", hint=hint)
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise BadInputError(f"The {what} {str(path)!r} is not UTF-8 text.", hint=hint) from exc


def echo(message: str = "") -> None:
    typer.echo(message)


def warn(message: str) -> None:
    typer.echo(f"Warning: {message}", err=True)
