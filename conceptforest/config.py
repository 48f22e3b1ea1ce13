"""RunConfig: every setting of a run, from a TOML file with command-line overrides on top.

Precedence, highest first: command-line flags, the ``--config`` TOML file, environment variables
(``CONCEPTFOREST_LLM_MODEL``, ``OPENAI_BASE_URL``), then the defaults below. The API key is never part of
the config: it is read from ``OPENAI_API_KEY`` when the client is made.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from conceptforest.concepts.generate import GenerationLimits
from conceptforest.concepts.llm import LLMClient, sanitize_base_url
from conceptforest.concepts.llm_transport import attempts_problem, timeout_problem
from conceptforest.concepts.tree import DEFAULT_SENTENCE_TEMPLATE, check_sentence_template
from conceptforest.errors import BadInputError

if TYPE_CHECKING:
    from conceptforest.features.backbone import Backbone
    from conceptforest.features.spec import BackboneSpec

MODEL_ENV = "CONCEPTFOREST_LLM_MODEL"
NO_LLM = "none"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class LLMConfig(_Section):
    """How to reach the LLM. ``model = "none"`` builds the template tree without one."""

    model: str | None = None
    base_url: str | None = None
    timeout: float = 60.0  # seconds, finite, in (0, 3600]: the check the clients make too
    max_attempts: int = 4  # 1 to 20
    max_repairs: int = Field(2, ge=0, le=10)
    temperature: float = Field(0.0, ge=0, le=2)
    max_tokens: int = Field(1024, ge=16)
    seed: int | None = 0
    structured: Literal["auto", "json_schema", "json_object", "prompt"] = "auto"
    price_per_1k_prompt: float | None = None
    price_per_1k_completion: float | None = None

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: float) -> float:
        if problem := timeout_problem(value):
            raise ValueError(problem)
        return value

    @field_validator("max_attempts")
    @classmethod
    def _attempts(cls, value: int) -> int:
        if problem := attempts_problem(value):
            raise ValueError(problem)
        return value


class ConceptsConfig(_Section):
    """What the concept tree is about, and how big it may be."""

    domain: str | None = None
    labels: list[str] | None = None
    max_parts: int = Field(6, ge=1, le=12)
    max_subparts: int = Field(3, ge=0, le=6)
    max_attributes: int = Field(4, ge=1, le=8)
    max_values: int = Field(2, ge=1, le=5)
    sentence_template: str = DEFAULT_SENTENCE_TEMPLATE
    llm_sentences: bool = False

    @field_validator("sentence_template")
    @classmethod
    def _template(cls, value: str) -> str:
        check_sentence_template(value)
        return value

    @property
    def limits(self) -> GenerationLimits:
        return GenerationLimits(self.max_parts, self.max_subparts, self.max_attributes, self.max_values)


class ClipConfig(_Section):
    """The CLIP backbone (used from stage 2 on)."""

    model: str = "ViT-B-32"
    pretrained: str | None = "laion2b_s34b_b79k"
    checkpoint: Path | None = None


class RunConfig(_Section):
    """All settings of a run.

    Examples
    --------
    >>> cfg = RunConfig.model_validate({"llm": {"model": "none"}, "concepts": {"domain": "dog"}})
    >>> cfg.llm.model, cfg.concepts.max_parts
    ('none', 6)
    """

    llm: LLMConfig = Field(default_factory=LLMConfig)
    concepts: ConceptsConfig = Field(default_factory=ConceptsConfig)
    clip: ClipConfig = Field(default_factory=ClipConfig)
    cache_dir: str | Path | None = None  # a str keeps a URI (s3://bucket/prefix) whole
    seed: int = 0

    @field_validator("cache_dir", mode="before")
    @classmethod
    def _cache_dir(cls, value: Any) -> Any:
        if value is not None and not isinstance(value, str | Path):
            raise ValueError(f"must be a folder path or a URI, written as a string, not {value!r}")
        return value

    def resolved_llm_model(self) -> str:
        """The model name from flags/config, then ``$CONCEPTFOREST_LLM_MODEL``; an error when there is none."""
        model = self.llm.model or os.environ.get(MODEL_ENV)
        if not model:
            raise BadInputError(
                "No LLM model was given.",
                hint=f"pass --llm MODEL (with --llm-base-url URL for a local server), set {MODEL_ENV}, "
                "set [llm] model in the config file, or pass --llm none for the LLM-free template tree.",
            )
        return model

    def llm_client(self) -> LLMClient | None:
        """The configured client, or ``None`` for ``--llm none``."""
        model = self.resolved_llm_model()
        if model.strip().lower() == NO_LLM:
            return None
        cfg = self.llm
        return LLMClient(
            model,
            base_url=cfg.base_url,
            timeout=cfg.timeout,
            max_attempts=cfg.max_attempts,
            max_repairs=cfg.max_repairs,
            temperature=cfg.temperature,
            max_tokens=cfg.max_tokens,
            seed=cfg.seed,
            structured=cfg.structured,
            cache_dir=self.cache_dir,
            price_per_1k_prompt=cfg.price_per_1k_prompt,
            price_per_1k_completion=cfg.price_per_1k_completion,
        )

    def backbone_spec(self, *, precision: str = "fp32", runtime: str = "torch") -> BackboneSpec:
        """The configured CLIP backbone as a spec (``[clip]`` model, pretrained tag or checkpoint, ``cache_dir``)."""
        from conceptforest.features.spec import BackboneSpec

        return BackboneSpec.parse(
            self.clip.model,
            self.clip.pretrained,
            checkpoint=self.clip.checkpoint,
            precision=precision,
            cache_dir=self.cache_dir,
            runtime=runtime,
        )

    def backbone(self, *, device: str | None = None, precision: str = "fp32", runtime: str = "torch") -> Backbone:
        """The configured CLIP backbone, loaded through :meth:`backbone_spec`."""
        return self.backbone_spec(precision=precision, runtime=runtime).load(device=device)

    def public_dict(self) -> dict[str, Any]:
        """The resolved config as recorded in run folders (base URL and cache URI without credentials)."""
        data = self.model_dump(mode="json")
        data["llm"]["base_url"] = sanitize_base_url(self.llm.base_url)
        if data.get("cache_dir"):
            from conceptforest.cache import redact_uri

            data["cache_dir"] = redact_uri(data["cache_dir"])  # s3://KEY:SECRET@bucket: never written
        return data


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    *sections, leaf = dotted.split(".")
    node = data
    for section in sections:
        node = node.setdefault(section, {})
    node[leaf] = value


def _setting(loc: tuple[int | str, ...]) -> str:
    """The dotted setting an error is about (``llm.timeout``), without pydantic's inner steps (union members such as
    ``lax-or-strict[...]``, validator names) that follow a setting that is not a section."""
    names: list[str] = []
    section: type[BaseModel] | None = RunConfig
    for part in loc:
        if isinstance(part, int):
            names.append(str(part))
        elif section is None:
            break
        else:
            names.append(part)
            field = section.model_fields.get(part)
            annotation = field.annotation if field is not None else None
            is_section = isinstance(annotation, type) and issubclass(annotation, BaseModel)
            section = annotation if is_section else None  # type: ignore[assignment]
    return ".".join(names) or "the settings"


def _message(text: str) -> str:
    return text.removeprefix("Value error, ")


def load_config(path: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> RunConfig:
    """Read a TOML config (optional) and apply ``overrides`` (dotted keys such as ``"llm.model"``; ``None``
    values are ignored so unset flags never hide the file)."""
    data: dict[str, Any] = {}
    source = "the command-line options"
    if path is not None:
        path = Path(path)
        source = f"config file {str(path)!r}"
        if not path.is_file():
            raise BadInputError(f"Config file {str(path)!r} does not exist.", hint="check the --config path.")
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError as exc:
            raise BadInputError(
                f"Config file {str(path)!r} is not UTF-8 text (byte {exc.start} cannot be read).",
                hint="save the file as UTF-8.",
            ) from None
        except tomllib.TOMLDecodeError as exc:
            raise BadInputError(
                f"Config file {str(path)!r} is not valid TOML: {exc}.", hint="fix the TOML syntax."
            ) from exc
    for dotted, value in (overrides or {}).items():
        if value is not None:
            _set_dotted(data, dotted, value)
    if not (data.get("llm") or {}).get("base_url") and os.environ.get("OPENAI_BASE_URL"):
        _set_dotted(data, "llm.base_url", os.environ["OPENAI_BASE_URL"])
    given = {dotted for dotted, value in (overrides or {}).items() if value is not None}
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = _setting(error["loc"])
            origin = "the command-line options" if name in given else source
            problems.append(f"{name} (from {origin}): {_message(error['msg'])}")
        raise BadInputError(
            f"Invalid settings: {'; '.join(dict.fromkeys(problems))}.",
            hint="see 'conceptforest --help' and docs/ for the known settings.",
        ) from exc
