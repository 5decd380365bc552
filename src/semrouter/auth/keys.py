"""Client keys: how they are kept, loaded and checked, and who a request says it comes from.

A key is only ever kept as its SHA-256 digest. Keys are high-entropy random tokens (at least
`MIN_KEY_CHARS` characters, e.g. `openssl rand -hex 32`), not passwords: a slow, salted hash
(scrypt, PBKDF2) guards low-entropy secrets against guessing and would add milliseconds to every
request for nothing here. An unsalted SHA-256 digest, compared with `hmac.compare_digest`, is
the standard for API tokens. `router.auth.keys_file` holds digests only (make one with
`printf %s "$KEY" | sha256sum`); a key given in an environment variable (`key_env`) is hashed
when the config loads and its plaintext is not kept.

A request presents its key as `Authorization: Bearer <key>` or `x-api-key: <key>` (what
Anthropic clients send). A key marked `trusted` may name the tenant it acts for in
`x-semrouter-tenant`; from any other key that header is ignored.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from semrouter.config import ConfigError
from semrouter.config.schema import NAME_PATTERN, AuthConfig, ClientKey

TENANT_HEADER = "x-semrouter-tenant"
CREDENTIAL_HEADERS = ("authorization", "x-api-key")
MIN_KEY_CHARS = 16
_DIGEST_LINE = re.compile(r"^(\S+)\s+([0-9a-fA-F]{64})$")
_NAME = re.compile(NAME_PATTERN)


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key in `Authorization: Bearer <key>` (first), else in `x-api-key`; None if neither
    has one."""
    scheme, _, token = headers.get("authorization", "").strip().partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return headers.get("x-api-key", "").strip() or None


class Rejection(Enum):
    """Why headers did not authenticate; the value is the client's message (never the key)."""

    MISSING_KEY = "Missing API key: send 'Authorization: Bearer <key>' or 'x-api-key: <key>'"
    INVALID_KEY = "Invalid API key"
    INVALID_TENANT = (
        f"Header {TENANT_HEADER} must be 1-64 letters, digits, '.', '_' or '-', "
        "starting with a letter or digit"
    )


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated client: its key's policy and the tenant it acts for."""

    key: ClientKey
    tenant: str

    @property
    def name(self) -> str:
        return self.key.name

    def may_use_model(self, model: str) -> bool:
        return self.key.models is None or model in self.key.models

    def may_take_decision(self, decision: str) -> bool:
        return self.key.decisions is None or decision in self.key.decisions


class KeyStore:
    """The configured client keys, by digest. Build it with `load`."""

    def __init__(self, keys: Mapping[bytes, ClientKey]) -> None:
        self._keys = tuple(keys.items())

    @classmethod
    def load(cls, auth: AuthConfig, env: Mapping[str, str] | None = None) -> KeyStore:
        """The keys of `auth` from their env vars and the keys file; ConfigError listing every
        problem (an unset variable, an unreadable or malformed file, a key with no digest)."""
        keys, errors = _load(auth, os.environ if env is None else env)
        if errors:
            raise ConfigError("<config>", errors)
        return cls(keys)

    def find(self, key: str) -> ClientKey | None:
        """The configured key equal to `key`. Every entry is compared, in constant time each,
        so the time taken says nothing about which key (or how much of one) matched."""
        presented = digest(key)
        found = None
        for stored, client in self._keys:
            if hmac.compare_digest(stored, presented):
                found = client
        return found

    def authenticate(self, headers: Mapping[str, str]) -> Principal | Rejection:
        presented = presented_key(headers)
        if presented is None:
            return Rejection.MISSING_KEY
        key = self.find(presented)
        if key is None:
            return Rejection.INVALID_KEY
        tenant = headers.get(TENANT_HEADER) if key.trusted else None
        if tenant is None:
            return Principal(key, key.tenant_name)
        if not _NAME.match(tenant):
            return Rejection.INVALID_TENANT
        return Principal(key, tenant)


class AdminGate:
    """Who may use admin endpoints (/metrics, the dashboard): holders of the admin key when one
    is configured, else loopback clients only."""

    def __init__(self, admin_digest: bytes | None) -> None:
        self._digest = admin_digest

    @classmethod
    def load(cls, auth: AuthConfig, env: Mapping[str, str] | None = None) -> AdminGate:
        """From `auth.admin_key_env` (unset: loopback only); ConfigError if the key is too short."""
        errors: list[str] = []
        admin = _admin_digest(auth, os.environ if env is None else env, errors)
        if errors:
            raise ConfigError("<config>", errors)
        return cls(admin)

    @property
    def has_key(self) -> bool:
        return self._digest is not None

    def allows(self, headers: Mapping[str, str], client_host: str | None) -> bool:
        if self._digest is None:
            return is_loopback(client_host)
        presented = presented_key(headers)
        return presented is not None and hmac.compare_digest(digest(presented), self._digest)


def is_loopback(host: str | None) -> bool:
    try:
        address = ipaddress.ip_address(host or "")
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return bool((mapped or address).is_loopback)


def key_errors(auth: AuthConfig, env: Mapping[str, str] | None = None) -> list[str]:
    """Every problem loading `auth`'s keys would meet ('path: message' lines); [] if none."""
    if not auth.enabled:
        return []
    env = os.environ if env is None else env
    errors = _load(auth, env)[1]
    _admin_digest(auth, env, errors)
    return errors


def _admin_digest(auth: AuthConfig, env: Mapping[str, str], errors: list[str]) -> bytes | None:
    return _hashed_env(auth.admin_key_env, env, "router.auth.admin_key_env", errors, False)


def _hashed_env(
    name: str, env: Mapping[str, str], where: str, errors: list[str], required: bool = True
) -> bytes | None:
    value = env.get(name, "")
    if not value:
        if required:
            errors.append(f"{where}: environment variable '{name}' is not set")
        return None
    if len(value) < MIN_KEY_CHARS:
        errors.append(
            f"{where}: the key in '{name}' is shorter than {MIN_KEY_CHARS} characters; "
            "use a random token (e.g. openssl rand -hex 32)"
        )
        return None
    return digest(value)


def _load(auth: AuthConfig, env: Mapping[str, str]) -> tuple[dict[bytes, ClientKey], list[str]]:
    errors: list[str] = []
    from_file = _read_keys_file(auth, errors) if auth.keys_file is not None else {}
    keys: dict[bytes, ClientKey] = {}
    for i, key in enumerate(auth.keys):
        where = f"router.auth.keys[{i}]"
        if key.key_env is not None:
            if key.name in from_file:
                errors.append(
                    f"{where}: key '{key.name}' has key_env and is in keys_file too; give one"
                )
            hashed = _hashed_env(key.key_env, env, f"{where}.key_env", errors)
        else:
            hashed = from_file.get(key.name)
            if hashed is None:
                errors.append(
                    f"{where}: key '{key.name}' has no key_env and is not in keys_file "
                    f"{auth.keys_file}"
                )
        if hashed is None:
            continue
        if hashed in keys:
            errors.append(f"{where}: key '{key.name}' is the same key as '{keys[hashed].name}'")
        keys[hashed] = key
    return keys, errors


def _read_keys_file(auth: AuthConfig, errors: list[str]) -> dict[str, bytes]:
    """name → digest from the keys file: '<name> <sha256 hex>' lines, blank lines and # comments
    allowed. Problems go to errors with their line."""
    path = str(auth.keys_file)
    where = "router.auth.keys_file"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        errors.append(f"{where}: cannot read {path}: {reason}")
        return {}
    configured = {k.name for k in auth.keys}
    found: dict[str, bytes] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        at = f"{where}: {path} line {number}"
        match = _DIGEST_LINE.match(line)
        if match is None:
            errors.append(f"{at}: expected '<key name> <sha256 hex digest, 64 characters>'")
            continue
        name, hexdigest = match.groups()
        if name in found:
            errors.append(f"{at}: duplicate key name '{name}'")
        elif name not in configured:
            errors.append(f"{at}: key '{name}' is not in router.auth.keys")
        else:
            found[name] = bytes.fromhex(hexdigest)
    return found
