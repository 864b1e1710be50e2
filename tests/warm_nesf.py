"""A warm ``nesf`` for the documentation's examples: one process imports the stack once, then forks per call.

Each ``nesf`` call of an example otherwise starts a fresh interpreter and imports torch, scipy
and pymatgen again (1.5-4 s a call, over a third of what the examples cost). Here a server
imports them once and listens on a Unix socket; the ``nesf`` of the examples' PATH
(:func:`client_script`) sends it the call's arguments, working folder and environment with its
own standard input, output and error (passed as file descriptors), and the server forks a
child that runs :func:`nesf.cli.main` as the command line would and reports the exit code.
Calls run one at a time, as the examples' bash blocks do. Where the server cannot be reached,
the client runs the call itself.

    python tests/warm_nesf.py SOCKET      # serve until killed
"""

from __future__ import annotations

import json
import os
import socket
import sys
import traceback

#: Modules the commands import lazily, imported once by the server.
WARM_IMPORTS = (
    "torch",
    "scipy.optimize",
    "scipy.spatial",
    "spglib",
    "ase.io",
    "pymatgen.core",
    "pymatgen.analysis.structure_matcher",
    "pymatgen.symmetry.analyzer",
    "matplotlib.pyplot",
    "nesf.api",
    "nesf.cli",
)


def _read_request(conn: socket.socket) -> tuple[dict, list[int]]:
    """One request: JSON ending in a newline, the client's three standard streams attached."""
    data, fds = b"", []
    while not data.endswith(b"\n"):
        chunk, got, _, _ = socket.recv_fds(conn, 1 << 16, 3)
        if not chunk:
            raise ConnectionError("the client left before its request was complete")
        data += chunk
        fds += got
    return json.loads(data), fds


def _run_child(conn: socket.socket, request: dict, fds: list[int]) -> None:
    """In the forked child: take the client's streams, folder and environment, run the command, report."""
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = ["nesf", *request["argv"]]
    code = 1
    try:
        from nesf.cli import main

        code = main(request["argv"])
    except SystemExit as exc:  # argparse's --help and errors
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # noqa: BLE001 - a traceback as the command line would print it
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        conn.sendall(f"{int(code)}\n".encode())
        os._exit(int(code))


def serve(path: str) -> None:
    """Import the stack, then run each request in a forked child, one at a time."""
    import importlib

    for name in WARM_IMPORTS:
        importlib.import_module(name)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path + ".tmp")
    os.rename(path + ".tmp", path)  # the socket appears once it listens
    server.listen(4)
    while True:
        conn, _ = server.accept()
        try:
            request, fds = _read_request(conn)
        except (ConnectionError, ValueError):
            conn.close()
            continue
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            server.close()
            _run_child(conn, request, fds)
        for fd in fds:
            os.close(fd)
        conn.close()
        os.waitpid(pid, 0)


def client_script(python: str, path: str, add_threads: list[str], add_jobs: list[str]) -> str:
    """The text of a ``nesf`` executable that runs its call on the server at ``path`` (or itself, without one).

    ``add_threads`` / ``add_jobs``: commands given ``--threads 1`` / ``--jobs 1`` (the examples run on one core).
    """
    return f"""#!{python}
import json, os, socket, sys
args = sys.argv[1:]
if args and args[0] in {add_threads!r} and '--help' not in args:
    args += ['--threads', '1']
if args and args[0] in {add_jobs!r} and '--help' not in args:
    args += ['--jobs', '1']
try:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect({path!r})
except OSError:
    from nesf.cli import main
    sys.exit(main(args))
sys.stdout.flush(); sys.stderr.flush()
request = json.dumps({{"argv": args, "cwd": os.getcwd(), "env": dict(os.environ)}}) + "\\n"
socket.send_fds(s, [request.encode()], [0, 1, 2])
answer = b""
while not answer.endswith(b"\\n"):
    chunk = s.recv(64)
    if not chunk:
        sys.exit("nesf: the warm nesf of the tests ended without an exit code")
    answer += chunk
sys.exit(int(answer))
"""


if __name__ == "__main__":
    serve(sys.argv[1])
