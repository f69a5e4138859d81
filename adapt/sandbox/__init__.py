"""Run untrusted, model-written Python: ``execute(code) -> ExecutionResult``. It never raises for
anything the program does, so a reward loop survives any sample.

Each call runs the program as ``main.py`` in a fresh process of this interpreter (its real path,
``python -I``), started by a small supervisor (``_supervisor.py``) that sets up the kernel's
isolation. ``isolation()`` says which layers this machine gives:

- ``namespaces``: new mount, pid, network, ipc and uts namespaces (as root directly, otherwise
  inside a user namespace). When the namespace's init dies the kernel kills every process in it,
  so nothing the program started (``setsid`` escapees included) outlives ``execute``.
- ``unprivileged_uid``: the program runs as its own uid (one per execution, from 2**30 up) with no
  capabilities and ``no_new_privs``, so RLIMIT_NPROC binds (the kernel exempts root from it) and
  setuid binaries give nothing back. Needs root.
- ``filesystem_view``: the root is a read-only tmpfs holding read-only binds of /usr, /lib* and the
  interpreter's prefix, a minimal /etc and /dev, and the namespace's /proc; the working directory
  ``/sandbox``, /tmp and /dev/shm are writable, size-capped tmpfs. /root, /home, /work, the
  caller's files: not there.
- ``no_network``: the network namespace has only a loopback, and it is down: every connect fails.

Always, whatever the machine: rlimits on CPU time, address space, file size, open files and
processes; a wall-clock timeout; stdout/stderr capped at ``output_bytes`` (a flood is killed); an
environment of PATH, HOME, LANG and TMPDIR only; a fresh working directory, removed afterwards.

Not root, but with user namespaces (most desktops): every layer but ``unprivileged_uid``; the
program keeps the caller's uid (a user namespace maps only that one), so RLIMIT_NPROC counts all
the caller's processes. Without root and without user namespaces (some hardened kernels,
containers under seccomp) only the "always" layers hold.
There the program would run as the caller, able to read and write the caller's files and reach
the network, so ``execute`` refuses ("sandbox_error") unless ``allow_weak_isolation`` is set; then
RLIMIT_NPROC counts all the caller's processes, only the supervisor's subreaper sweep kills
escapees, and ``execute`` logs a warning the first time a layer is missing. As root without
namespaces, the interpreter must be reachable by other uids (it is not under /root): otherwise each
execution ends in "sandbox_error" rather than run with less isolation than asked.

Not provided: seccomp filtering of system calls, so the kernel's whole syscall surface is exposed;
a cap on total memory across processes (a cgroup would give one): RLIMIT_AS is per process, so one
execution can hold up to ``processes x memory_mb`` (16 GB with the defaults), and a reward loop
with several workers that many times over.
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

__all__ = ["SandboxLimits", "ExecutionResult", "execute", "isolation", "strongly_isolated"]

log = logging.getLogger(__name__)

LAYERS = ("namespaces", "unprivileged_uid", "filesystem_view", "no_network")
_PYTHON = os.path.realpath(sys.executable)
_SUPERVISOR = str(Path(__file__).with_name("_supervisor.py"))
_PROGRAM = "main.py"
_STOP_GRACE_S = 5.0  # the supervisor's kill of the tree takes milliseconds; this is a backstop
_UID_BASE, _UID_SPAN = 1 << 30, 1 << 20  # far above real accounts and the usual subuid ranges
# One uid per execution, so concurrent programs never share an RLIMIT_NPROC budget. The random start
# keeps separate processes (reward workers) on this machine from colliding; next() is atomic.
_uid_offsets = itertools.count(secrets.randbelow(_UID_SPAN))
_use_namespaces = True  # tests switch it off to check the fallback
_warned = False


@dataclass(frozen=True)
class SandboxLimits:
    """Limits of one execution. Exceeding one ends the program (see ``ExecutionResult.status``)."""

    timeout_s: float = 10.0
    """Wall clock from start; then the program and every process it started are killed."""
    cpu_s: int = 10
    """CPU seconds per process (RLIMIT_CPU); past it the kernel sends SIGXCPU ("killed")."""
    memory_mb: int = 1024
    """Address space per process (RLIMIT_AS); an allocation past it fails (MemoryError)."""
    file_size_mb: int = 16
    """Largest file the program may write (RLIMIT_FSIZE). /sandbox, /tmp and /dev/shm each hold 4
    times this, at least 64 MB."""
    open_files: int = 64
    """Open file descriptors per process (RLIMIT_NOFILE)."""
    processes: int = 16
    """Processes and threads of the sandbox uid (RLIMIT_NPROC): stops fork bombs. With
    ``memory_mb`` it bounds the memory of one execution: at most ``processes x memory_mb``."""
    output_bytes: int = 65536
    """Bytes kept of stdout and of stderr; a program that writes more is killed ("output_limit")."""
    allow_weak_isolation: bool = False
    """Run even where the kernel gives no namespaces (no filesystem view, no network isolation),
    with only the rlimits, the timeout and a clean environment. Off, such a machine answers every
    execution with "sandbox_error" rather than run model-written code next to the caller's files."""


@dataclass
class ExecutionResult:
    """What one execution did."""

    status: str
    """"ok" (exit 0), "error" (non-zero exit, e.g. an exception), "timeout", "output_limit",
    "killed" (by a signal: segfault, abort, CPU limit) or "sandbox_error" (the sandbox itself
    could not run it; the reason is in ``stderr``)."""
    returncode: int | None
    """Exit code, or minus the signal number; None on timeout, output_limit and sandbox_error."""
    stdout: str
    stderr: str
    duration_s: float
    isolation: dict[str, bool] = field(default_factory=dict)
    """The isolation layers that were active (see ``isolation()``)."""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def execute(code: str, *, limits: SandboxLimits = SandboxLimits(), stdin: str = "",
            files: dict[str, str] | None = None) -> ExecutionResult:
    """Run ``code`` as ``main.py`` in a fresh sandbox, with ``files`` (relative path -> text) beside it
    and ``stdin`` as its standard input. Raises only for a bad file name (the caller's error)."""
    files = files or {}
    _check_names(files)
    start = time.monotonic()
    if not limits.allow_weak_isolation and not strongly_isolated():
        missing = [name for name in ("namespaces", "filesystem_view", "no_network") if not _probe().get(name)]
        return _sandbox_error(f"this machine does not give {', '.join(missing) or 'namespaces'}, so the program "
                              f"could reach the caller's files and the network; refusing to run it (set "
                              f"allow_weak_isolation to run it with rlimits only)", start)
    try:
        workdir = tempfile.mkdtemp(prefix="adapt-sandbox-")
    except OSError as exc:
        return _sandbox_error(f"cannot create the working directory: {exc}", start)
    try:
        _stage(workdir, {_PROGRAM: code, **files})
        return _run(workdir, limits, stdin, start)
    except OSError as exc:
        return _sandbox_error(str(exc), start)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def isolation() -> dict[str, bool]:
    """Which isolation layers are active on this machine: ``{"namespaces": True, ...}`` (see the
    module docstring). Measured once per process, by running an empty program."""
    return dict(_probe())


@functools.lru_cache(maxsize=1)
def _probe() -> dict[str, bool]:
    return execute("", limits=SandboxLimits(allow_weak_isolation=True)).isolation or dict.fromkeys(LAYERS, False)


def strongly_isolated() -> bool:
    """Namespaces, the filesystem view and no network: what keeps a program off the caller's
    files and the network. (The unprivileged uid needs root; without it RLIMIT_NPROC is shared.)"""
    layers = _probe()
    return _use_namespaces and all(layers.get(name) for name in ("namespaces", "filesystem_view", "no_network"))


def _check_names(files: dict[str, str]) -> None:
    for name in files:
        path = PurePosixPath(name)
        if not name or path.is_absolute() or ".." in path.parts or name == _PROGRAM:
            raise ValueError(f"sandbox file name {name!r}: must be a relative path inside the working "
                             f"directory, and not {_PROGRAM!r}")


def _stage(workdir: str, files: dict[str, str]) -> None:
    """Write the files where the supervisor copies them from (into the view) or runs them (without)."""
    os.mkdir(os.path.join(workdir, "root"))  # the view's mount point
    for name, text in files.items():
        path = Path(workdir, "files", name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8", errors="surrogatepass")  # bad text: a SyntaxError, not ours


def _run(workdir: str, limits: SandboxLimits, stdin: str, start: float) -> ExecutionResult:
    status_r, status_w = os.pipe()
    with os.fdopen(status_r, "rb", buffering=0) as status:
        proc = _start(workdir, limits, stdin, status_w)
        with proc:
            try:
                stdout, stderr, reason = _collect(proc, limits, start + limits.timeout_s)
            except BaseException:  # e.g. KeyboardInterrupt: leave nothing running behind us
                _stop(proc)
                raise
        report = _read_report(status.fileno())
    return _result(report, reason, stdout.decode(errors="replace"), stderr.decode(errors="replace"),
                   time.monotonic() - start)


def _start(workdir: str, limits: SandboxLimits, stdin: str, status_w: int) -> subprocess.Popen:
    """Start the supervisor. Closes our copy of ``status_w``, whatever happens: the report's EOF."""
    uid = _UID_BASE + next(_uid_offsets) % _UID_SPAN
    config = {"status_fd": status_w, "workdir": workdir, "files_dir": os.path.join(workdir, "files"),
              "root_dir": os.path.join(workdir, "root"), "program": _PROGRAM, "uid": uid, "gid": uid,
              "limits": asdict(limits), "tmpfs_mb": max(64, 4 * limits.file_size_mb),
              "namespaces": _use_namespaces}
    try:
        stdin_fd = _memfile(stdin.encode(errors="surrogatepass"))
        try:  # start_new_session: the supervisor leads its own group, the last-resort kill target
            return subprocess.Popen([_PYTHON, "-I", "-S", _SUPERVISOR, json.dumps(config)],
                                    stdin=stdin_fd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    pass_fds=(status_w,), env={}, start_new_session=True)
        finally:
            os.close(stdin_fd)
    finally:
        os.close(status_w)


def _memfile(data: bytes) -> int:
    """stdin as an in-memory file: no writer thread, no deadlock, nothing on disk."""
    fd = os.memfd_create("stdin", os.MFD_CLOEXEC)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _collect(proc: subprocess.Popen, limits: SandboxLimits, deadline: float):
    """Read stdout and stderr together (no pipe fills up and blocks the program) until both close,
    the deadline passes, or one exceeds ``output_bytes``; then make sure everything is dead."""
    buffers = {proc.stdout.fileno(): bytearray(), proc.stderr.fileno(): bytearray()}
    reason = None
    with selectors.DefaultSelector() as selector:
        for fd in buffers:
            selector.register(fd, selectors.EVENT_READ)
        while selector.get_map() and reason is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                reason = "timeout"
                break
            for key, _ in selector.select(remaining):
                data = os.read(key.fd, 65536)
                if not data:
                    selector.unregister(key.fd)
                    continue
                buffer = buffers[key.fd]
                buffer += data
                if len(buffer) > limits.output_bytes:
                    del buffer[limits.output_bytes:]
                    reason = "output_limit"
    if reason is None:  # the program may have closed its pipes and kept running
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            reason = "timeout"
    if reason is not None:
        _stop(proc)
    return bytes(buffers[proc.stdout.fileno()]), bytes(buffers[proc.stderr.fileno()]), reason


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM asks the supervisor to kill the tree; it returns once the tree is gone."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=_STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        try:  # init dies with the supervisor too (PR_SET_PDEATHSIG)
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def _read_report(fd: int) -> dict:
    """Parse the supervisor's status lines. Its writers are all gone by now, so never block."""
    os.set_blocking(fd, False)
    data = b""
    try:
        while chunk := os.read(fd, 65536):
            data += chunk
    except BlockingIOError:
        pass
    report: dict = {"errors": []}
    for line in data.decode(errors="replace").splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "ready":
            report["ready"] = json.loads(rest)
        elif kind == "error":
            report["errors"].append(rest)
        elif kind == "exit":
            report["exit"] = int(rest)
    return report


def _result(report: dict, reason: str | None, stdout: str, stderr: str, duration: float) -> ExecutionResult:
    ready = report.get("ready") or {}
    layers = {name: bool(ready.get(name)) for name in LAYERS} if ready else {}
    _warn_if_degraded(layers, ready.get("notes", []))
    if report["errors"]:
        status, returncode = "sandbox_error", None
        stderr = "sandbox: " + "; ".join(report["errors"]) + ("\n" + stderr if stderr else "")
    elif reason is not None:
        status, returncode = reason, None
    elif "exit" not in report:
        status, returncode = "sandbox_error", None
        stderr = "sandbox: the supervisor ended without reporting the program's exit\n" + stderr
    else:
        returncode = os.waitstatus_to_exitcode(report["exit"])
        status = "ok" if returncode == 0 else "error" if returncode > 0 else "killed"
    return ExecutionResult(status, returncode, stdout, stderr, duration, layers)


def _sandbox_error(reason: str, start: float) -> ExecutionResult:
    return ExecutionResult("sandbox_error", None, "", f"sandbox: {reason}", time.monotonic() - start)


def _warn_if_degraded(layers: dict[str, bool], notes: list[str]) -> None:
    global _warned
    missing = [name for name, active in layers.items() if not active]
    if missing and not _warned:
        _warned = True
        log.warning("sandbox: running without %s (%s); see adapt/sandbox/__init__.py for what that "
                    "leaves unblocked", ", ".join(missing), "; ".join(notes) or "no reason given")
