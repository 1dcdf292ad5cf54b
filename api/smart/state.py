"""What the SMART routes read from `app.state.smart`: settings, the client secret, JWKS caches."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import Request

from api.auth import SESSION_COOKIE, JwksCache
from api.smart.discovery import LaunchError
from flows.settings import SmartSettings


@dataclass
class SmartState:
    """The launch's configuration, and the EHRs' signing keys fetched so far."""

    settings: SmartSettings
    embedded: bool  # the EHR frames our pages (ERAS_EHR_ORIGIN): cookies must be SameSite=None
    cookie_name: str = SESSION_COOKIE
    _keys: dict[str, JwksCache] = field(default_factory=dict)

    def require_client(self) -> None:
        if not self.settings.client_id:
            raise LaunchError("SMART launch is not configured here (ERAS_SMART_CLIENT_ID is unset)",
                              status=503)

    def client_secret(self) -> str | None:
        """The confidential client's secret (read per use: a rotated file needs no restart)."""
        path = self.settings.client_secret_file
        if path is None:
            return None
        try:
            return path.read_text(encoding="utf-8").strip()
        except OSError as error:
            raise LaunchError(f"ERAS_SMART_CLIENT_SECRET_FILE cannot be read ({error.strerror})",
                              status=503) from None

    def keys(self, jwks_uri: str) -> JwksCache:
        """One JWKS cache per EHR key set, kept across launches."""
        if jwks_uri not in self._keys:
            self._keys[jwks_uri] = JwksCache(url=jwks_uri)
        return self._keys[jwks_uri]

    def redirect_url(self, request: Request) -> str:
        """The registered redirect URL, else this server's own callback."""
        return self.settings.redirect_url or str(request.url_for("callback"))
