"""Authenticating the EHR that posts notifications: one credential per subscription."""

import hmac
from collections.abc import Mapping

from pydantic import SecretStr

from api.errors import NotifierUnauthorized

# Compared against when the subscription is unknown, so that the answer takes as long as for
# a known one and does not tell which subscription ids exist.
_NO_SUCH_CREDENTIAL = "\x00" * 32


def presented_credential(authorization: str | None, secret_header: str | None) -> str | None:
    """The bearer token of `Authorization`, else the `X-Subscription-Secret` value."""
    if authorization:
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return secret_header or None


def authenticate_notifier(
    *,
    subscriptions: Mapping[str, SecretStr],
    subscription_id: str,
    authorization: str | None,
    secret_header: str | None,
) -> None:
    """Return when the credential is the one configured for `subscription_id`, else 401."""
    presented = presented_credential(authorization, secret_header)
    if presented is None:
        raise NotifierUnauthorized(
            "the notification carries no credential: send Authorization: Bearer <token> "
            "or X-Subscription-Secret, as configured for the subscription"
        )
    expected = subscriptions.get(subscription_id)
    wanted = expected.get_secret_value() if expected is not None else _NO_SUCH_CREDENTIAL
    matches = hmac.compare_digest(presented.encode(), wanted.encode())
    if expected is None or not matches:
        raise NotifierUnauthorized("the subscription is unknown or the credential is wrong")
