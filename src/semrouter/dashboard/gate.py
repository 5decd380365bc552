"""Who may see the dashboard and call its admin APIs, whatever `router.auth.enabled` says.

With an admin key configured (`router.auth.admin_key_env`, SEMROUTER_ADMIN_KEY by default): a
client presenting it, as `Authorization: Bearer` / `x-api-key` (scripts, Grafana's JSON
datasource) or in the HttpOnly, SameSite=Strict cookie the login form sets (a browser).
Without one: loopback clients only; anyone else gets 403 and the reason. The check is
`semrouter.auth.AdminGate`'s, the one /metrics uses with router auth on.
"""

from __future__ import annotations

from collections.abc import Mapping

from semrouter.auth import AdminGate
from semrouter.config.schema import AuthConfig
from semrouter.pipeline.errors import RouterError, forbidden, unauthorized

COOKIE = "semrouter_admin"


class DashboardGate:
    def __init__(self, auth: AuthConfig, env: Mapping[str, str] | None = None) -> None:
        """ConfigError if the admin key is set but too short."""
        self.admin = AdminGate.load(auth, env)
        self.key_env = auth.admin_key_env

    @property
    def has_key(self) -> bool:
        return self.admin.has_key

    def refusal(
        self, headers: Mapping[str, str], cookies: Mapping[str, str], client_host: str | None
    ) -> RouterError | None:
        """None if the client may pass, else the error it gets (401 or 403)."""
        if self.admin.allows(headers, client_host):
            return None
        if not self.admin.has_key:
            return forbidden(
                "The dashboard answers loopback clients only while no admin key is configured "
                f"(set {self.key_env})"
            )
        if self.accepts(cookies.get(COOKIE, "")):
            return None
        return unauthorized("The dashboard needs the admin key")

    def accepts(self, key: str) -> bool:
        """Whether `key` is the admin key (the login form's check)."""
        return (
            bool(key)
            and self.admin.has_key
            and self.admin.allows({"authorization": f"Bearer {key}"}, None)
        )
