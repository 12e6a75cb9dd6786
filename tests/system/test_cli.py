"""Every command's main() has one shape (ensemble.cli.run_command): an expected error is one `error:` line
and exit 2, the body's exit code passes through, a bug keeps its traceback."""
import importlib
import logging

import pytest

from ensemble.cli import Parser, add_verbosity, run_command

COMMANDS = ["train", "tune", "vote", "compete", "report", "export", "predict", "distill", "dups", "init", "shift"]


def _parser():
    p = Parser(prog="python -m ensemble.x")
    p.add_argument("--value", type=int, default=0)
    add_verbosity(p)
    return p


def test_an_expected_error_is_one_line_and_exit_2(capsys):
    def body(args):
        raise FileNotFoundError(f"configs/x.yaml not found (value {args.value})")
    assert run_command(_parser(), ["--value", "3"], body) == 2
    err = capsys.readouterr().err
    assert err == "error: configs/x.yaml not found (value 3)\n"


def test_the_body_exit_code_passes_through_and_none_is_0():
    assert run_command(_parser(), [], lambda args: 1) == 1
    assert run_command(_parser(), [], lambda args: None) == 0


def test_an_error_outside_the_expected_ones_keeps_its_traceback():
    def body(args):
        raise KeyError("a bug")
    with pytest.raises(KeyError):
        run_command(_parser(), [], body)
    with pytest.raises(RuntimeError):  # only ValueError and OSError unless the command names more
        run_command(_parser(), [], lambda args: (_ for _ in ()).throw(RuntimeError("x")))
    assert run_command(_parser(), [], lambda args: (_ for _ in ()).throw(RuntimeError("x")),
                       (RuntimeError,)) == 2


def test_quiet_and_verbose_set_the_log_level():
    run_command(_parser(), ["-q"], lambda args: None)
    assert logging.getLogger("ensemble").level == logging.WARNING
    run_command(_parser(), ["-v"], lambda args: None)
    assert logging.getLogger("ensemble").level == logging.DEBUG
    run_command(_parser(), [], lambda args: None)
    assert logging.getLogger("ensemble").level == logging.INFO


def test_a_bad_flag_is_argparse_one_line_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        run_command(_parser(), ["--value", "x"], lambda args: None)
    assert e.value.code == 2
    assert capsys.readouterr().err.startswith("error: argument --value: invalid int value: 'x'")


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_runs_through_run_command(name):
    """One shape for all: no command parses or catches on its own (what a reader of one learns for all)."""
    import inspect
    source = inspect.getsource(importlib.import_module(f"ensemble.{name}.__main__").main)
    assert "run_command(" in source
    assert "parse_args(" not in source and "except" not in source


def test_tune_verbose_shows_training_output_not_debug_logging():
    from ensemble.tune.__main__ import build_parser
    args = build_parser().parse_args(["--cfg", "x.yaml", "--verbose"])
    assert args.show_training is True and not hasattr(args, "verbose")
