"""Apply one patient in this process at moments the test chooses (a file barrier), so that two
processes apply the same patient at the same instant. Configured from the environment like
`eras worker`. Run: python -m tests.multiprocess.apply_at PATIENT_ID BARRIER_DIR NAME ROUNDS
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from flows.apply import apply_patient
from flows.config import open_runtime
from flows.settings import Settings


async def main(patient_id: str, barrier: Path, name: str, rounds: int) -> None:
    async with open_runtime(Settings(), migrate=False) as rt:
        for r in range(rounds):
            (barrier / f"ready-{r}-{name}").touch()
            while not (barrier / f"go-{r}").exists():
                time.sleep(0.002)  # block the loop on purpose: nothing else runs here
            result = await apply_patient(rt, patient_id)
            print(f"round {r}: {result.written} resources written", flush=True)


if __name__ == "__main__":
    pid, directory, who, count = sys.argv[1:5]
    asyncio.run(main(pid, Path(directory), who, int(count)))
