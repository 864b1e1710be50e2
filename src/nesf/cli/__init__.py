"""Command-line interface: ``nesf <command> ...`` (see ``nesf --help``).

Each command, or group of related commands, lives in its own module with its parser and its
handler; this module assembles them into the ``nesf`` parser and runs one.
"""

from __future__ import annotations

import argparse
import atexit
import gc
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from nesf import __version__
from nesf.cli import data, demo, design, encode, evaluate, generate, relax, train
from nesf.errors import NesfError

#: The commands, in the order ``nesf --help`` lists them.
COMMANDS = (
    evaluate.add_check_fields,
    train.add_parser,
    evaluate.add_evaluate,
    evaluate.add_reconstruct,
    demo.add_parser,
    data.add_models,
    data.add_export,
    data.add_split,
    data.add_prepare,
    encode.add_encode,
    encode.add_decode,
    encode.add_plot_field,
    generate.add_fit_prior,
    generate.add_sample,
    generate.add_generation_metrics,
    relax.add_relax,
    encode.add_interpolate,
    design.add_fit_property,
    design.add_predict,
    design.add_optimize,
)


class _Parser(argparse.ArgumentParser):
    """An argument parser that names a mistyped option and suggests the closest known one."""

    _argv: list[str] = []

    def parse_known_args(self, args=None, namespace=None):  # noqa: ANN001, ANN201, D102
        self._argv = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> NoReturn:  # noqa: D102
        import difflib

        known = [o for action in self._actions for o in action.option_strings if o.startswith("--")]
        for action in self._actions:  # unknown options of a command reach the top parser: use its options
            if isinstance(action, argparse._SubParsersAction):
                sub = next((action.choices[a] for a in self._argv if a in action.choices), None)
                if sub is not None:
                    known += [o for a in sub._actions for o in a.option_strings if o.startswith("--")]
        typos = [a.split("=")[0] for a in self._argv if a.startswith("--") and a.split("=")[0] not in known]
        hints = []
        for t in typos:
            close = difflib.get_close_matches(t, known, n=1, cutoff=0.6)
            hints.append(f"unknown option {t}" + (f" (did you mean {close[0]}?)" if close else ""))
        if hints and "unrecognized arguments" not in message:
            message = "; ".join(hints) + "; " + message
        elif hints:
            message = "; ".join(hints)
        super().error(message)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``nesf`` command."""
    parser = _Parser(
        prog="nesf",
        description="Neural Structure Fields: crystal structures as continuous fields.",
    )
    parser.add_argument("--version", action="version", version=f"nesf {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for add in COMMANDS:
        add(sub)
    return parser


class _QuietWhenClosed:
    """A text stream that stops writing, without error, once its reader has gone (``nesf ... | head``).

    The command then still finishes its work and writes its files (``--json``, ``--out``).
    """

    def __init__(self, stream) -> None:  # noqa: ANN001
        self._stream = stream
        self.closed_by_reader = False

    def write(self, text: str) -> int:  # noqa: D102
        if not self.closed_by_reader:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self.closed_by_reader = True
        return len(text)

    def flush(self) -> None:  # noqa: D102
        if not self.closed_by_reader:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self.closed_by_reader = True

    def __getattr__(self, name: str):  # noqa: ANN204
        return getattr(self._stream, name)


#: Commands that keep their finished chunks when killed and continue with ``--resume``.
RESUMABLE = ("check-fields", "encode", "evaluate", "reconstruct", "sample")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``nesf`` command; returns the exit code."""
    if not isinstance(sys.stdout, _QuietWhenClosed):
        sys.stdout = _QuietWhenClosed(sys.stdout)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # to run the command again in several processes
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    if getattr(args, "max_atoms", None) is not None:
        from nesf.data.crystal import LIMITS

        if args.max_atoms < 1:
            print("nesf: error: --max-atoms must be at least 1", file=sys.stderr)
            return 2
        LIMITS.max_atoms = args.max_atoms
    try:
        return int(args.func(args) or 0)
    except NesfError as exc:
        print(f"nesf: error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # bad settings given on the command line
        print(f"nesf: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        command = getattr(args, "command", "")
        if command == "train":
            hint = " (training saves OUT/last.pt; continue with --resume)"
        elif command in RESUMABLE:
            hint = " (the finished chunks are kept in OUT.partial; continue with --resume)"
        else:
            hint = ""
        print(f"nesf: interrupted{hint}", file=sys.stderr)
        return 130


#: Commands that never import torch (everything else loads a model or a checkpoint).
TORCH_FREE_COMMANDS = frozenset({"models", "split"})


def _import_quietly(argv: Sequence[str]) -> None:
    """Import torch and the model API with the garbage collector paused, then freeze what they made.

    Importing torch creates several hundred thousand objects, and the collector's full passes
    over them cost 0.10-0.15 s of a one-crystal command (``benchmarks/startup.py``). Paused
    during the imports, with the imported objects then moved out of the collector's view
    (:func:`gc.freeze`: module-level objects live until exit anyway), the same imports cost
    nothing extra and later collections stay short. Skipped for help and for commands that
    need no torch.
    """
    command = next((a for a in argv if not a.startswith("-")), None)
    if command is None or command in TORCH_FREE_COMMANDS or {"-h", "--help"} & set(argv):
        return
    gc.disable()
    try:
        import torch  # noqa: F401

        import nesf.api  # noqa: F401
    finally:
        gc.freeze()
        gc.enable()


def run() -> NoReturn:
    """The ``nesf`` executable and ``python -m nesf``: :func:`main`, then a quick exit.

    A normal interpreter exit tears down every imported module one by one, which with torch,
    scipy and pymatgen loaded takes about 0.4 s (measured on the 2-core machine of
    ``benchmarks/RESULTS.md``, "Start-up of a one-crystal command"), longer than many one-crystal
    commands compute. Here the exit handlers registered with :mod:`atexit` run and the output
    streams are flushed as on a normal exit; then the process ends without the teardown. Every
    file a command writes is complete and closed before :func:`main` returns (temporary file,
    then rename). An exception :func:`main` does not handle ends the process the normal way,
    with its traceback; so does ``NESF_FULL_EXIT=1``.
    """
    _import_quietly(sys.argv[1:])
    try:
        code = main()
    except SystemExit as exc:  # argparse's --help, --version and usage errors
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:  # a message, printed as the interpreter would
            print(exc.code, file=sys.stderr)
            code = 1
    if os.environ.get("NESF_FULL_EXIT"):
        sys.exit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a reader that went away, or a closed stream
            pass
    os._exit(code)


__all__ = ["build_parser", "main", "run"]
