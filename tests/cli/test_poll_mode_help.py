"""`--poll-seconds` says which polling mode runs and why; so does the start-up line."""

from __future__ import annotations

import re

from typer.testing import CliRunner

from eras_cli.main import app
from flows.poll_options import PollMode, PollSettings, describe_polling


def _plain(text: str) -> str:
    return " ".join(re.sub(r"\x1b\[[0-9;]*m|[│╭╮╰╯─]", " ", text).split())


def test_serve_and_worker_help_name_the_modes_and_why() -> None:
    for command in ("serve", "worker"):
        result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"})
        text = _plain(result.output)
        assert result.exit_code == 0, result.output
        for words in ("ERAS_POLL_MODE", "`patient` (default", "refuse searches naming no patient",
                      "`bulk`", "Group/<id>/$export?_since=", "ERAS_POLL_BULK_GROUP_ID", "`system`"):
            assert words in text, (command, words)


def test_startup_line_says_mode_choice_and_reason() -> None:
    default = describe_polling(PollSettings(), 30)
    assert default.startswith("EHR polling every 30 s in patient mode (the default; 10 patients a "
                              "batch, no rate limit)")
    assert "refuse searches that name no patient" in default
    limited = describe_polling(PollSettings(mode=PollMode.PATIENT, searches_per_second=5), 30)
    assert "(set by ERAS_POLL_MODE; 10 patients a batch, at most 5 searches/s)" in limited
    bulk = describe_polling(PollSettings(mode=PollMode.BULK, bulk_group_id="eras-enrolled"), 600)
    assert "bulk mode (set by ERAS_POLL_MODE; Group/eras-enrolled)" in bulk and "Bulk Data" in bulk
    assert describe_polling(PollSettings(), None).startswith("EHR polling off")
