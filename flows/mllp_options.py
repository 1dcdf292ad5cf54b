"""The HL7 v2 listener's settings (`ERAS_MLLP_*`), apart from the listener: flows.settings and
`eras mllp --help` read them without importing the listener's store and FHIR modules."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, model_validator

DEFAULT_PORT = 2575  # the port IANA registered for HL7 over MLLP


class MllpSettings(BaseModel):
    """The HL7 v2 listener (`ERAS_MLLP_*` in flows.settings). `port` unset: `eras serve` runs none."""

    host: str = "127.0.0.1"
    port: int | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_client_ca_file: Path | None = None  # set: only senders with a certificate from this CA
    authority_map_file: Path | None = None
    encoding: str = "utf-8"
    idle_timeout: float = 600.0  # seconds without a complete frame before the connection closes
    # A FHIR store ORU^R01 results are written to (and apply reads Observations from), for
    # sites whose FHIR API serves no results; unset: results are read from the EHR.
    results_store_url: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> MllpSettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("ERAS_MLLP_TLS_CERT_FILE and ERAS_MLLP_TLS_KEY_FILE go together")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError("ERAS_MLLP_TLS_CLIENT_CA_FILE needs ERAS_MLLP_TLS_CERT_FILE")
        return self
