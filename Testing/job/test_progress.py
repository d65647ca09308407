"""The engine's machine-readable progress: what the CLI writes when asked, and what the bridge reads."""

import io
import json

from FreqAdvSegmentLib.job.progress import PROGRESS_ENV, JsonProgress, Progress, json_requested, parse_progress


def test_json_lines_round_trip():
    stream = io.StringIO()
    progress = JsonProgress(stream)
    for step in range(3):
        progress("pgd-2", step, 2)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3
    assert json.loads(lines[1]) == {"event": "progress", "stage": "pgd-2", "step": 1, "total": 2, "fraction": 0.5}
    assert [parse_progress(line) for line in lines] == [Progress("pgd-2", s, 2) for s in range(3)]
    assert parse_progress("warning: vafa: VISIBLE CHANGE") is None
    assert parse_progress("{not json") is None and parse_progress('{"event": "progress"}') is None


def test_cli_writes_json_instead_of_bars_only_when_asked(monkeypatch, capsys):
    import FreqAdvSegmentLib.cli.console as cli

    monkeypatch.setenv(PROGRESS_ENV, "json")
    assert json_requested()
    bar = cli.BarProgress()
    bar("segment", 0, 1)
    bar("segment", 1, 1)
    err = capsys.readouterr().err
    assert [parse_progress(line) for line in err.splitlines()] == [Progress("segment", 0, 1), Progress("segment", 1, 1)]
    assert "%|" not in err, "no tqdm bar when a program asked for JSON"

    monkeypatch.delenv(PROGRESS_ENV)
    bar = cli.BarProgress()
    bar("segment", 1, 1)
    err = capsys.readouterr().err
    assert "1/1" in err and all(parse_progress(line) is None for line in err.replace("\r", "\n").splitlines())
