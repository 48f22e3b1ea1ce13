"""What every CLI verb shares: the error handling, the shared flags, and small helpers.

This module and the verb modules import only light modules at the top; each command imports the stages it needs
inside its body, so ``conceptforest --help`` never loads torch, open_clip or openai.
"""

from __future__ import annotations

import errno
import os
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup

from conceptforest.defaults import DEFAULT_MODEL, DEFAULT_PRETRAINED, TINY_RANDOM, WORLD_CLIP
from conceptforest.errors import BadInputError, ConceptforestError

if TYPE_CHECKING:
    from conceptforest.concepts.llm import LLMClient
    from conceptforest.config import RunConfig
    from conceptforest.llm.vision_types import VisionLLM
    from conceptforest.models.methods.wdys_weights import WdysClassWeight

BAD_INPUT_EXIT = 2
INTERNAL_ERROR_EXIT = 1
INTERRUPTED_EXIT = 130
DEBUG_ENV = "CONCEPTFOREST_DEBUG"
PIPELINE_ORDER = ("concepts", "features", "train", "explain", "predict", "compare", "zeroshot", "run", "demo")


def _printable(text: str) -> str:
    from conceptforest.text import strip_control

    return strip_control(text)


def _os_error_message(exc: OSError) -> str:
    where = f" ({exc.filename})" if exc.filename else ""
    if exc.errno == errno.ENOSPC:
        return f"Error: the disk is full{where}. Fix: free space or write to another folder; finished work is kept."
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"Error: permission denied{where}. Fix: choose a folder you can write to, or fix its permissions."
    return f"Error: {exc.strerror or exc}{where}. Fix: check the path and try again."


class ErrorHandlingGroup(TyperGroup):
    """A command group that turns every error into one paragraph on stderr and an exit code, never a traceback.

    ``ConceptforestError`` (bad input, a failing LLM) and operating-system errors exit 2; an interrupt exits 130;
    anything else is a bug: a one-line message, exit 1, and the traceback only with ``CONCEPTFOREST_DEBUG=1``.
    """

    def list_commands(self, ctx: Any) -> list[str]:
        """Verbs in pipeline order (the stages, then the verbs that use them), not typer's commands-then-groups."""
        names = list(super().list_commands(ctx))
        return sorted(names, key=lambda name: PIPELINE_ORDER.index(name) if name in PIPELINE_ORDER else len(names))

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort):
            raise
        except ConceptforestError as exc:
            _fail(f"Error: {exc}", BAD_INPUT_EXIT, exc)
        except MemoryError as exc:
            _fail(
                "Error: out of memory. Fix: lower --batch-size, or process fewer images at a time; "
                "finished work is cached.",
                BAD_INPUT_EXIT,
                exc,
            )
        except OSError as exc:
            _fail(_os_error_message(exc), BAD_INPUT_EXIT, exc)
        except KeyboardInterrupt as exc:
            _fail(
                "Interrupted. Finished work is cached: run the same command again to continue.", INTERRUPTED_EXIT, exc
            )
        except Exception as exc:
            if _is_usage_error(exc):
                raise
            _fail(
                f"Error: unexpected {type(exc).__name__}: {exc}. This is a bug in conceptforest; please report it "
                f"(set {DEBUG_ENV}=1 to see the traceback).",
                INTERNAL_ERROR_EXIT,
                exc,
            )


def _is_usage_error(exc: Exception) -> bool:
    """Click's own exceptions (usage errors, bad parameters) keep click's message and exit code 2."""
    return type(exc).__module__.split(".")[0] in ("click", "typer") and hasattr(exc, "exit_code")


def _fail(message: str, code: int, exc: BaseException) -> None:
    from conceptforest.redact import redact_secrets, redact_uri_text

    secrets = [os.environ.get("OPENAI_API_KEY")]
    if os.environ.get(DEBUG_ENV):  # the chained errors quote server bodies (the key) and URIs (their credentials)
        trace = "".join(traceback.format_exception(exc))
        sys.stderr.write(redact_uri_text(redact_secrets(trace, secrets)))
    typer.echo(_printable(redact_uri_text(redact_secrets(message, secrets))), err=True)
    raise typer.Exit(code=code) from exc


class PlainHelpCommand(TyperCommand):
    """A command whose help shows each argument's metavar and help, without typer's type label (``<path>``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            if isinstance(param, TyperArgument):
                param.display_type_rich = _no_type  # type: ignore[method-assign]


def _no_type(ctx: Any) -> None:
    return None


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
DescriptorLLMOption = Annotated[
    str | None,
    typer.Option(
        "--llm",
        metavar="MODEL",
        help="LLM model name as the server knows it (this step needs one). Default: config, then "
        "$CONCEPTFOREST_LLM_MODEL.",
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
TimeoutOption = Annotated[
    float | None,
    typer.Option(
        metavar="SECONDS", help="Deadline for each whole LLM request (default 60; raise it for slow local models)."
    ),
]
MaxAttemptsOption = Annotated[int | None, typer.Option(metavar="N", help="HTTP attempts per LLM call (default 4).")]
MaxRepairsOption = Annotated[
    int | None,
    typer.Option(metavar="N", help="Times an invalid LLM answer is sent back with its error to be fixed (default 2)."),
]
MaxTokensOption = Annotated[int | None, typer.Option(metavar="N", help="Most tokens per LLM answer (default 1024).")]
MaxPartsOption = Annotated[int | None, typer.Option(metavar="N", help="Most top-level parts (default 6).")]
MaxSubpartsOption = Annotated[
    int | None, typer.Option(metavar="N", help="Most sub-parts per part (default 3; 0 for none).")
]
MaxAttributesOption = Annotated[
    int | None, typer.Option(metavar="N", help="Most attributes per leaf part (default 4).")
]
MaxValuesOption = Annotated[
    int | None, typer.Option(metavar="N", help="Most values per label and attribute (default 2).")
]
SentenceTemplateOption = Annotated[
    str | None,
    typer.Option(
        metavar="TEXT",
        help="Sentence for each concept; fields {part} {part_path} {attribute} {value} "
        "{domain}. Default: 'the {attribute} of the {part} is {value}'.",
    ),
]
LLMSentencesOption = Annotated[
    bool | None,
    typer.Option("--llm-sentences/--template-sentences", help="Let the LLM phrase each concept's sentence (step 4)."),
]
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="Go ahead with a large LLM generation without asking.")]
ConfigOption = Annotated[
    Path | None, typer.Option("--config", metavar="FILE", help="TOML file of settings; flags override it.")
]
CacheDirOption = Annotated[
    str | None,  # not a Path: that would turn s3://bucket into s3:/bucket
    typer.Option(
        "--cache-dir",
        metavar="DIR|URI",
        help="Cache folder. Default: $CONCEPTFOREST_HOME/cache (~/.cache/conceptforest/cache). Embeddings may live "
        "at an object-store URI (s3://bucket/prefix, gs://...); LLM answers stay in the local cache.",
    ),
]
ClipOption = Annotated[
    str | None,
    typer.Option(
        "--clip",
        metavar="MODEL",
        help=f"open_clip model name (default {DEFAULT_MODEL}), hf-hub:org/repo, "
        f"local-dir:/path, {WORLD_CLIP} (the packaged toy-world CLIP, trained on the synthetic creature world "
        f"only), or {TINY_RANDOM} (untrained); both are labelled as such in every output.",
    ),
]
PretrainedOption = Annotated[
    str | None,
    typer.Option(
        "--pretrained",
        metavar="TAG",
        help=f"Weights tag for --clip (default {DEFAULT_PRETRAINED}); downloaded on first use.",
    ),
]
CheckpointOption = Annotated[
    Path | None, typer.Option("--checkpoint", metavar="FILE", help="Local weights file for --clip (works offline).")
]
DeviceOption = Annotated[
    str | None, typer.Option(metavar="DEVICE", help="cuda, mps or cpu (default: the best available).")
]
TreeOption = Annotated[
    Path | None,
    typer.Option(
        "--tree",
        metavar="FILE",
        help="The tree.json the features were made from (default: RUN/tree.json when it exists).",
    ),
]
TopKOption = Annotated[int, typer.Option(min=1, metavar="N", help="Concepts shown per list (at least 1).")]
SeedOption = Annotated[int, typer.Option(metavar="N", help="Seed of the split, the forest and the explanations.")]
ProgressOption = Annotated[bool, typer.Option("--progress/--no-progress", help="Show progress bars on stderr.")]


# Command parameter -> RunConfig setting, for the verbs that build a concept tree (concepts generate, run).
TREE_SETTINGS = {
    "llm": "llm.model",
    "llm_base_url": "llm.base_url",
    "timeout": "llm.timeout",
    "max_attempts": "llm.max_attempts",
    "max_repairs": "llm.max_repairs",
    "max_tokens": "llm.max_tokens",
    "domain": "concepts.domain",
    "max_parts": "concepts.max_parts",
    "max_subparts": "concepts.max_subparts",
    "max_attributes": "concepts.max_attributes",
    "max_values": "concepts.max_values",
    "sentence_template": "concepts.sentence_template",
    "llm_sentences": "concepts.llm_sentences",
    "cache_dir": "cache_dir",
}
BACKBONE_SETTINGS = {
    "clip": "clip.model",
    "pretrained": "clip.pretrained",
    "checkpoint": "clip.checkpoint",
    "cache_dir": "cache_dir",
}


def overrides(params: dict[str, Any], settings: dict[str, str]) -> dict[str, Any]:
    """Config overrides from a command's parameters (pass ``locals()``), keyed by dotted setting."""
    return {dotted: params[name] for name, dotted in settings.items() if name in params}


MllmOption = Annotated[
    str | None,
    typer.Option(
        "--mllm",
        metavar="MODEL",
        help="Vision LLM for the mllm and wdys methods (e.g. gpt-4o-mini, llava through Ollama). The key comes "
        "from $OPENAI_API_KEY.",
    ),
]
MllmBaseURLOption = Annotated[
    str | None,
    typer.Option("--mllm-base-url", metavar="URL", help="OpenAI-compatible server of the vision LLM."),
]
ConcurrencyOption = Annotated[int, typer.Option(min=1, metavar="N", help="Vision-LLM requests in flight at once.")]
MaxSideOption = Annotated[
    int, typer.Option(min=64, metavar="PX", help="Images sent to the vision LLM are downscaled to this longest side.")
]
WDYS_CLASS_WEIGHTS = ("descriptions", "class-name", "photo", "sum")  # models.methods.wdys.WdysClassWeight


def _wdys_class_weight(value: str | None) -> str | None:
    """Refuse an unknown WDYS class weight before anything is loaded."""
    if value is not None and value not in WDYS_CLASS_WEIGHTS:
        raise typer.BadParameter(f"{value!r} is not a WDYS class weight; use {', '.join(WDYS_CLASS_WEIGHTS)}.")
    return value


WdysClassWeightOption = Annotated[
    str | None,
    typer.Option(
        "--wdys-class-weight",
        metavar="|".join(WDYS_CLASS_WEIGHTS),
        callback=_wdys_class_weight,
        help="WDYS's class weight, one of the authors' configurations: descriptions (the mean description "
        "embedding, their README's run), class-name, photo ('A photo of {label}', which their code sums with the "
        "class name); or sum (all three: ours). Default: descriptions with a cupl/dclip --descriptors set, else "
        "photo.",
        show_default=False,
    ),
]


def wdys_weight_setting(value: str | None) -> WdysClassWeight | None:
    """The typed setting of a ``--wdys-class-weight`` value (None: the method's default)."""
    from conceptforest.models.methods.wdys_weights import WdysClassWeight

    return None if value is None else WdysClassWeight(value)


def required_llm(cfg: RunConfig, why: str, alternative: str = "") -> LLMClient:
    """The configured LLM client for a step that cannot run without one; a clear error (naming ``why`` and, when
    given, an ``alternative`` that needs no LLM) when none was given or it is 'none'."""
    from conceptforest.config import MODEL_ENV, NO_LLM

    model = cfg.llm.model or os.environ.get(MODEL_ENV)
    client = cfg.llm_client() if model and model.strip().lower() != NO_LLM else None
    if client is None:
        raise BadInputError(
            f"{why}, and no LLM was given.",
            hint=f"pass --llm MODEL (with --llm-base-url URL for a local server), set ${MODEL_ENV} or [llm] model in "
            f"the config file{'; ' + alternative if alternative else ''}.",
        )
    return client


def vision_client(params: dict[str, Any], cache_dir: str | Path | None) -> VisionLLM | None:
    """The vision LLM named by a command's ``--mllm`` options (pass ``locals()``), or None without ``--mllm``.

    ``--timeout``/``--max-attempts`` are used where the command has them, the client's defaults elsewhere; values
    out of range are refused by the client (exit 2 naming the option).
    """
    if not params.get("mllm"):
        return None
    from conceptforest.llm.vision import OpenAIVisionLLM

    return OpenAIVisionLLM(
        params["mllm"],
        base_url=params.get("mllm_base_url"),
        timeout=60.0 if params.get("timeout") is None else params["timeout"],
        max_attempts=4 if params.get("max_attempts") is None else params["max_attempts"],
        concurrency=params["concurrency"],
        max_side=params["max_side"],
        cache_dir=cache_dir,
    )


def read_text_file(path: Path, what: str, hint: str) -> str:
    """A file's text, or a clear error naming it."""
    if not path.exists() or path.is_dir():
        raise BadInputError(f"The {what} {str(path)!r} does not exist or is not a file.", hint=hint)
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise BadInputError(f"The {what} {str(path)!r} is not UTF-8 text.", hint=hint) from exc


def default_tree(tree: Path | None, run_dir: Path) -> Path | None:
    """``--tree`` when given, else ``RUN/tree.json`` when it exists, else ``None``."""
    if tree is not None:
        return tree
    candidate = run_dir / "tree.json"
    return candidate if candidate.is_file() else None


def default_descriptors(descriptors: list[Path] | None, run_dir: Path) -> list[Path]:
    """``--descriptors`` when given, else the run folder's ``descriptors-*.json`` (what ``run`` and ``demo`` save)."""
    return list(descriptors) if descriptors else sorted(run_dir.glob("descriptors-*.json"))


def echo(message: str = "") -> None:
    typer.echo(_printable_lines(message))


def warn(message: str) -> None:
    typer.echo(f"Warning: {_printable_lines(message)}", err=True)


def _printable_lines(message: str) -> str:
    return "\n".join(_printable(line) for line in message.split("\n"))
