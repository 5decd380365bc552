"""What each guard does for one decision: `guards.<guard>` with `guards.decisions.<name>.<guard>`
over it (`Policies.of(decision)`), resolved once at start."""

from __future__ import annotations

from dataclasses import dataclass

from semrouter.config.schema import (
    GuardAction,
    GuardPolicy,
    GuardsConfig,
    ModelConfig,
    RouterConfig,
)


@dataclass(frozen=True, slots=True)
class Policy:
    """One guard's policy for a decision. threshold: jailbreak's (probability at or above which
    it acts); act_on: pii's types the action applies to (None: every type)."""

    action: GuardAction
    model: ModelConfig | None = None
    threshold: float | None = None
    act_on: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class Policies:
    jailbreak: Policy
    pii: Policy


class PolicyTable:
    def __init__(self, config: RouterConfig, jailbreak_threshold: float) -> None:
        """jailbreak_threshold: the jailbreak signal's (guards.jailbreak.threshold, else the
        shipped head's)."""
        guards: GuardsConfig = config.guards
        models = {m.name: m for m in config.models}

        def model(name: str | None) -> ModelConfig | None:
            return models[name] if name is not None else None  # names checked by the schema

        def act_on(types: list[str] | None) -> frozenset[str] | None:
            return frozenset(types) if types is not None else None

        self.default = Policies(
            Policy(guards.jailbreak.action, model(guards.jailbreak.model), jailbreak_threshold),
            Policy(guards.pii.action, model(guards.pii.model), act_on=act_on(guards.pii.act_on)),
        )

        def merged(own: Policy, override: GuardPolicy | None) -> Policy:
            if override is None:
                return own
            return Policy(
                override.action or own.action,
                model(override.model) if override.model is not None else own.model,
                override.threshold if override.threshold is not None else own.threshold,
                act_on(override.act_on) if override.act_on is not None else own.act_on,
            )

        self.by_decision = {
            name: Policies(
                merged(self.default.jailbreak, d.jailbreak), merged(self.default.pii, d.pii)
            )
            for name, d in guards.decisions.items()
        }

    def of(self, decision: str) -> Policies:
        return self.by_decision.get(decision, self.default)
