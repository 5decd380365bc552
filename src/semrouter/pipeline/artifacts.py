"""The artifacts a config names (head files, selectors, client keys): are they there, do they fit?

The config schema cannot check this itself without importing the layers that own the artifacts
(signals, decide), so the check lives here, above both. `Router` runs it when it is built and the
CLI runs it when it loads a config, so a missing head or a selector that cannot choose a
decision's models is a config error with its path, like any other, and never a traceback. So is
a client key (router.auth) whose environment variable is unset or whose keys file is unreadable.
Once the embedder is loaded, `width_errors` checks that every head and selector reads vectors as
wide as the ones it gives.
"""

from __future__ import annotations

from collections.abc import Mapping

from semrouter.auth import key_errors
from semrouter.config import ConfigError, RouterConfig
from semrouter.decide.selector import LearnedSelector, selector_models
from semrouter.signals.heads import Head, head_file


def check_artifacts(config: RouterConfig) -> list[str]:
    """One 'path: message' line per problem with the artifacts ``config`` names; [] if none."""
    errors: list[str] = []
    for name, head in (
        ("domain", config.signals.domain.head),
        ("reasoning", config.signals.reasoning.head),
    ):
        if head is None:
            continue
        try:
            head_file(head)
        except FileNotFoundError as exc:
            errors.append(f"signals.{name}.head: {exc}")
    for i, decision in enumerate(config.decisions):
        if decision.selector is None:
            continue
        where = f"decisions[{i}].selector.artifact"
        try:
            covered = selector_models(decision.selector.artifact)
        except (FileNotFoundError, ValueError) as exc:
            errors.append(f"{where}: {exc}")
            continue
        unknown = [m for m in decision.models if m not in covered]
        if unknown:
            errors.append(
                f"{where}: '{decision.selector.artifact}' cannot choose {unknown}; "
                f"it covers {list(covered)}"
            )
    errors.extend(key_errors(config.router.auth))  # the keys file, and the keys' env vars
    return errors


def require_artifacts(config: RouterConfig, source: str = "<config>") -> RouterConfig:
    """``config`` itself if its artifacts are usable, else a ConfigError listing every problem."""
    errors = check_artifacts(config)
    if errors:
        raise ConfigError(source, errors)
    return config


def width_errors(
    config: RouterConfig,
    heads: Mapping[str, Head | None],
    selectors: Mapping[str, LearnedSelector],
    dim: int,
    feature_dim: int,
) -> list[str]:
    """One 'path: message' line per head or selector that reads vectors of another width than
    the configured embedder gives: caught when the router is built, not on every request."""
    errors = []
    for name, head in heads.items():
        if head is None:
            continue
        width = dim if head.input_name == "embeddings" else feature_dim
        if head.input_dim != width:
            errors.append(
                f"signals.{name}.head: the head reads {head.input_dim}-wide {head.input_name} "
                f"but the configured embedder gives {width}; retrain it for this embedder"
            )
    positions = {d.name: i for i, d in enumerate(config.decisions)}
    for decision, selector in selectors.items():
        if selector.feature_dim != feature_dim:
            errors.append(
                f"decisions[{positions[decision]}].selector.artifact: the selector reads "
                f"{selector.feature_dim}-wide features but the configured embedder gives "
                f"{feature_dim}; retrain it for this embedder"
            )
    return errors
