"""Signing keys for SMART Backend Services and the public JWKS that EHRs fetch."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

# SMART Backend Services requires servers to support RS384 and ES384; we sign with no other.
SUPPORTED_ALGORITHMS = frozenset({"RS384", "ES384"})
RSA_KEY_BITS = 2048

# JWK members that only a private key has; a JWKS that contains one leaks the key.
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


def generate_key(algorithm: str) -> PrivateKey:
    """A new private key suitable for `algorithm` (RS384: RSA 2048, ES384: EC P-384)."""
    check_algorithm(algorithm)
    if algorithm == "RS384":
        return rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS)
    return ec.generate_private_key(ec.SECP384R1())


def load_private_key(key: str | bytes | PrivateKey, algorithm: str) -> PrivateKey:
    """A private key object from PEM text (unencrypted) or an existing key object."""
    check_algorithm(algorithm)
    if isinstance(key, str):
        key = key.encode("utf-8")
    if isinstance(key, bytes):
        loaded = serialization.load_pem_private_key(key, password=None)
        if not isinstance(loaded, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise ValueError("The SMART private key must be an RSA or EC key in PEM format.")
        key = loaded
    check_key_matches(key, algorithm)
    return key


def check_algorithm(algorithm: str) -> None:
    """Refuse algorithms that SMART Backend Services servers need not accept."""
    if algorithm not in SUPPORTED_ALGORITHMS:
        raise ValueError(
            f"Unsupported signing algorithm {algorithm!r}; use one of "
            f"{', '.join(sorted(SUPPORTED_ALGORITHMS))}."
        )


def check_key_matches(key: PrivateKey, algorithm: str) -> None:
    """Refuse a key that cannot sign with `algorithm` (ES384 needs the P-384 curve)."""
    if algorithm == "RS384" and isinstance(key, rsa.RSAPrivateKey):
        return
    if (
        algorithm == "ES384"
        and isinstance(key, ec.EllipticCurvePrivateKey)
        and isinstance(key.curve, ec.SECP384R1)
    ):
        return
    raise ValueError(
        f"The private key cannot sign {algorithm}: RS384 needs an RSA key, "
        "ES384 an EC key on the P-384 curve."
    )


def private_key_pem(key: PrivateKey) -> str:
    """The key as unencrypted PKCS#8 PEM text, for storing in a secrets file."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


def public_jwk(private_key: PrivateKey, kid: str, alg: str) -> dict[str, Any]:
    """The public half of `private_key` as a JWK with kid, alg and use=sig."""
    check_key_matches(private_key, alg)
    public = private_key.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        jwk = json.loads(RSAAlgorithm.to_jwk(public))
    else:
        jwk = json.loads(ECAlgorithm.to_jwk(public))
    jwk.update({"kid": kid, "alg": alg, "use": "sig", "key_ops": ["verify"]})
    return jwk


def jwks_document(keys: Iterable[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """A JWK Set of public keys, refusing private members and duplicate key ids."""
    documents: list[dict[str, Any]] = []
    seen: set[str] = set()
    for key in keys:
        leaked = _PRIVATE_MEMBERS & key.keys()
        if leaked:
            kid = key.get("kid")
            raise ValueError(f"JWK {kid!r} holds private members; publish public keys only.")
        kid = key.get("kid")
        if not kid:
            raise ValueError("Every JWK in the published set needs a 'kid'.")
        if kid in seen:
            raise ValueError(f"Key id {kid!r} appears twice in the JWK set.")
        seen.add(kid)
        documents.append(dict(key))
    return {"keys": documents}
