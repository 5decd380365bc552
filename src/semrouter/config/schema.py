"""The router configuration as typed, validated data (pydantic v2).

One representation only: the YAML file is parsed into these models, and every other module reads
the models. Cross-references (decision → model, condition → signal, model → reasoning family) are
checked here so that a config that loads is a config that can serve.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import (
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

from semrouter.config.regex import UnsafePatternError, compile_linear
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
HAS_TOOLS_SIGNAL = "has_tools"
TOOL_LOOP_SIGNAL = "tool_loop"
REASK_SIGNAL = "reask"
"""Built-in signal: the request carries a non-empty `tools` list."""
DIRECT_DECISION = "direct"
"""The decision name of a request that named its model (no classification, no rules)."""
ReasoningEffort = Literal["low", "medium", "high"]
ThinkingBudget = Annotated[
    int | None,
    Field(
        ge=1,
        le=262_144,
        description="most reasoning tokens a request of this route may think (with "
        "use_reasoning); see docs/configuration.md, 'Thinking budgets'",
    ),
]


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


class BreakerConfig(_Strict):
    """Each endpoint's circuit breaker (see semrouter.proxy.breaker)."""

    enabled: bool = True
    failures: PositiveInt = Field(
        default=5, description="Consecutive failed attempts that take the endpoint out."
    )
    open_s: PositiveFloat = Field(
        default=30.0, description="How long it stays out before one probe request is let through."
    )


class ModelSlo(_Strict):
    """A model's latency objectives (`models[].slo`): the SLO controller (semrouter.slo) degrades
    routed requests while the rolling p95 (or error rate) of the model's live traffic breaks
    one, and the TTFT watchdog fails a streamed request over when its first byte is late."""

    ttft_p95_ms: PositiveFloat | None = Field(
        default=None, description="p95 time to the first body byte (a JSON answer: its headers)"
    )
    latency_p95_ms: PositiveFloat | None = Field(
        default=None, description="p95 time to the last body byte"
    )
    max_error_rate: Annotated[float, Field(gt=0.0, le=1.0)] | None = Field(
        default=None, description="share of failed requests (backend errors) over the window"
    )
    first_byte_timeout_ms: PositiveFloat | None = Field(
        default=None,
        description="the TTFT watchdog: a streamed request with no first body byte within this "
        "is tried on the next endpoint, then on `alternative` (nothing has reached the client)",
    )
    alternative: str | None = Field(
        default=None,
        description="the model degraded requests (`slo.degrade_order`: alternative) and the "
        "watchdog's failovers go to",
    )

    @model_validator(mode="after")
    def _an_objective(self) -> ModelSlo:
        if (
            self.ttft_p95_ms is None
            and self.latency_p95_ms is None
            and self.max_error_rate is None
            and self.first_byte_timeout_ms is None
        ):
            raise ValueError(
                "give ttft_p95_ms, latency_p95_ms, max_error_rate or first_byte_timeout_ms"
            )
        return self


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
    forward_client_key: bool = Field(
        default=False,
        description="Bring your own key: the client's Authorization and x-api-key headers go to "
        "the backend as sent. Otherwise the backend gets only api_key_env's key (or none).",
    )
    timeout_s: PositiveFloat = Field(
        default=120.0,
        description="Longest wait for the response headers (for a non-streamed answer they "
        "come after the whole generation).",
    )
    stream_idle_timeout_s: PositiveFloat = Field(
        default=60.0, description="Longest silence between two body chunks once headers came."
    )
    connect_timeout_s: PositiveFloat = 5.0
    retries: Annotated[int, Field(ge=0)] = Field(
        default=1, description="Further attempts, on the next endpoint, after a failed one."
    )
    breaker: BreakerConfig = BreakerConfig()
    slo: ModelSlo | None = None

    @property
    def upstream_id(self) -> str:
        return self.provider_model_id or self.name

    @model_validator(mode="after")
    def _one_backend_credential(self) -> ModelConfig:
        if self.forward_client_key and self.api_key_env:
            raise ValueError(
                "forward_client_key: give either api_key_env (the router's key for the backend) "
                "or forward_client_key (the client's own), not both"
            )
        return self


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
    budget_field: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$",
        description="a body field the backend reads a thinking-token budget from, dotted for "
        "nested objects (e.g. thinking_budget, thinking.budget_tokens): with it a decision's "
        "reasoning_budget_tokens is sent there; without it the router enforces the budget "
        "mid-stream (semrouter.reasoning.thinking_budget)",
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


# Whether the artifact exists is checked above the config layer (semrouter.pipeline.artifacts).
HeadArtifact = Annotated[
    str | None,
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
                    compile_linear(pattern, self.case_sensitive)
                except UnsafePatternError as exc:
                    raise ValueError(f"patterns[{i}]: {exc}") from None
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


class ToolSignalConfig(_Strict):
    """A signal on the request's tools: true when the catalog has min_count..max_count tools
    and, with min_score, its best tool scores at least that against the request (the score of
    `tools:` selection, see docs/configuration.md)."""

    name: str
    min_count: PositiveInt = 1
    max_count: PositiveInt | None = None
    min_score: float | None = Field(default=None, ge=-1.0, le=2.0)

    @model_validator(mode="after")
    def _a_condition(self) -> ToolSignalConfig:
        if self.max_count is not None and self.max_count < self.min_count:
            raise ValueError("max_count must be >= min_count")
        if self.min_count == 1 and self.max_count is None and self.min_score is None:
            raise ValueError(
                f"give min_count (> 1), max_count or min_score; without any it is the built-in "
                f"signal '{HAS_TOOLS_SIGNAL}'"
            )
        return self


class TurnsSignalConfig(_Strict):
    """`signals.turns`: true when the conversation's user turns number min_turns..max_turns."""

    name: str
    min_turns: Annotated[int, Field(ge=1)] = 1
    max_turns: PositiveInt | None = None

    @model_validator(mode="after")
    def _a_range(self) -> TurnsSignalConfig:
        if self.max_turns is not None and self.max_turns < self.min_turns:
            raise ValueError("max_turns must be >= min_turns")
        return self


PII_TYPES: tuple[str, ...] = (
    "EMAIL",
    "PHONE",
    "CREDIT_CARD",
    "US_SSN",
    "IBAN",
    "IP_ADDRESS",
    "PERSON",
    "LOCATION",
    "DATE_OF_BIRTH",
)
"""The entity types the PII signal knows (semrouter.signals.pii documents each one's rule)."""


class PiiConfig(_Strict):
    """The PII detector (semrouter.signals.pii): which types, NER on or off, and its limits."""

    types: list[str] = Field(
        default_factory=lambda: list(PII_TYPES), description="the entity types to detect"
    )
    ner: bool = Field(
        False,
        description="spaCy NER (en_core_web_sm, the pii-ner extra) for PERSON names without an "
        "introducing phrase; off: names only after one ('my name is', 'Dear', 'Name:', ...)",
    )
    threshold: Annotated[float, Field(ge=0.0, le=1.0)] = Field(
        0.5, description="entities scoring below this are dropped"
    )
    max_chars: Annotated[int, Field(ge=64, le=10_000_000)] = Field(
        20_000, description="characters scanned per text; the rest is not (bounded work)"
    )
    ner_chars: Annotated[int, Field(ge=64, le=1_000_000)] = Field(
        5_000, description="characters given to NER per text (its cost grows with length)"
    )

    @field_validator("types")
    @classmethod
    def _known_types(cls, types: list[str]) -> list[str]:
        unknown = sorted(set(types) - set(PII_TYPES))
        if unknown:
            raise ValueError(f"unknown PII types {unknown}; known: {list(PII_TYPES)}")
        if len(set(types)) != len(types):
            raise ValueError("PII types are listed twice")
        return types


NamedSignalConfig = (
    KeywordSignalConfig
    | SimilaritySignalConfig
    | ContextSignalConfig
    | ToolSignalConfig
    | TurnsSignalConfig
)


class SignalsConfig(_Strict):
    domain: DomainSignalConfig = DomainSignalConfig()
    reasoning: ReasoningSignalConfig = ReasoningSignalConfig()
    keywords: list[KeywordSignalConfig] = []
    similarity: list[SimilaritySignalConfig] = []
    context: list[ContextSignalConfig] = []
    tools: list[ToolSignalConfig] = []
    turns: list[TurnsSignalConfig] = []

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
        kinds[HAS_TOOLS_SIGNAL] = "tools"
        kinds[TOOL_LOOP_SIGNAL] = kinds[REASK_SIGNAL] = "conversation"
        for _, kind, entries in self._named():
            for entry in entries:
                kinds[entry.name] = kind
        return kinds

    def _named(self) -> tuple[tuple[str, str, Sequence[NamedSignalConfig]], ...]:
        """(field, kind, entries) of the signals that are given names."""
        return (
            ("keywords", "keyword", self.keywords),
            ("similarity", "similarity", self.similarity),
            ("context", "context", self.context),
            ("tools", "tools", self.tools),
            ("turns", "conversation", self.turns),
        )

    @model_validator(mode="after")
    def _unique_names(self) -> SignalsConfig:
        builtin = set(MMLU_PRO_DOMAINS) | {
            REASONING_SIGNAL,
            HAS_TOOLS_SIGNAL,
            TOOL_LOOP_SIGNAL,
            REASK_SIGNAL,
        }
        seen: set[str] = set()
        for kind, _, entries in self._named():
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
    cost_weight: Annotated[float, Field(ge=0.0)] = Field(
        0.0, description="the trade-off without a `budget` (with one: where its search starts)"
    )


class BudgetConfig(_Strict):
    """A cost budget (`budget`): the selectors' cost weight is chosen per request so that the
    mean cost stays at the target (semrouter.decide.budget). Give exactly one target."""

    mean_cost_per_request: Annotated[float, Field(gt=0.0)] | None = Field(
        None, description="cost-model units (tokens x active parameters, B) per routed request"
    )
    tokens_per_minute: Annotated[float, Field(gt=0.0)] | None = Field(
        None, description="prompt + expected output tokens per minute, over the window"
    )
    window_requests: Annotated[int, Field(ge=10, le=10_000)] = Field(
        500, description="recent requests the weights are planned on (and the rate measured)"
    )
    replan_every: Annotated[int, Field(ge=1, le=10_000)] = Field(
        50, description="requests between two plans"
    )
    per_tenant: bool = Field(False, description="one budget per tenant (router.auth)")
    max_tenants: Annotated[int, Field(ge=1, le=1_000_000)] = 10_000

    @model_validator(mode="after")
    def _one_target(self) -> BudgetConfig:
        if (self.mean_cost_per_request is None) == (self.tokens_per_minute is None):
            raise ValueError("give exactly one of mean_cost_per_request and tokens_per_minute")
        return self


DegradeStep = Literal["effort", "thinking_budget", "reasoning_off", "alternative"]
"""One step of the SLO controller's degradation of a routed request (`slo.degrade_order`)."""


class SloConfig(_Strict):
    """The SLO controller (`slo:`, semrouter.slo): rolling windows of each model's live TTFT,
    latency and errors against its `models[].slo`, and the degradation it applies."""

    enabled: bool = False
    window_s: Annotated[float, Field(ge=1.0, le=3600.0)] = Field(
        30.0, description="the rolling window the p95s and the error rate are taken over"
    )
    slots: Annotated[int, Field(ge=2, le=120)] = Field(
        10, description="the window is a ring of this many time slots (bounded memory)"
    )
    min_samples: Annotated[int, Field(ge=1, le=100_000)] = Field(
        20, description="requests a window needs before it is judged"
    )
    degrade_order: list[DegradeStep] = Field(
        default=["effort", "thinking_budget", "reasoning_off", "alternative"],
        min_length=1,
        description="the steps, first applied first; each level adds the next step "
        "(thinking_budget may repeat: each time the budget is scaled by budget_factor again)",
    )
    breach_ratio: Annotated[float, Field(gt=0.0, le=1.0)] = Field(
        0.9,
        description="a level is raised once some p95 is above this share of its SLO (a margin "
        "for the time the reaction takes)",
    )
    recover_ratio: Annotated[float, Field(gt=0.0, lt=1.0)] = Field(
        0.7,
        description="a level is left only once every p95 is below this share of its SLO (above "
        "the p95 the undegraded traffic has unloaded, or the level only returns when idle)",
    )
    hold_s: Annotated[float, Field(gt=0.0, le=3600.0)] | None = Field(
        None,
        description="least time between two level changes of a model (default, and least: "
        "half the window, so the level changes at most twice per window)",
    )
    max_backoff: Annotated[int, Field(ge=1, le=64)] = Field(
        8,
        description="a step back that breaks the SLO again doubles the hold before the next "
        "step back, up to this factor (no flapping around the load the SLO can carry); a "
        "breach's load memory (no step back at that load) lasts hold x max_backoff",
    )
    budget_factor: Annotated[float, Field(gt=0.0, lt=1.0)] = Field(
        0.25,
        description="thinking_budget step: reasoning_budget_tokens scaled by this (each time)",
    )

    @field_validator("degrade_order")
    @classmethod
    def _unique_steps(cls, order: list[str]) -> list[str]:
        once = [step for step in order if step != "thinking_budget"]
        if len(set(once)) != len(once):
            raise ValueError(f"a step other than thinking_budget is listed twice: {order}")
        return order

    @model_validator(mode="after")
    def _hold(self) -> SloConfig:
        if self.recover_ratio >= self.breach_ratio:
            raise ValueError(
                f"recover_ratio ({self.recover_ratio:g}) must be below breach_ratio "
                f"({self.breach_ratio:g}), or the level could flap between two judgements"
            )
        if self.hold_s is not None and self.hold_s < self.window_s / 2:
            raise ValueError(
                f"hold_s: {self.hold_s:g} is less than half of window_s ({self.window_s:g}); "
                "the level could change more than twice per window"
            )
        return self

    @property
    def hold(self) -> float:
        return self.hold_s if self.hold_s is not None else self.window_s / 2


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
    reasoning_budget_tokens: ThinkingBudget = None
    system_prompt: SystemPrompt | None = None
    max_tokens: PositiveInt | None = None
    protected: bool = Field(
        default=False,
        description="the SLO controller degrades it last, after every unprotected decision",
    )

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
    reasoning_budget_tokens: ThinkingBudget = None


class LimitsConfig(_Strict):
    """Every bound on per-request work, in one place (`router.limits`).

    A request over a count limit is refused (413, OpenAI error shape) before any work is done on
    it; a text over a size limit is read in part for classification (head and tail windows) and
    forwarded whole. Work per request is therefore proportional to these numbers, never to the
    input.
    """

    max_messages: PositiveInt = Field(2048, description="messages in one request (else 413)")
    max_content_parts: PositiveInt = Field(
        256, description="content parts in one message (else 413)"
    )
    max_tools: PositiveInt = Field(1024, description="entries of 'tools' (else 413)")
    max_json_depth: Annotated[int, Field(ge=4, le=200)] = Field(
        64, description="nesting depth of the request body (else 400)"
    )
    classify_chars: Annotated[int, Field(ge=256, le=1_000_000)] = Field(
        8192,
        description="characters of the routing text classification reads: the first and last "
        "half of this many, cut at whitespace when there is some nearby, else hard",
    )
    count_chars: Annotated[int, Field(ge=1024, le=10_000_000)] = Field(
        8192,
        description="characters of a multi-turn conversation tokenised exactly for "
        "context-length signals; beyond, the count is scaled to its length (a single prompt "
        "is counted by the encoder pass itself, scaled from its window)",
    )
    max_word_chars: Annotated[int, Field(ge=4, le=256)] = Field(
        40, description="longest word spelling correction looks at (longer words pass as is)"
    )
    classify_deadline_ms: Annotated[float, Field(gt=0, le=60_000)] = Field(
        250.0,
        description="classification time budget per request; past it the fallback route "
        "answers (header x-semrouter-fallback: deadline)",
    )
    encoder_queue: PositiveInt = Field(
        512, description="texts waiting for the encoder; beyond, 503 with Retry-After"
    )
    max_in_flight: PositiveInt = Field(
        1024, description="requests being served at once; beyond, 503 with Retry-After"
    )
    max_response_bytes: PositiveInt = Field(
        32 * 1024 * 1024, description="largest non-streamed backend response read (else 502)"
    )
    max_sse_event_bytes: PositiveInt = Field(
        1024 * 1024, description="largest single SSE event from a backend (else the stream ends)"
    )
    max_header_bytes: Annotated[int, Field(ge=1024, le=1024 * 1024)] = Field(
        64 * 1024, description="request headers, all together (else 431)"
    )
    header_read_timeout_s: Annotated[float, Field(gt=0, le=3600)] = Field(
        10.0,
        description="from a connection's opening (or a keep-alive request's first byte) to the "
        "end of its request headers; past it, 408 and the connection is closed (slowloris); a "
        "connection that sent nothing is closed without an answer",
    )
    body_read_timeout_s: Annotated[float, Field(gt=0, le=3600)] = Field(
        30.0,
        description="from the end of the headers to the last byte of the body; past it, 408 "
        "(a client that dribbles its body or declares a longer Content-Length than it sends)",
    )
    shutdown_grace_s: Annotated[float, Field(gt=0, le=3600)] = Field(
        15.0,
        description="on SIGTERM: how long in-flight requests may take to finish before exit",
    )


NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
"""Client key names and tenants: they become metric labels, log fields and cache partitions."""
ROUTE_DECISION_DEFAULT = "default"
"""The decision name of the `default` route (what a key's `decisions` may name besides its own)."""


class ClientKey(_Strict):
    """One client API key and what it may do (`router.auth.keys[]`)."""

    name: str = Field(
        pattern=NAME_PATTERN, description="Names the key in logs and metric labels; never secret."
    )
    key_env: str | None = Field(
        default=None,
        description="Environment variable holding the key; hashed at load, the plaintext is not "
        "kept. Without it the key's SHA-256 digest comes from router.auth.keys_file.",
    )
    tenant: str | None = Field(
        default=None,
        pattern=NAME_PATTERN,
        description="What caches and budgets partition by (default: the key's name).",
    )
    trusted: bool = Field(
        default=False,
        description="May name the tenant per request in header x-semrouter-tenant (a gateway "
        "serving several tenants); from other keys the header is ignored.",
    )
    models: list[str] | None = Field(
        default=None, description="Models it may reach, routed or direct (default: all)."
    )
    decisions: list[str] | None = Field(
        default=None, description="Decisions its routed requests may take (default: all)."
    )
    requests_per_minute: PositiveInt | None = None
    tokens_per_minute: PositiveInt | None = Field(
        default=None,
        description="Estimated prompt tokens plus max_tokens (or max_completion_tokens) per "
        "minute; see docs/configuration.md, 'Client authentication and quotas'.",
    )

    @property
    def tenant_name(self) -> str:
        return self.tenant or self.name


class AuthConfig(_Strict):
    """Client authentication (`router.auth`): off by default."""

    enabled: bool = False
    keys: list[ClientKey] = []
    keys_file: str | None = Field(
        default=None,
        description="File of '<key name> <sha256 hex digest>' lines (# comments) for the keys "
        "without key_env: only digests are stored, never keys.",
    )
    admin_key_env: str = Field(
        default="SEMROUTER_ADMIN_KEY",
        description="Environment variable holding the admin key (GET /metrics); when it is "
        "unset, admin endpoints answer loopback clients only.",
    )

    @model_validator(mode="after")
    def _keys(self) -> AuthConfig:
        errors: list[str] = []
        if self.enabled and not self.keys:
            errors.append("keys: auth is enabled but no key is configured")
        seen: set[str] = set()
        for i, key in enumerate(self.keys):
            if key.name in seen:
                errors.append(f"keys[{i}].name: duplicate key name '{key.name}'")
            seen.add(key.name)
            if key.key_env is None and self.keys_file is None:
                errors.append(
                    f"keys[{i}]: key '{key.name}' has no key_env and there is no keys_file"
                )
        if errors:
            raise ValueError("\n".join(errors))
        return self


class ConversationConfig(_Strict):
    """`router.conversation`: how earlier turns of a conversation count in classification."""

    context_turns: Annotated[int, Field(ge=0, le=16)] = Field(
        0,
        description="earlier user turns appended to the last one as context in the routing "
        "text (0: the last user turn alone)",
    )
    context_chars: Annotated[int, Field(ge=0, le=100_000)] = Field(
        256, description="the most characters of that context (the last turn keeps the rest)"
    )
    context_mode: Literal["text", "embedding"] = Field(
        "text",
        description="text: the context follows the last turn in one routing text; embedding: "
        "it is encoded in the same batch and the learned signals read last + context_weight x "
        "context",
    )
    context_weight: Annotated[float, Field(ge=0.0, le=1.0)] = Field(
        0.3, description="weight of the context's embedding (context_mode: embedding)"
    )
    reask_threshold: Annotated[float, Field(ge=-1.0, le=1.0)] = Field(
        0.8,
        description="least cosine of the last user turn to an earlier one of the session for "
        "the 'reask' signal",
    )
    reask_turns: Annotated[int, Field(ge=0, le=32)] = Field(
        4, description="earlier user-turn embeddings a session keeps for 'reask' (0: off)"
    )


class RouterSettings(_Strict):
    auto_model_names: list[str] = Field(default_factory=lambda: ["auto"], min_length=1)
    max_body_bytes: PositiveInt = 4 * 1024 * 1024
    limits: LimitsConfig = LimitsConfig()
    auth: AuthConfig = AuthConfig()
    fallback_decision: str | None = Field(
        default=None,
        description="the decision that answers when classification misses its deadline or the "
        "embedder fails (its model and reasoning; no rules are evaluated); default: 'default'",
    )
    on_embedding_error: Literal["fallback", "reject"] = Field(
        default="fallback",
        description="embedder down or slow: route by fallback_decision, or answer 503 with "
        "Retry-After",
    )
    conversation: ConversationConfig = ConversationConfig()
    embeddings_model: str | None = Field(
        default=None,
        description="the model (of `models`) whose endpoints answer POST /v1/embeddings, passed "
        "through unrouted; unset: /v1/embeddings answers 404",
    )


class ToolKeeping(_Strict):
    """What one decision keeps of a request's tools (`tools.decisions.<name>`): every field
    left out is the `tools:` section's."""

    enabled: bool | None = None
    top_k: PositiveInt | None = None
    min_score: float | None = Field(default=None, ge=-1.0, le=2.0)
    always_keep: list[str] | None = None
    allow_empty: bool | None = None


class ToolCacheConfig(_Strict):
    max_entries: PositiveInt = Field(
        10_000,
        description="distinct tool definitions whose words and embedding are kept (LRU); at "
        "least router.limits.max_tools, so one catalog always fits",
    )
    max_catalogs: PositiveInt = Field(
        32,
        description="catalogs (distinct tools lists) whose score matrix and BM25 index are kept "
        "(LRU); each holds tools x embedding width floats (1,000 tools: 1.5 MB)",
    )


class ToolsConfig(_Strict):
    """Tool pre-selection (`tools:`): a request's `tools` reduced to those it may call."""

    enabled: bool = True
    top_k: PositiveInt = Field(5, description="tools kept by score (besides those always kept)")
    min_score: float = Field(
        default=-1.0,
        ge=-1.0,
        le=2.0,
        description="a tool scoring below this is not kept by score (cosine + lexical bonus, "
        "at least -1: the default keeps top_k whatever they score)",
    )
    always_keep: list[str] = Field(default=[], description="tool names never removed")
    allow_empty: bool = Field(
        default=False,
        description="with nothing above min_score, forward no tools (and no tool_choice) "
        "instead of the best one; never when tool_choice is 'required' or names a tool",
    )
    lexical_weight: Annotated[float, Field(ge=0.0, le=1.0)] = Field(
        0.3,
        description="weight of the BM25 score (scaled to the catalog's best, 0..1) added to "
        "the cosine; alone when no query embedding exists (direct model, fallback)",
    )
    rerank: bool = Field(
        True,
        description="reorder the best rerank_candidates tools by the shipped re-ranker (a "
        "small tree ensemble fitted on BFCL's tuning split; needs the query embedding)",
    )
    rerank_candidates: Annotated[int, Field(ge=2, le=200)] = Field(
        20, description="tools the re-ranker reorders (the best by cosine + lexical term)"
    )
    context_messages: Annotated[int, Field(ge=0, le=64)] = Field(
        4, description="messages before the last user turn whose words the lexical score reads"
    )
    context_weight: Annotated[float, Field(ge=0.0, le=1.0)] = Field(
        0.5, description="weight of those context words against the last user turn's"
    )
    max_text_chars: Annotated[int, Field(ge=32, le=8192)] = Field(
        512, description="characters of each tool's text (name, description, parameters) read"
    )
    encode_wait_ms: Annotated[float, Field(ge=0, le=60_000)] = Field(
        100.0,
        description="how long a request waits for a new catalog's tools to be encoded; past "
        "it, that request is scored lexically and the encoding finishes in the background",
    )
    cache: ToolCacheConfig = ToolCacheConfig()
    decisions: dict[str, ToolKeeping] = Field(
        default={},
        description="per decision name ('default' and 'direct' included): overrides, e.g. "
        "{enabled: false}",
    )


class CacheDecision(_Strict):
    """Per decision (`cache.decisions.<name>`, 'default' and 'direct' included): overrides."""

    enabled: bool | None = None
    threshold: Annotated[float, Field(ge=0.0, le=1.0)] | None = None


class RedisCacheConfig(_Strict):
    """`cache.redis`: a Redis 8 server (vector sets) shared by every replica."""

    url: str = Field("redis://127.0.0.1:6379/0", description="redis:// or rediss:// URL")
    prefix: str = Field("semrouter:cache", min_length=1, description="prefix of every key")
    timeout_ms: Annotated[float, Field(gt=0, le=10_000)] = Field(
        50.0, description="one Redis call; past it the request goes on without the cache"
    )
    connect_timeout_ms: Annotated[float, Field(gt=0, le=10_000)] = 200.0
    retry_s: Annotated[float, Field(gt=0, le=3600)] = Field(
        5.0, description="after a failure, the cache is skipped this long before Redis is tried"
    )
    max_connections: PositiveInt = 64


class CacheConfig(_Strict):
    """The semantic response cache (`cache:`): a request like an earlier one of the same
    scope gets that one's answer, never another question's (docs/configuration.md)."""

    backend: Literal["off", "memory", "redis"] = "off"
    threshold: Annotated[float, Field(ge=0.0, le=1.0)] = Field(
        0.75,
        description="least similarity of the last user turns for a hit (cosine less the "
        "wording penalty of verification)",
    )
    verify: bool = Field(
        True, description="check the two texts (numbers, negation, entities, ...) beyond cosine"
    )
    candidates: Annotated[int, Field(ge=1, le=64)] = Field(
        4, description="nearest entries of the same scope that are verified, best first"
    )
    ttl_s: Annotated[float, Field(gt=0)] = Field(3600.0, description="an entry's lifetime")
    max_entries: PositiveInt = Field(10_000, description="entries kept (LRU past it)")
    max_text_chars: Annotated[int, Field(ge=16, le=100_000)] = Field(
        2000, description="a longer last user turn is neither looked up nor stored"
    )
    max_response_bytes: PositiveInt = Field(
        256 * 1024, description="a larger response (JSON, or a stream's events) is not stored"
    )
    max_pending_stores: PositiveInt = Field(
        256, description="stores waiting for the backend; past it a response is not stored"
    )
    decisions: dict[str, CacheDecision] = Field(
        default={}, description="per decision name: {enabled: false} or {threshold: 0.9}"
    )
    redis: RedisCacheConfig = RedisCacheConfig()


class RedisAffinityConfig(RedisCacheConfig):
    """`affinity.redis`: the Redis server replicas share sessions through (as cache.redis)."""

    prefix: str = Field("semrouter:affinity", min_length=1, description="prefix of every key")


class AffinityConfig(_Strict):
    """Session affinity (`affinity:`): a conversation stays on the model and reasoning mode
    it started with, unless a later turn escalates; a tool loop goes back to the model that
    called the tool (docs/configuration.md, "Conversations and session affinity")."""

    backend: Literal["off", "memory", "redis"] = "off"
    ttl_s: Annotated[float, Field(gt=0, le=30 * 86_400)] = Field(
        3600.0, description="a session's lifetime after its last request"
    )
    max_sessions: Annotated[int, Field(ge=1, le=10_000_000)] = Field(
        100_000, description="sessions kept in memory (LRU past it)"
    )
    identity_chars: Annotated[int, Field(ge=16, le=100_000)] = Field(
        2000,
        description="characters of the system prompt and first user turn hashed into the "
        "session id of a request without an x-semrouter-session header",
    )
    escalate_on: list[str] = Field(
        default=[],
        description="signals whose firing on a later turn lets it leave the session's route",
    )
    escalate_reasoning: Annotated[float, Field(ge=0.0, le=1.0)] | None = Field(
        0.8, description="reasoning-need probability at or above which a later turn escalates"
    )
    lock_tool_loops: bool = Field(
        True, description="a tool result goes back to the model that called the tool"
    )
    continuation_fields: list[str] = Field(
        default=["previous_response_id"],
        description="body fields holding a provider continuation id: such a request stays on "
        "its session's model",
    )
    redis: RedisAffinityConfig = RedisAffinityConfig()


class DashboardConfig(_Strict):
    """The admin dashboard at /dashboard and its JSON APIs (semrouter.dashboard,
    docs/dashboard.md): admin key or loopback only; the bounds of what it keeps."""

    enabled: bool = Field(True, description="serve /dashboard and the admin APIs (off: 404)")
    recent_decisions: Annotated[int, Field(ge=0, le=100_000)] = Field(
        200, description="routing decisions the pipeline keeps for the dashboard (ring buffer)"
    )
    record_content: bool = Field(
        False, description="keep the start of each request's last user turn with its decision"
    )
    content_chars: Annotated[int, Field(ge=1, le=10_000)] = Field(
        200, description="characters of content kept per decision (with record_content)"
    )
    history_points: Annotated[int, Field(ge=2, le=10_000)] = Field(
        300, description="metric snapshots kept for the live charts (one per stats poll, at most)"
    )
    sample_interval_s: Annotated[float, Field(ge=0.1, le=3600)] = Field(
        1.0, description="least time between two kept snapshots"
    )


_BUDGET_WITHOUT_REASONING = (
    "{}.reasoning_budget_tokens: reasoning is off for this route (use_reasoning: false), so "
    "there is no thinking to budget; remove it or set use_reasoning: true"
)


class ObserveConfig(_Strict):
    """Metrics, tracing and the request log (semrouter.observe; docs/observability.md)."""

    enabled: bool = Field(
        True,
        description="the GenAI and per-stage metrics, the request log, request ids and tracing "
        "(off: only the routing counters such as semrouter_requests_total)",
    )
    request_log: bool = Field(True, description="one JSON line per request, on stderr")
    log_content: bool = Field(
        False, description="put the last user message in the request log (else no content)"
    )
    max_logged_content_chars: Annotated[int, Field(ge=0, le=65_536)] = Field(
        1000, description="the most characters of content a log line carries (log_content)"
    )
    log_queue: Annotated[int, Field(ge=1, le=1_000_000)] = Field(
        10_000,
        description="log lines waiting for the writer thread; past it lines are dropped "
        "(counted in semrouter_request_log_dropped_total)",
    )
    tracing: Literal["auto", "on", "off"] = Field(
        "auto",
        description="OpenTelemetry spans: auto: on when OTEL_EXPORTER_OTLP_ENDPOINT, "
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_TRACES_EXPORTER says where to send them "
        "(OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none turn it off)",
    )
    max_usage_bytes: Annotated[int, Field(ge=256, le=1_048_576)] = Field(
        4096,
        description="the most bytes kept while a `usage` object arrives split across chunks",
    )
    extproc_responses: bool = Field(
        False,
        description="semrouter extproc: ask Envoy for response headers and bodies (TTFT, "
        "tokens, durations); costs a round trip per response chunk (envoy-config)",
    )


JAILBREAK_GUARD = "jailbreak"
PII_GUARD = "pii"
"""The guards' names: their signals (`pii:<TYPE>` too), header entries and metric labels."""
GuardAction = Literal["block", "redact", "route", "flag", "off"]
"""What a guard that fired does to the request (docs/configuration.md, "Safety guards")."""


class GuardPolicy(_Strict):
    """What one decision does when a guard fires (`guards.decisions.<name>.<guard>`): every
    field left out is the guard's own (`guards.<guard>`)."""

    action: GuardAction | None = None
    model: str | None = Field(default=None, description="action route: the model to send to")
    threshold: Annotated[float, Field(ge=0.0, le=1.0)] | None = Field(
        default=None, description="jailbreak only: the probability at or above which it acts"
    )
    act_on: list[str] | None = Field(
        default=None, description="pii only: the entity types the action applies to"
    )


class JailbreakGuardConfig(_Strict):
    """The jailbreak / prompt-injection guard (`guards.jailbreak`): signal `jailbreak`, from
    the shipped head (semrouter.signals.jailbreak) on the router's own encoder pass."""

    enabled: bool = False
    threshold: Annotated[float, Field(ge=0.0, le=1.0)] | None = Field(
        default=None,
        description="the probability at or above which the signal fires and the guard acts "
        "(default: the head's shipped threshold)",
    )
    head: HeadArtifact = None
    action: GuardAction = "flag"
    model: str | None = Field(default=None, description="action route: the model to send to")


class PiiGuardConfig(PiiConfig):
    """The PII guard (`guards.pii`): the detector's settings (semrouter.signals.pii) plus the
    policy. Signals `pii` (any entity) and `pii:<TYPE>` (per type of `types`)."""

    enabled: bool = False
    action: GuardAction = "flag"
    model: str | None = Field(default=None, description="action route: the model to send to")
    act_on: list[str] | None = Field(
        default=None,
        description="the entity types the action applies to (default: all of `types`); the "
        "others are only flagged",
    )


class GuardDecision(_Strict):
    """`guards.decisions.<name>`: one decision's policies (a guard left out keeps its own)."""

    jailbreak: GuardPolicy | None = None
    pii: GuardPolicy | None = None


class GuardsConfig(_Strict):
    """Safety guards (`guards:`, semrouter.guards): jailbreak and PII detection as signals,
    and what each does per decision: block, redact, route, flag (docs/configuration.md)."""

    jailbreak: JailbreakGuardConfig = JailbreakGuardConfig()
    pii: PiiGuardConfig = PiiGuardConfig()
    max_messages: Annotated[int, Field(ge=1, le=1024)] = Field(
        16,
        description="messages scanned per request, newest first: user turns and tool/function "
        "results (both guards) and assistant turns (PII only: they hold restored values); "
        "jailbreak reads each as classification does (router.limits.classify_chars), PII the "
        "first guards.pii.max_chars characters",
    )
    on_error: Literal["block", "allow"] = Field(
        "allow",
        description="a guard that could not give its verdict (its model failed, no encoder "
        "pass): block answers 503 guard_unavailable, allow lets the request through (header "
        "<guard>=error)",
    )
    max_placeholders: Annotated[int, Field(ge=1, le=100_000)] = Field(
        256, description="redact: distinct values replaced in one request; beyond, it is refused"
    )
    decisions: dict[str, GuardDecision] = Field(
        default={}, description="per decision name ('default' and 'direct' included): overrides"
    )

    @property
    def enabled(self) -> bool:
        return self.jailbreak.enabled or self.pii.enabled

    @property
    def redacts(self) -> bool:
        """Some decision's PII policy redacts (responses are then rewritten)."""
        return self.pii.enabled and any(
            guard == PII_GUARD and action == "redact" for guard, _, action, _ in self.policies()
        )

    def signal_names(self) -> dict[str, str]:
        """The signals the enabled guards give, mapped to their kind ('guard')."""
        names: dict[str, str] = {}
        if self.jailbreak.enabled:
            names[JAILBREAK_GUARD] = "guard"
        if self.pii.enabled:
            names[PII_GUARD] = "guard"
            names.update({f"{PII_GUARD}:{t}": "guard" for t in self.pii.types})
        return names

    def policies(self) -> list[tuple[str, str, GuardAction, str | None]]:
        """(guard, path under guards:, action, model) of the guards' own policies and every
        decision's."""
        found: list[tuple[str, str, GuardAction, str | None]] = [
            (JAILBREAK_GUARD, "jailbreak", self.jailbreak.action, self.jailbreak.model),
            (PII_GUARD, "pii", self.pii.action, self.pii.model),
        ]
        for name, decision in self.decisions.items():
            for guard, own in ((JAILBREAK_GUARD, self.jailbreak), (PII_GUARD, self.pii)):
                policy: GuardPolicy | None = getattr(decision, guard)
                if policy is not None:
                    found.append(
                        (
                            guard,
                            f"decisions.{name}.{guard}",
                            policy.action or own.action,
                            policy.model or own.model,
                        )
                    )
        return found

    @model_validator(mode="after")
    def _policies(self) -> GuardsConfig:
        errors: list[str] = []
        for guard, where, action, model in self.policies():
            if guard == JAILBREAK_GUARD and action == "redact":
                errors.append(
                    f"{where}.action: redact is for PII; the jailbreak guard blocks, routes or "
                    "flags"
                )
            if action == "route" and model is None:
                errors.append(f"{where}.model: action route needs the model to send to")
        overrides = [(f"decisions.{name}", d) for name, d in self.decisions.items()]
        for where, decision in overrides:
            if decision.jailbreak is not None and decision.jailbreak.act_on is not None:
                errors.append(f"{where}.jailbreak.act_on: only the pii guard has entity types")
            if decision.pii is not None and decision.pii.threshold is not None:
                errors.append(f"{where}.pii.threshold: the pii guard has no probability threshold")
        types = [("pii.act_on", self.pii.act_on)] + [
            (f"{where}.pii.act_on", d.pii.act_on) for where, d in overrides if d.pii is not None
        ]
        for where, act_on in types:
            unknown = sorted(set(act_on or ()) - set(self.pii.types))
            if unknown:
                errors.append(f"{where}: {unknown} are not detected (guards.pii.types)")
        if errors:
            raise ValueError("\n".join(errors))
        return self

    def cross_errors(
        self, model_names: set[str], decisions: set[str], signals: set[str]
    ) -> list[str]:
        """Route targets and decision names that do not exist; signal names already taken."""
        errors = [
            f"guards.{where}.model: unknown model '{model}'"
            for _, where, action, model in self.policies()
            if action == "route" and model is not None and model not in model_names
        ]
        errors.extend(
            f"guards.decisions.{name}: unknown decision '{name}' "
            f"(known: {', '.join(sorted(decisions))})"
            for name in self.decisions
            if name not in decisions
        )
        errors.extend(
            f"guards: signal '{name}' is already a configured signal's name"
            for name in self.signal_names()
            if name in signals
        )
        return errors


class RouterConfig(_Strict):
    router: RouterSettings = RouterSettings()
    embedding: EmbeddingSettings = EmbeddingSettings()
    reasoning_families: dict[str, ReasoningFamily] = {}
    models: list[ModelConfig] = Field(min_length=1)
    signals: SignalsConfig = SignalsConfig()
    decisions: list[Decision] = []
    default: DefaultRoute
    tools: ToolsConfig = ToolsConfig()
    cache: CacheConfig = CacheConfig()
    budget: BudgetConfig | None = None
    affinity: AffinityConfig = AffinityConfig()
    observe: ObserveConfig = ObserveConfig()
    slo: SloConfig = SloConfig()
    dashboard: DashboardConfig = DashboardConfig()
    guards: GuardsConfig = GuardsConfig()

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
        alternatives: list[tuple[int, str, str]] = []
        for i, model in enumerate(self.models):
            if model.name in model_names:
                errors.append(f"models[{i}].name: duplicate model name '{model.name}'")
            model_names.add(model.name)
            if model.name in self.router.auto_model_names:
                errors.append(f"models[{i}].name: '{model.name}' is an auto-routing name")
            if model.slo is not None and model.slo.alternative is not None:
                alternatives.append((i, model.name, model.slo.alternative))
            if model.reasoning_family and model.reasoning_family not in families:
                errors.append(
                    f"models[{i}].reasoning_family: unknown reasoning family "
                    f"'{model.reasoning_family}' (known: {', '.join(sorted(families))})"
                )
        for i, name, alternative in alternatives:
            if alternative == name or alternative not in model_names:
                what = "the model itself" if alternative == name else "an unknown model"
                errors.append(f"models[{i}].slo.alternative: '{alternative}' is {what}")
        signal_names = {**self.signals.names(), **self.guards.signal_names()}
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
            elif decision.reasoning_budget_tokens is not None:
                errors.append(_BUDGET_WITHOUT_REASONING.format(where))
        errors.extend(self._auth_errors(model_names, decision_names))
        errors.extend(self._tools_errors(decision_names))
        errors.extend(
            self.guards.cross_errors(
                model_names,
                decision_names | {ROUTE_DECISION_DEFAULT, DIRECT_DECISION},
                set(self.signals.names()),
            )
        )
        known = decision_names | {ROUTE_DECISION_DEFAULT, DIRECT_DECISION}
        errors.extend(
            f"cache.decisions.{name}: unknown decision '{name}' (known: {', '.join(sorted(known))})"
            for name in self.cache.decisions
            if name not in known
        )
        errors.extend(
            f"affinity.escalate_on[{i}]: unknown signal '{name}'"
            for i, name in enumerate(self.affinity.escalate_on)
            if name not in signal_names
        )
        fallback = self.router.fallback_decision
        if fallback is not None and fallback not in decision_names:
            errors.append(f"router.fallback_decision: unknown decision '{fallback}'")
        embeddings = self.router.embeddings_model
        if embeddings is not None and embeddings not in model_names:
            errors.append(f"router.embeddings_model: unknown model '{embeddings}'")
        if self.default.model not in model_names:
            errors.append(f"default.model: unknown model '{self.default.model}'")
        elif self.default.use_reasoning:
            errors.extend(self._reasoning_errors("default", [self.default.model]))
            if self.default.reasoning_effort is not None:
                errors.extend(self._effort_errors("default", [self.default.model]))
        elif self.default.reasoning_budget_tokens is not None:
            errors.append(_BUDGET_WITHOUT_REASONING.format("default"))
        if errors:
            raise ValueError("\n".join(errors))
        return self

    def _auth_errors(self, model_names: set[str], decision_names: set[str]) -> list[str]:
        """Keys name known models and decisions; BYOK cannot work beside router keys."""
        auth = self.router.auth
        errors: list[str] = []
        decisions = decision_names | {ROUTE_DECISION_DEFAULT}
        for i, key in enumerate(auth.keys):
            for field, allowed, known in (
                ("models", key.models, model_names),
                ("decisions", key.decisions, decisions),
            ):
                errors.extend(
                    f"router.auth.keys[{i}].{field}[{j}]: unknown {field[:-1]} '{name}'"
                    for j, name in enumerate(allowed or ())
                    if name not in known
                )
        if auth.enabled:
            errors.extend(
                f"models[{i}].forward_client_key: cannot be used with router.auth enabled (the "
                "client's Authorization header carries its router key, never sent to a backend)"
                for i, model in enumerate(self.models)
                if model.forward_client_key
            )
        return errors

    def _tools_errors(self, decision_names: set[str]) -> list[str]:
        errors: list[str] = []
        known = decision_names | {ROUTE_DECISION_DEFAULT, DIRECT_DECISION}
        errors.extend(
            f"tools.decisions.{name}: unknown decision '{name}' (known: {', '.join(sorted(known))})"
            for name in self.tools.decisions
            if name not in known
        )
        deadline = self.router.limits.classify_deadline_ms
        if self.tools.encode_wait_ms >= deadline:
            errors.append(
                f"tools.encode_wait_ms: {self.tools.encode_wait_ms:g} is not below "
                f"router.limits.classify_deadline_ms ({deadline:g}); the wait is part of "
                "classification, so a new catalog would always miss the deadline"
            )
        max_tools = self.router.limits.max_tools
        if self.tools.cache.max_entries < max_tools:
            errors.append(
                f"tools.cache.max_entries: {self.tools.cache.max_entries} is less than "
                f"router.limits.max_tools ({max_tools}); one catalog must fit in the cache"
            )
        return errors

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
            if model is None:
                continue
            family = self.family(model)
            if family is not None and family.type != "reasoning_effort":
                errors.append(
                    f"{where}.reasoning_effort: model '{name}' (family "
                    f"'{model.reasoning_family}') has no effort control; remove reasoning_effort"
                )
        return errors
