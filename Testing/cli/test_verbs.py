"""The command table: a verb is one module (add_parser, run) plus one line in ``cli.COMMANDS``."""

from __future__ import annotations

import argparse
import textwrap

import pytest

import FreqAdvSegmentLib.cli as cli
from FreqAdvSegmentLib.cli import main
from FreqAdvSegmentLib.cli.options import triple

TOY_VERB = '''
"""``freqadv toy WORD``: says WORD, --times times; a word with a digit is bad input."""

import argparse


def add_parser(subparsers):
    p = subparsers.add_parser("toy", help="say a word", description="Say WORD.")
    p.add_argument("word")
    p.add_argument("--times", type=int, default=1)
    return p


def run(args: argparse.Namespace) -> int:
    if any(c.isdigit() for c in args.word):
        raise ValueError(f"not a word: {args.word}; give letters only")
    print(" ".join([args.word] * args.times))
    return 0
'''


@pytest.fixture()
def toy_verb(tmp_path, monkeypatch):
    """``freqadv toy``: one file (outside the package) and one line in the table."""
    (tmp_path / "toy_verb.py").write_text(textwrap.dedent(TOY_VERB), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(cli.COMMANDS, "toy", "toy_verb")


def test_a_verb_is_one_file_and_one_line(toy_verb, capsys):
    assert main(["toy", "hello", "--times", "2"]) == 0
    assert capsys.readouterr().out == "hello hello\n"
    assert main(["--help"]) == 0
    assert "toy" in capsys.readouterr().out.split("positional arguments:")[1], "freqadv --help lists the new verb"


def test_a_new_verb_gets_the_common_error_policy(toy_verb, capsys):
    """Its errors become one line with the exit code of errors.py; usage errors are one line too;
    --debug (added to every verb) shows the traceback instead."""
    assert main(["toy", "r2d2"]) == 2
    err = capsys.readouterr().err
    assert err == "freqadv toy: error: not a word: r2d2; give letters only\n"
    assert main(["toy", "hi", "--times", "x"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("freqadv toy: error: argument --times")
    with pytest.raises(ValueError, match="not a word"):
        main(["toy", "r2d2", "--debug"])


def test_the_table_is_the_parser():
    """Every verb of the table, in its order, is a sub-command; nothing else is."""
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert list(sub.choices) == list(cli.COMMANDS)
    assert list(cli.COMMANDS) == ["segment", "attack", "evaluate", "curve", "fourier", "demo", "models", "train", "serve"]
    for name in cli.COMMANDS:
        module = cli.verb(name)
        assert callable(module.add_parser) and callable(module.run), name


@pytest.mark.parametrize("text, size", [("96", (96, 96, 96)), ("96,96,64", (96, 96, 64)), ("64x64x32", (64, 64, 32))])
def test_triple_reads_sizes(text, size):
    assert triple(text) == size


@pytest.mark.parametrize("text", ["96,96", "0", "a,b,c", "96,-1,96"])
def test_triple_refuses_other_text(text):
    with pytest.raises(argparse.ArgumentTypeError, match="expected a size like 96 or 96,96,64"):
        triple(text)
