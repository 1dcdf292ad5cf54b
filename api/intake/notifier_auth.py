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


def authenticate_any_notifier(
    *, subscriptions: Mapping[str, SecretStr], authorization: str | None, secret_header: str | None
) -> None:
    """Return when the credential is one configured for some subscription, else 401.

    For a notification that names its subscription only in its body: the body is read and parsed
    only after this, and the subscription it names is then checked against the same credential.
    Every configured credential is compared (no early exit), so timing tells nothing.
    """
    presented = _presented_or_401(authorization, secret_header)
    matches = [hmac.compare_digest(presented.encode(), secret.get_secret_value().encode())
               for secret in subscriptions.values()]
    if not any(matches):
        raise NotifierUnauthorized("the subscription is unknown or the credential is wrong")


def _presented_or_401(authorization: str | None, secret_header: str | None) -> str:
    presented = presented_credential(authorization, secret_header)
    if presented is None:
        raise NotifierUnauthorized(
            "the notification carries no credential: send Authorization: Bearer <token> "
            "or X-Subscription-Secret, as configured for the subscription"
        )
    return presented


def authenticate_notifier(
    *,
    subscriptions: Mapping[str, SecretStr],
    subscription_id: str,
    authorization: str | None,
    secret_header: str | None,
) -> None:
    """Return when the credential is the one configured for `subscription_id`, else 401."""
    presented = _presented_or_401(authorization, secret_header)
    expected = subscriptions.get(subscription_id)
    wanted = expected.get_secret_value() if expected is not None else _NO_SUCH_CREDENTIAL
    matches = hmac.compare_digest(presented.encode(), wanted.encode())
    if expected is None or not matches:
        raise NotifierUnauthorized("the subscription is unknown or the credential is wrong")
