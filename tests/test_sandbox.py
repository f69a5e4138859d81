"""The sandbox against adversarial programs: each must be contained, and the caller stay healthy."""

from __future__ import annotations

import dataclasses

import os
import socket
import stat
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from adapt import sandbox
from adapt.sandbox import SandboxLimits, execute, isolation

QUICK = SandboxLimits(timeout_s=2.0)
SLACK_S = 2.0  # a timed-out execution must end within timeout_s + this

# Prints its uid, then starts a grandchild that leaves the process group and session (setsid) and
# sleeps as a process whose command line carries a token the test can look for on the host.
ESCAPEE = """
import os, sys, time
print(os.getuid(), flush=True)
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        print("escapee", flush=True)
        os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(600)", {token!r}])
    os._exit(0)
time.sleep(0.5)
"""


@pytest.fixture(autouse=True)
def still_healthy():
    """After every adversarial program, the sandbox still runs a plain one."""
    yield
    result = execute("print('still here')")
    assert result.ok and result.stdout == "still here\n", result


def needs(layer: str):
    if not isolation()[layer]:
        pytest.skip(f"this machine gives no {layer} (see isolation() and adapt/sandbox/__init__.py)")


def assert_no_process_of_sandbox_uid(result):
    """When the program had a uid of its own (its first line of output), nothing runs as it."""
    if result.isolation["unprivileged_uid"]:
        uid = int(result.stdout.split()[0])
        assert [p for p in os.listdir("/proc") if p.isdigit() and _owner(p) == uid] == []


def processes_with_argument(text: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if text.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(int(pid))
        except OSError:
            pass
    return found


def _owner(pid: str) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


def test_print_runs_fast_in_the_same_interpreter_in_isolated_mode():
    result = execute("import sys\nprint(sys.executable, sys.flags.isolated)")
    assert result.ok and result.returncode == 0, result
    assert result.stdout.split() == [os.path.realpath(sys.executable), "1"]
    assert result.duration_s < 1.0


def test_exception_and_exit_code_are_errors():
    result = execute("raise ValueError('boom')")
    assert (result.status, result.returncode) == ("error", 1)
    assert "ValueError: boom" in result.stderr
    result = execute("import sys\nsys.exit(3)")
    assert (result.status, result.returncode, result.ok) == ("error", 3, False)


@pytest.mark.parametrize("code, signal_number", [("import os\nos.abort()", 6),
                                                 ("import ctypes\nctypes.string_at(0)", 11)])
def test_abort_and_segfault_are_killed(code, signal_number):
    result = execute(code)
    assert (result.status, result.returncode) == ("killed", -signal_number)


def test_busy_loop_times_out():
    result = execute("while True:\n    pass", limits=SandboxLimits(timeout_s=1.0))
    assert (result.status, result.returncode) == ("timeout", None)
    assert 1.0 <= result.duration_s < 1.0 + SLACK_S


def test_program_that_closes_its_output_and_sleeps_times_out():
    code = "import os, time\nos.close(1)\nos.close(2)\ntime.sleep(60)"
    result = execute(code, limits=SandboxLimits(timeout_s=1.0))
    assert result.status == "timeout" and result.duration_s < 1.0 + SLACK_S


def test_fork_bomb_is_contained_and_leaves_no_process():
    token = f"adapt-fork-bomb-{os.getpid()}"
    # Re-executes itself with the token as an argument, so every copy is findable on the host.
    code = f"""
import os, sys
if len(sys.argv) == 1:
    os.execv(sys.executable, [sys.executable, "-I", "main.py", {token!r}])
print(os.getuid(), flush=True)
while True:
    os.fork()
"""
    result = execute(code, limits=QUICK)
    assert result.status in {"error", "timeout", "killed", "output_limit"}, result
    assert result.duration_s < QUICK.timeout_s + SLACK_S
    assert processes_with_argument(token) == []
    assert_no_process_of_sandbox_uid(result)


@pytest.mark.parametrize("then", ["", "while True:\n    pass\n"], ids=["program-exits", "program-hangs"])
def test_setsid_escapee_is_gone_when_execute_returns(then):
    token = f"adapt-escapee-{os.getpid()}-{len(then)}"
    result = execute(ESCAPEE.format(token=token) + then, limits=QUICK)
    assert "escapee" in result.stdout, result
    assert result.status == ("ok" if not then else "timeout")
    assert processes_with_argument(token) == []
    assert_no_process_of_sandbox_uid(result)


def test_memory_bomb_is_stopped():
    code = "blocks = []\nwhile True:\n    blocks.append(bytearray(10**7))"
    result = execute(code, limits=SandboxLimits(timeout_s=5.0, memory_mb=256))
    assert result.status in {"error", "killed"}, result
    assert result.status == "killed" or "MemoryError" in result.stderr


def test_endless_output_is_cut_and_killed():
    limits = SandboxLimits(timeout_s=5.0, output_bytes=10_000)
    result = execute("while True:\n    print('x' * 1000)", limits=limits)
    assert result.status == "output_limit"
    assert len(result.stdout) == 10_000
    assert result.duration_s < 2.0


def test_file_size_limit():
    code = "open('big.bin', 'wb').write(b'x' * (2 * 1024 * 1024))"
    result = execute(code, limits=SandboxLimits(file_size_mb=1))
    assert result.status == "error" and "File too large" in result.stderr


def test_cannot_read_files_outside_its_directory():
    needs("filesystem_view")
    outside = Path(tempfile.mkdtemp(prefix="adapt-test-secret-"))
    try:
        outside.chmod(0o755)
        secret = outside / "secret.txt"
        secret.write_text("hunter2")
        secret.chmod(0o644)  # readable by every user on the host
        readme = Path(__file__).resolve().parents[1] / "README.md"
        for path in (secret, readme, Path("/etc/hostname")):
            result = execute(f"print(open({str(path)!r}).read())")
            assert result.status == "error" and "FileNotFoundError" in result.stderr, (path, result)
        result = execute("import os\nprint(sorted(os.listdir('/')), os.listdir('/root'))")
        assert "work" not in result.stdout and "home" not in result.stdout
    finally:
        secret.unlink()
        outside.rmdir()


def test_writes_only_its_own_directory_and_tmp():
    needs("filesystem_view")
    code = f"""
import os
open('mine.txt', 'w').write('ok')
open('/tmp/scratch', 'w').write('ok')
for path in ({sys.base_prefix!r} + '/x', '/usr/x', '/x'):
    try:
        open(path, 'w')
        print('wrote', path)
    except OSError:
        pass
"""
    result = execute(code)
    assert result.ok and "wrote" not in result.stdout, result


def test_no_network_even_to_a_listening_local_port():
    needs("no_network")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        code = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), 2)\nprint('connected')"
        result = execute(code)
    assert result.status == "error" and "connected" not in result.stdout, result


def test_environment_is_minimal_and_secrets_do_not_leak(monkeypatch):
    monkeypatch.setenv("ADAPT_TEST_SECRET", "hunter2")
    result = execute("import os\nprint(sorted(os.environ))\nprint(open('/proc/self/environ').read())")
    assert result.ok and "hunter2" not in result.stdout and "ADAPT_TEST_SECRET" not in result.stdout
    assert result.stdout.splitlines()[0] == "['HOME', 'LANG', 'PATH', 'TMPDIR']"


def test_working_directory_is_fresh_and_removed(monkeypatch, tmp_path):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    code = "import os\nprint(sorted(os.listdir('.')))\nopen('left-behind.txt', 'w').write('x')"
    first, second = execute(code), execute(code)
    assert first.stdout == second.stdout == "['main.py']\n"
    assert list(tmp_path.iterdir()) == []


def test_stdin_and_files():
    result = execute("import sys\nprint(sys.stdin.read()[::-1], open('data/in.txt').read())",
                     stdin="abc", files={"data/in.txt": "hello"})
    assert result.ok and result.stdout == "cba hello\n"
    with pytest.raises(ValueError):
        execute("", files={"../escape.txt": "x"})


def test_concurrent_executions_from_a_thread_pool():
    code = "import os, time\ntime.sleep(0.2)\nprint(os.getuid())"
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: execute(code), range(8)))
    assert all(r.ok for r in results), results
    if results[0].isolation["unprivileged_uid"]:  # each gets a uid of its own
        assert len({r.stdout for r in results}) == 8


def test_sandbox_failure_is_reported_not_raised(monkeypatch):
    with monkeypatch.context() as patch:  # undone before the still_healthy check
        patch.setattr(sandbox, "_SUPERVISOR", "/nonexistent/_supervisor.py")
        result = execute("print(1)")
    assert result.status == "sandbox_error" and "sandbox" in result.stderr


def test_isolation_reports_every_layer_on_this_machine():
    if os.geteuid() != 0:
        pytest.skip("not root: the program cannot get its own uid (and may lack namespaces)")
    assert isolation() == {"namespaces": True, "unprivileged_uid": True, "filesystem_view": True,
                           "no_network": True}


def test_fallback_without_namespaces_still_kills_escapees(monkeypatch):
    """Without namespaces the sandbox refuses to run unless told to; told to, the supervisor's
    subreaper sweep must still catch the setsid escapee."""
    python = next((p for p in (os.path.realpath(sys.executable), "/usr/bin/python3")
                   if os.path.exists(p) and (os.geteuid() != 0 or _reachable_by_others(p))), None)
    if python is None:
        pytest.skip("as root without namespaces the interpreter must be reachable by other uids; none is")
    token = f"adapt-fallback-escapee-{os.getpid()}"
    with monkeypatch.context() as patch:
        patch.setattr(sandbox, "_use_namespaces", False)
        patch.setattr(sandbox, "_PYTHON", python)
        refused = execute("print(1)", limits=QUICK)
        result = execute(ESCAPEE.format(token=token) + "while True:\n    pass\n",
                         limits=dataclasses.replace(QUICK, allow_weak_isolation=True))
    assert refused.status == "sandbox_error" and "allow_weak_isolation" in refused.stderr, refused
    assert result.status == "timeout" and "escapee" in result.stdout, result
    assert result.isolation["namespaces"] is False
    assert processes_with_argument(token) == []


def _reachable_by_others(path: str) -> bool:
    """Whether every directory above ``path`` is searchable, and the file executable, by any user."""
    parts = Path(path).parents
    return all(os.stat(p).st_mode & stat.S_IXOTH for p in [Path(path), *parts])
