"""The sandbox EHR with its request log on, counting every HTTP request it served."""

from __future__ import annotations

import asyncio
import subprocess
import uuid

import httpx

from fhir_adapters.sandbox import FhirSandbox

METHODS = ("GET ", "POST ", "PUT ", "DELETE ", "PATCH ")


class CountingSandbox(FhirSandbox):
    """The sandbox with its request log on: every line is one HTTP request it served."""

    def __init__(self) -> None:
        super().__init__(quiet=False)
        self.requests = 0
        self.last_request = ""

    def _read_stderr(self, process: subprocess.Popen[str]) -> None:
        assert process.stderr is not None
        for line in process.stderr:
            if line.startswith(METHODS):
                self.requests += 1
                self.last_request = line
            else:
                self._stderr.append(line.rstrip("\n"))

    async def requests_settled(self) -> int:
        """The count once every request answered so far is in it: the log is read in a thread,
        so a probe request is sent and waited for; the count returned includes the probe."""
        marker = uuid.uuid4().hex
        async with httpx.AsyncClient(base_url=self.base_url) as http:
            await http.get(f"/Patient/{marker}")  # a 404, logged with its path
        for _ in range(200):
            if marker in self.last_request:
                return self.requests
            await asyncio.sleep(0.025)
        raise TimeoutError("the sandbox's request log did not show the probe request")
