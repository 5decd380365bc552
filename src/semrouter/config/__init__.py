"""Router configuration: the schema (schema.py) and how a file becomes one (loader.py)."""

from semrouter.config.loader import ConfigError, default_config_path, load_config, parse_config
from semrouter.config.schema import RouterConfig

__all__ = ["ConfigError", "RouterConfig", "default_config_path", "load_config", "parse_config"]
