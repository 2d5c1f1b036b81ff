"""The ``fastmix`` command line.

Each sub-command lives in its own module under :mod:`fastmix.cli.commands` and exposes

* ``NAME`` (the sub-command), ``HELP`` (one line), ``ORDER`` (position in ``--help``),
* ``register(parser)`` to add its arguments to an ``argparse`` sub-parser,
* ``run(args) -> int`` to do the work.

Command modules are discovered, so adding a command never edits this file. They must import
heavy dependencies inside ``run`` so that ``fastmix --help`` stays fast.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import pkgutil
import signal
import sys
import threading
from typing import NoReturn

from fastmix.errors import BadInputError, command_line_message

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2
#: ``--require good|moderate`` (``mix``, ``audit``): the audit verdict is worse than required.
EXIT_REQUIREMENT = 3
#: The reader of standard output went away (``fastmix info s.h5 | head -1``): the command
#: stops quietly with the status a shell gives a tool that SIGPIPE ends (128 + 13), so that
#: ``set -o pipefail`` still sees the output was cut short.
EXIT_STDOUT_CLOSED = 128 + 13


_FAILURES = ("2 bad input or usage (one line on stderr that says what was found and what to "
             "do; nothing is left behind); 1 any other failure; 141 standard output was "
             "closed early (as by '| head'), quietly")
#: The exit status part of every ``fastmix COMMAND --help``, unless the command sets its own.
EXIT_STATUS = f"0 success; {_FAILURES}"
#: The exit status of the commands that take ``--require`` (``mix``, ``audit``).
EXIT_STATUS_REQUIRE = (f"0 success (with --require: the audit verdict met it); "
                       f"{EXIT_REQUIREMENT} the audit verdict is worse than --require asks "
                       f"(one line on stderr names it; the mixed store is kept); {_FAILURES}")


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")

    def option_strings(self) -> list[str]:
        """Every ``--flag`` this parser knows."""
        return [option for action in self._actions for option in action.option_strings
                if option.startswith("--")]


def unrecognized(parser: _Parser, extras: list[str]) -> str:
    """Return the usage error for unknown arguments, with "did you mean" for misspelt flags.

    argparse suggests close matches only for choices, and only from Python 3.14
    (``suggest_on_error``); flags get none, so the suggestion is made here.
    """
    import difflib

    known = parser.option_strings()
    described = []
    for extra in extras:
        flag = extra.split("=", 1)[0]
        close = difflib.get_close_matches(flag, known, n=1, cutoff=0.6) \
            if flag.startswith("--") else []
        described.append(f"{extra} (did you mean {close[0]}?)" if close else extra)
    return f"unrecognized arguments: {' '.join(described)}"


class _HelpFormatter(argparse.HelpFormatter):
    """Fills paragraphs as argparse does, but keeps indented lines (the examples) as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return "\n".join(line if line.startswith("  ") or not line.strip()
                         else super(_HelpFormatter, self)._fill_text(line, width, indent)
                         for line in text.splitlines())


def _epilog(module) -> str:
    examples = "\n".join(f"  {line}" for line in getattr(module, "EXAMPLES", "").splitlines())
    status = getattr(module, "EXIT_STATUS", EXIT_STATUS)
    parts = [f"examples:\n{examples}"] if examples else []
    return "\n\n".join([*parts, f"exit status: {status}"])


def _command_modules() -> list:
    from fastmix.cli import commands

    modules = [
        importlib.import_module(f"{commands.__name__}.{info.name}")
        for info in pkgutil.iter_modules(commands.__path__)
        if not info.name.startswith("_")
    ]
    return sorted(modules, key=lambda module: (getattr(module, "ORDER", 100), module.NAME))


def build_parser() -> _Parser:
    """Build the full ``fastmix`` parser with every discovered sub-command."""
    from fastmix import __version__

    parser = _Parser(
        prog="fastmix",
        description="Label-based pixel block mixing for privacy-preserving image training sets.",
    )
    parser.add_argument("--version", action="version", version=f"fastmix {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for module in _command_modules():
        sub = subparsers.add_parser(module.NAME, help=module.HELP, description=module.HELP,
                                    epilog=_epilog(module),
                                    formatter_class=_HelpFormatter)
        module.register(sub)
        sub.set_defaults(_run=module.run, _parser=sub)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived: stop and clean up exactly as for Ctrl-C (SIGINT)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _raise_terminated(signum: int, _frame) -> None:
    raise Terminated(signum)


@contextlib.contextmanager
def _termination_as_interrupt():
    """Turn SIGTERM and SIGHUP into :class:`Terminated` while a command runs.

    Every cleanup that Ctrl-C runs (temporary files removed, a new key made for a failed
    run deleted, an in-place run left resumable) then runs for them too.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {number: signal.signal(number, _raise_terminated)
                for number in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


#: What HDF5 says when the machine failed, not the file (these stay exit status 1).
_MACHINE_FAILURES = ("no space left", "input/output error", "permission denied",
                     "errno = 28", "errno = 5,", "errno = 13", "read-only file system",
                     "disk quota", "cannot allocate memory")


def _damaged_input(error: BaseException) -> bool:
    """Whether ``error`` is HDF5 failing to read a damaged file (bad input, exit 2).

    HDF5 reports a damaged structure (a flipped byte in an object header, a B-tree, a
    heap) as ``RuntimeError``, ``KeyError``, ``ValueError`` or an ``OSError`` without an
    errno, raised inside h5py; a failing machine (full disk, I/O error, lost permission)
    says so in its message and stays a failure (exit 1).
    """
    if not isinstance(error, RuntimeError | KeyError | ValueError | OSError | TypeError):
        return False
    if isinstance(error, OSError) and error.errno is not None:
        return False
    if any(word in str(error).lower() for word in _MACHINE_FAILURES):
        return False
    frames = []
    trace = error.__traceback__
    while trace is not None:
        frames.append(trace.tb_frame.f_code.co_filename)
        trace = trace.tb_next
    return bool(frames) and f"h5py{os.sep}" in frames[-1]


def _input_paths(args: argparse.Namespace) -> list[str]:
    return [value for name in ("source", "store", "original", "mixed")
            if isinstance(value := getattr(args, name, None), str) and os.path.isfile(value)]


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    from fastmix.cli.console import one_line, print_warnings

    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    if extras:
        command_parser = getattr(args, "_parser", parser)
        command_parser.error(unrecognized(command_parser, extras))
    if not getattr(args, "_run", None):
        parser.print_help(sys.stderr)
        return EXIT_BAD_INPUT
    try:
        with _termination_as_interrupt(), print_warnings(args.command):
            status = args._run(args)
            sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
    except BadInputError as error:
        message = one_line(command_line_message(error))
        print(f"fastmix {args.command}: error: {message}", file=sys.stderr)
        _print_json_error(args, message, EXIT_BAD_INPUT)
        return EXIT_BAD_INPUT
    except Terminated as stop:
        name = signal.Signals(stop.signum).name
        print(f"fastmix {args.command}: stopped by {name}", file=sys.stderr)
        return 128 + stop.signum
    except KeyboardInterrupt:
        print(f"fastmix {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # last resort: one line, exit 1
        if isinstance(error, BrokenPipeError) and _stdout_closed():
            return EXIT_STDOUT_CLOSED
        if "FASTMIX_DEBUG" in os.environ:
            raise
        if _damaged_input(error):
            inputs = ", ".join(repr(value) for value in _input_paths(args)) or "an input"
            message = (f"{inputs}: HDF5 cannot read a structure of the file "
                       f"({type(error).__name__}: {one_line(str(error))}); it is damaged or "
                       "truncated: restore it from a copy")
            print(f"fastmix {args.command}: error: {message}", file=sys.stderr)
            _print_json_error(args, message, EXIT_BAD_INPUT)
            return EXIT_BAD_INPUT
        message = f"{type(error).__name__}: {one_line(command_line_message(error))}"
        print(f"fastmix {args.command}: failed: {message}", file=sys.stderr)
        _print_json_error(args, message, EXIT_FAILURE)
        return EXIT_FAILURE
    return EXIT_OK if status is None else int(status)


def _stdout_closed() -> bool:
    """Whether standard output is a pipe whose reader has gone; if so, silence it.

    Standard output then goes to ``os.devnull``, so that what is still buffered does not
    raise again when the interpreter flushes it at exit. A broken pipe elsewhere (a worker,
    a socket) is not this, and stays a failure.
    """
    import select

    try:
        descriptor = sys.stdout.fileno()
        poller = select.poll()
        poller.register(descriptor, select.POLLOUT)
        events = poller.poll(0)
    except (AttributeError, OSError, ValueError):
        return False
    if not any(mask & select.POLLERR for _, mask in events):
        return False
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, descriptor)
    os.close(devnull)
    return True


def _print_json_error(args: argparse.Namespace, message: str, status: int) -> None:
    """Under ``--json``, the error as one JSON object on stdout too, for programs that parse it."""
    if getattr(args, "json", False):
        import json

        print(json.dumps({"error": message, "exit_status": status, "command": args.command}))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
