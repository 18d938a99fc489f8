"""Who may use what: API keys per tenant, the admin key, and adapter paths under roots.

Keys: with no `api_keys` configured the server is open (every adapter for everyone). With
keys, every translation request needs one; a key may use only its tenant's adapters, and a
request for any other adapter gets 403 whether or not that adapter exists (so one tenant
cannot probe another's adapter names). Admin endpoints need `admin_key`; without one they are
disabled.

Paths: `POST /v1/adapters` may load only folders under a configured root: the given path
must have no `..` component, and its real path (symlinks resolved) must lie inside the real
path of a root, so a symlink inside a root pointing outside it is refused too.
"""

from __future__ import annotations

import hmac
import os
from dataclasses import dataclass
from pathlib import Path, PurePath

from mtadapt.serve.config import BASE_ADAPTER, ServeConfig


class AccessError(Exception):
    """A request the key does not allow; `status` is 401/403."""

    def __init__(self, message: str, status: int = 403, field: str = "api_key") -> None:
        super().__init__(message)
        self.status = status
        self.field = field


@dataclass(frozen=True)
class Caller:
    """Who sent a request: a tenant (allowed adapter names, or None = every adapter)."""

    tenant: str
    adapters: frozenset[str] | None
    base: bool = True
    admin: bool = False

    def may_use(self, adapter: str | None) -> bool:
        if adapter in (None, BASE_ADAPTER):
            return self.base
        return self.adapters is None or adapter in self.adapters


class KeyRing:
    """Maps keys to callers; compares keys in constant time."""

    def __init__(self, config: ServeConfig) -> None:
        self.open = not config.api_keys
        self._tenants = [
            (t.key, Caller(t.tenant or f"tenant{i}", None if "*" in t.adapters else frozenset(t.adapters), t.base))
            for i, t in enumerate(config.api_keys)
        ]
        self._admin_key = config.admin_key

    def caller(self, key: str | None) -> Caller:
        """The caller for a translation request's key.

        Raises:
            AccessError: keys are configured and this one is missing or unknown.
        """
        admin = self._admin_key is not None and key is not None and hmac.compare_digest(key.encode(), self._admin_key.encode())
        if admin:
            return Caller("admin", None, True, admin=True)
        if self.open:
            return Caller("open", None, True)
        if not key:
            raise AccessError("api_key: missing; this server needs an API key (api_key field, Authorization: Bearer, or X-API-Key)")
        for known, caller in self._tenants:
            if hmac.compare_digest(key.encode(), known.encode()):
                return caller
        raise AccessError("api_key: invalid API key")

    def admin(self, key: str | None) -> Caller:
        """The caller of an admin endpoint.

        Raises:
            AccessError: no admin key configured, or a different key.
        """
        if self._admin_key is None:
            raise AccessError("admin endpoints are disabled: the server has no admin_key")
        caller = self.caller(key) if key else None
        if caller is None or not caller.admin:
            raise AccessError("api_key: this endpoint needs the admin key")
        return caller


def key_from_headers(headers: dict[str, str]) -> str | None:
    """`Authorization: Bearer K` or `X-API-Key: K` (header names lower-case)."""
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    return headers.get("x-api-key") or None


class PathError(ValueError):
    """A refused adapter path: `status` 403 (outside the roots, `..`, loading disabled) or
    400 (no such folder)."""

    def __init__(self, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.status = status


def adapter_path_under_roots(path: str, roots: list[str]) -> Path:
    """The real path of `path` when it lies under one of `roots`.

    A relative `path` is taken relative to each root in turn (first that exists wins).

    Raises:
        PathError: no roots configured, a `..` component, or a real path (symlinks
            resolved) outside every root; the message names the roots.
    """
    if not roots:
        raise PathError("path: loading adapters at run time is disabled (no adapter_roots configured)")
    if not isinstance(path, str) or not path or "\x00" in path:
        raise PathError("path: give a folder under an adapter root", 400)
    if ".." in PurePath(path).parts:
        raise PathError(f"path: {path!r} contains '..'; give a folder under {', '.join(roots)}")
    real_roots = [Path(os.path.realpath(r)) for r in roots]
    candidates = [Path(path)] if Path(path).is_absolute() else [Path(r) / path for r in roots]
    for candidate in candidates:
        real = Path(os.path.realpath(candidate))
        if any(real == root or root in real.parents for root in real_roots):
            if not real.is_dir():
                continue
            return real
    if any(Path(os.path.realpath(c)).is_dir() for c in candidates):
        raise PathError(f"path: {path!r} resolves outside the adapter roots ({', '.join(roots)})")
    raise PathError(f"path: {path!r} is not a folder under the adapter roots ({', '.join(roots)})", 400)
