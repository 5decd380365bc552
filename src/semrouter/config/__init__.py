"""Router configuration: the schema (schema.py) and how a file becomes one (loader.py)."""

from semrouter.config.loader import ConfigError, load_config, parse_config
from semrouter.config.schema import RouterConfig

__all__ = ["ConfigError", "RouterConfig", "load_config", "parse_config"]
