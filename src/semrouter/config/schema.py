"""The router configuration as typed, validated data (pydantic v2).

One representation only: the YAML file is parsed into these models, and every other module reads
the models. Cross-references (decision → model, condition → signal, model → reasoning family) are
checked here so that a config that loads is a config that can serve.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PositiveFloat,
    PositiveInt,
    Tag,
    field_validator,
    model_validator,
)

from semrouter.embed.settings import EmbeddingSettings

MMLU_PRO_DOMAINS: tuple[str, ...] = (
    "biology",
    "business",
    "chemistry",
    "computer science",
    "economics",
    "engineering",
    "health",
    "history",
    "law",
    "math",
    "other",
    "philosophy",
    "physics",
    "psychology",
)
REASONING_SIGNAL = "reasoning"
ReasoningEffort = Literal["low", "medium", "high"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- backends -------------------------------------------------------------------------------


class Endpoint(_Strict):
    url: str = Field(description="OpenAI base URL, e.g. http://127.0.0.1:8000/v1")
    weight: PositiveFloat = 1.0

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not re.match(r"^https?://[^/\s]+", url):
            raise ValueError(f"must be an http(s) URL, got {url!r}")
        return url.rstrip("/")


class ModelConfig(_Strict):
    name: str = Field(description="The name clients and decisions use.")
    provider_model_id: str | None = Field(
        default=None, description="The id the backend knows the model by (default: name)."
    )
    reasoning_family: str | None = None
    endpoints: list[Endpoint] = Field(min_length=1)
    api_key_env: str | None = Field(
        default=None, description="Environment variable holding the backend's API key."
    )
    timeout_s: PositiveFloat = 120.0
    connect_timeout_s: PositiveFloat = 5.0
    retries: Annotated[int, Field(ge=0)] = 1

    @property
    def upstream_id(self) -> str:
        return self.provider_model_id or self.name


# --- reasoning ------------------------------------------------------------------------------


class ReasoningFamily(_Strict):
    """How one model family is told to think.

    type:
      chat_template_kwargs: sets chat_template_kwargs[parameter] to true/false (Qwen3, DeepSeek).
      reasoning_effort:     sets reasoning_effort to low/medium/high; off removes it (GPT-OSS).
      field:                sets a top-level boolean field named by parameter (generic).
    """

    type: Literal["chat_template_kwargs", "reasoning_effort", "field"]
    parameter: str | None = None
    off_effort: ReasoningEffort | None = Field(
        default=None,
        description="reasoning_effort families only: effort sent when reasoning is off "
        "(default: the field is removed).",
    )

    @model_validator(mode="after")
    def _parameter_needed(self) -> ReasoningFamily:
        if self.type != "reasoning_effort" and not self.parameter:
            raise ValueError(f"type '{self.type}' needs 'parameter'")
        return self


DEFAULT_REASONING_FAMILIES: dict[str, ReasoningFamily] = {
    "qwen3": ReasoningFamily(type="chat_template_kwargs", parameter="enable_thinking"),
    "deepseek": ReasoningFamily(type="chat_template_kwargs", parameter="thinking"),
    "gpt-oss": ReasoningFamily(type="reasoning_effort"),
    "openai": ReasoningFamily(type="reasoning_effort"),
}


# --- signals --------------------------------------------------------------------------------


def _existing_head(head: str | None) -> str | None:
    if head is not None:
        from semrouter.signals.heads import head_file

        try:
            head_file(head)
        except FileNotFoundError as exc:
            raise ValueError(str(exc)) from None
    return head


HeadArtifact = Annotated[
    str | None,
    AfterValidator(_existing_head),
    Field(description="A head artifact: a .npz path, or a shipped head's name (default)."),
]


class DomainSignalConfig(_Strict):
    """The learned domain head: one boolean signal per category name."""

    enabled: bool = True
    threshold: Annotated[float, Field(ge=0.0, le=1.0)] = 0.3
    head: HeadArtifact = None


class ReasoningSignalConfig(_Strict):
    """The learned reasoning-need head: signal 'reasoning' is true when p >= threshold."""

    enabled: bool = True
    threshold: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5
    head: HeadArtifact = None


class KeywordSignalConfig(_Strict):
    name: str
    patterns: list[str] = Field(min_length=1)
    regex: bool = False
    case_sensitive: bool = False
    match: Literal["any", "all"] = "any"

    @model_validator(mode="after")
    def _patterns_compile(self) -> KeywordSignalConfig:
        if self.regex:
            for i, pattern in enumerate(self.patterns):
                try:
                    re.compile(pattern)
                except re.error as exc:
                    raise ValueError(f"patterns[{i}]: invalid regex {pattern!r}: {exc}") from exc
        return self


class SimilaritySignalConfig(_Strict):
    name: str
    examples: list[str] = Field(min_length=1)
    threshold: Annotated[float, Field(ge=-1.0, le=1.0)] = 0.6


class ContextSignalConfig(_Strict):
    name: str
    min_tokens: Annotated[int, Field(ge=0)] = 0
    max_tokens: PositiveInt | None = None

    @model_validator(mode="after")
    def _range(self) -> ContextSignalConfig:
        if self.max_tokens is not None and self.max_tokens < self.min_tokens:
            raise ValueError("max_tokens must be >= min_tokens")
        return self


class SignalsConfig(_Strict):
    domain: DomainSignalConfig = DomainSignalConfig()
    reasoning: ReasoningSignalConfig = ReasoningSignalConfig()
    keywords: list[KeywordSignalConfig] = []
    similarity: list[SimilaritySignalConfig] = []
    context: list[ContextSignalConfig] = []

    @property
    def needs_embedding(self) -> bool:
        return self.domain.enabled or self.reasoning.enabled or bool(self.similarity)

    def names(self) -> dict[str, str]:
        """Every signal name a condition may use, mapped to its kind."""
        kinds: dict[str, str] = {}
        if self.domain.enabled:
            kinds.update(dict.fromkeys(MMLU_PRO_DOMAINS, "domain"))
        if self.reasoning.enabled:
            kinds[REASONING_SIGNAL] = "reasoning"
        for kind, entries in (
            ("keyword", self.keywords),
            ("similarity", self.similarity),
            ("context", self.context),
        ):
            for entry in entries:
                kinds[entry.name] = kind
        return kinds

    @model_validator(mode="after")
    def _unique_names(self) -> SignalsConfig:
        builtin = set(MMLU_PRO_DOMAINS) | {REASONING_SIGNAL}
        seen: set[str] = set()
        for kind, entries in (
            ("keywords", self.keywords),
            ("similarity", self.similarity),
            ("context", self.context),
        ):
            for i, entry in enumerate(entries):
                if entry.name in builtin:
                    raise ValueError(
                        f"{kind}[{i}].name: '{entry.name}' is reserved for a built-in signal"
                    )
                if entry.name in seen:
                    raise ValueError(f"{kind}[{i}].name: duplicate signal name '{entry.name}'")
                seen.add(entry.name)
        return self


# --- decisions ------------------------------------------------------------------------------


class Condition(_Strict):
    """A leaf of a rule tree: true when the named signal fired."""

    name: str


def _rule_kind(value: object) -> str:
    if isinstance(value, dict):
        return "node" if "conditions" in value or "operator" in value else "leaf"
    return "node" if isinstance(value, RuleNode) else "leaf"


class RuleNode(_Strict):
    operator: Literal["AND", "OR", "NOT"] = "AND"
    conditions: list[
        Annotated[
            Annotated[RuleNode, Tag("node")] | Annotated[Condition, Tag("leaf")],
            Discriminator(_rule_kind),
        ]
    ] = Field(min_length=1)

    @field_validator("operator", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _not_is_unary(self) -> RuleNode:
        if self.operator == "NOT" and len(self.conditions) != 1:
            raise ValueError("NOT takes exactly one condition")
        return self

    def signal_names(self) -> list[tuple[str, str]]:
        """(path inside this node, signal name) for every leaf."""
        found: list[tuple[str, str]] = []
        for i, cond in enumerate(self.conditions):
            if isinstance(cond, Condition):
                found.append((f"conditions[{i}].name", cond.name))
            else:
                found.extend((f"conditions[{i}].{p}", n) for p, n in cond.signal_names())
        return found


class SystemPrompt(_Strict):
    text: str = Field(min_length=1)
    mode: Literal["insert", "replace"] = "insert"


class SelectorConfig(_Strict):
    """Learned model selection among a decision's models."""

    artifact: str = Field(description="Selector artifact name (shipped) or path.")
    cost_weight: Annotated[float, Field(ge=0.0)] = 0.0


class Decision(_Strict):
    name: str
    priority: int = 0
    rules: RuleNode | None = Field(
        default=None, description="No rules: the decision always matches (a catch-all)."
    )
    models: list[str] = Field(min_length=1)
    selector: SelectorConfig | None = None
    use_reasoning: bool = False
    reasoning_effort: ReasoningEffort | None = None
    system_prompt: SystemPrompt | None = None
    max_tokens: PositiveInt | None = None

    @model_validator(mode="after")
    def _selector_covers_models(self) -> Decision:
        if self.selector is None:
            return self
        from semrouter.decide.selector import selector_models

        try:
            covered = selector_models(self.selector.artifact)
        except (FileNotFoundError, ValueError) as exc:
            raise ValueError(f"selector.artifact: {exc}") from None
        unknown = [m for m in self.models if m not in covered]
        if unknown:
            raise ValueError(
                f"selector.artifact: '{self.selector.artifact}' cannot choose {unknown}; "
                f"it covers {list(covered)}"
            )
        return self

    @model_validator(mode="before")
    @classmethod
    def _single_model(cls, data: object) -> object:
        if isinstance(data, dict) and "model" in data:
            if "models" in data:
                raise ValueError("give either 'model' or 'models', not both")
            data = {**data, "models": [data["model"]]}
            del data["model"]
        return data


class DefaultRoute(_Strict):
    model: str
    use_reasoning: bool = False
    reasoning_effort: ReasoningEffort | None = None


class RouterSettings(_Strict):
    auto_model_names: list[str] = Field(default_factory=lambda: ["auto"], min_length=1)
    max_body_bytes: PositiveInt = 4 * 1024 * 1024


class RouterConfig(_Strict):
    router: RouterSettings = RouterSettings()
    embedding: EmbeddingSettings = EmbeddingSettings()
    reasoning_families: dict[str, ReasoningFamily] = {}
    models: list[ModelConfig] = Field(min_length=1)
    signals: SignalsConfig = SignalsConfig()
    decisions: list[Decision] = []
    default: DefaultRoute

    def model(self, name: str) -> ModelConfig | None:
        return next((m for m in self.models if m.name == name), None)

    def family(self, model: ModelConfig) -> ReasoningFamily | None:
        if model.reasoning_family is None:
            return None
        return {**DEFAULT_REASONING_FAMILIES, **self.reasoning_families}.get(model.reasoning_family)

    @model_validator(mode="after")
    def _cross_references(self) -> RouterConfig:
        errors: list[str] = []
        model_names: set[str] = set()
        families = {**DEFAULT_REASONING_FAMILIES, **self.reasoning_families}
        for i, model in enumerate(self.models):
            if model.name in model_names:
                errors.append(f"models[{i}].name: duplicate model name '{model.name}'")
            model_names.add(model.name)
            if model.name in self.router.auto_model_names:
                errors.append(f"models[{i}].name: '{model.name}' is an auto-routing name")
            if model.reasoning_family and model.reasoning_family not in families:
                errors.append(
                    f"models[{i}].reasoning_family: unknown reasoning family "
                    f"'{model.reasoning_family}' (known: {', '.join(sorted(families))})"
                )
        signal_names = self.signals.names()
        decision_names: set[str] = set()
        for i, decision in enumerate(self.decisions):
            where = f"decisions[{i}]"
            if decision.name in decision_names:
                errors.append(f"{where}.name: duplicate decision name '{decision.name}'")
            decision_names.add(decision.name)
            for j, name in enumerate(decision.models):
                if name not in model_names:
                    errors.append(f"{where}.models[{j}]: unknown model '{name}'")
            if decision.rules is not None:
                for path, name in decision.rules.signal_names():
                    if name not in signal_names:
                        errors.append(f"{where}.rules.{path}: unknown signal '{name}'")
            if len(decision.models) > 1 and decision.selector is None:
                errors.append(f"{where}.selector: several models need a selector")
            if decision.use_reasoning:
                errors.extend(self._reasoning_errors(where, decision.models))
                if decision.reasoning_effort is not None:
                    errors.extend(self._effort_errors(where, decision.models))
        if self.default.model not in model_names:
            errors.append(f"default.model: unknown model '{self.default.model}'")
        elif self.default.use_reasoning:
            errors.extend(self._reasoning_errors("default", [self.default.model]))
            if self.default.reasoning_effort is not None:
                errors.extend(self._effort_errors("default", [self.default.model]))
        if errors:
            raise ValueError("\n".join(errors))
        return self

    def _reasoning_errors(self, where: str, names: list[str]) -> list[str]:
        """Reasoning that could not be applied is an error, never a silent no-op."""
        return [
            f"{where}.use_reasoning: model '{name}' has no reasoning_family, "
            "so reasoning cannot be turned on for it"
            for name in names
            if (model := self.model(name)) is not None and model.reasoning_family is None
        ]

    def _effort_errors(self, where: str, names: list[str]) -> list[str]:
        """An effort the model's family cannot express would be silently dropped: reject it."""
        errors = []
        for name in names:
            model = self.model(name)
            family = self.family(model) if model is not None else None
            if family is not None and family.type != "reasoning_effort":
                errors.append(
                    f"{where}.reasoning_effort: model '{name}' (family "
                    f"'{model.reasoning_family}') has no effort control; remove reasoning_effort"
                )
        return errors
