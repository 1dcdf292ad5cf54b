"""One reminders pass in its own process, configured from the environment like `eras worker`.

The distributed test starts several at once (beside the workers' scheduled runs) to prove
that overlapping reminder runs page each level once. Run: python -m tests.multiprocess.remind_pass
"""

from __future__ import annotations

import asyncio

from flows.config import open_runtime
from flows.reminders import remind_once
from flows.settings import Settings


async def main() -> int:
    async with open_runtime(Settings(), migrate=False) as rt:
        return len(await remind_once(rt, deliver=rt.deliver))


if __name__ == "__main__":
    print(f"notices sent: {asyncio.run(main())}")
