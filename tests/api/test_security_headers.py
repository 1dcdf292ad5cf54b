"""Security headers on every response (pages, API, static files, errors); /docs off by default."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import api_app

API = Path(__file__).resolve().parents[2] / "api"
PATHS = [("GET", "/healthz"), ("GET", "/ui/worklist"), ("GET", "/ui/audit"),
         ("GET", "/static/worklist/worklist.js"), ("GET", "/worklist"), ("GET", "/no-such-page"),
         ("POST", "/fhir/notifications")]


async def _responses(db_url: str, **settings: object) -> dict[str, httpx.Response]:
    app = api_app(db_url, **settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://eras.test") as http:
            return {f"{m} {p}": await http.request(m, p) for m, p in [*PATHS, ("GET", "/docs"),
                                                                       ("GET", "/redoc")]}


async def test_every_response_carries_the_security_headers(sqlite_url: str) -> None:
    responses = await _responses(sqlite_url)
    for name, response in responses.items():
        if name in ("GET /docs", "GET /redoc"):
            continue
        csp = response.headers.get("content-security-policy", "")
        assert "script-src 'self';" in csp and "unsafe-inline" not in csp, name
        assert "frame-ancestors 'none'" in csp, name
        assert response.headers.get("x-frame-options") == "DENY", name
        assert response.headers.get("x-content-type-options") == "nosniff", name
        assert response.headers.get("referrer-policy") == "no-referrer", name


async def test_docs_off_by_default_on_when_enabled(sqlite_url: str) -> None:
    off = await _responses(sqlite_url)
    assert (off["GET /docs"].status_code, off["GET /redoc"].status_code) == (404, 404)
    on = await _responses(sqlite_url, api_docs=True)
    assert (on["GET /docs"].status_code, on["GET /redoc"].status_code) == (200, 200)
    assert "unsafe-inline" not in on["GET /ui/worklist"].headers["content-security-policy"]


async def test_only_the_configured_ehr_origin_may_frame(sqlite_url: str) -> None:
    responses = await _responses(sqlite_url, ehr_origin="https://ehr.example:8443")
    page = responses["GET /ui/worklist"]
    assert "frame-ancestors https://ehr.example:8443" in page.headers["content-security-policy"]
    assert "x-frame-options" not in page.headers


@pytest.mark.parametrize("origin", ["https://ehr.example; script-src *", "ehr.example", "https://a b"])
def test_ehr_origin_must_be_an_origin(sqlite_url: str, origin: str) -> None:
    with pytest.raises(ValueError):
        api_app(sqlite_url, ehr_origin=origin)


def test_pages_have_no_inline_script_or_style() -> None:
    # The CSP forbids inline script and style: every page must run from files.
    inline = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>|\son[a-z]+=|<style|\sstyle=", re.IGNORECASE)
    sources = [*API.glob("*/templates/*.html"), *API.glob("templates/*.html"), API / "audit" / "charts.py"]
    assert sources
    assert {str(p): inline.findall(p.read_text()) for p in sources if inline.search(p.read_text())} == {}
