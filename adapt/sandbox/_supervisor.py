"""The sandbox's supervisor: ``python -I -S _supervisor.py CONFIG_JSON``, started by ``adapt.sandbox``.

It is a script on purpose: it imports only the standard library (it starts in ~10 ms, and never
imports adapt), and it sets up isolation with fork/unshare/mount, which the caller's process, with
its threads, must not do itself.

    caller --Popen--> supervisor   (host pid namespace, its own session)
      supervisor: unshare(mount, pid, net, ipc, uts [, user])  --fork-->  init
      init (pid 1 of the new pid namespace): builds the filesystem view, pivot_root  --fork-->  program
      program: rlimits, drops to the sandbox uid, no_new_privs, execve(python -I main.py)

When init exits the kernel kills every other process of its pid namespace, and init's exit waits
for them: so once the supervisor has reaped init, nothing the program started is left. Without a
pid namespace the supervisor forks the program itself and, as a child subreaper, kills whatever
descendants are left (see ``kill_descendants``).

The supervisor reports to the caller on a private pipe (close-on-exec, so the program never holds
it), one line each: ``ready {layers}`` just before the execve, ``error MESSAGE`` if the sandbox
could not be set up, ``exit WAITSTATUS`` when the program has ended. SIGTERM from the caller (on
timeout or output flood) kills the whole tree.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import shutil
import signal
import sys

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 1, 36, 38
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41}  # no glibc wrapper

# What the program sees, read-only, besides its working directory, /tmp and /dev/shm (one tmpfs).
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
ETC_ENTRIES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime")
DEVICES = ("null", "zero", "full", "random", "urandom")
WORKDIR = "/sandbox"  # the program's working directory inside the filesystem view

libc = ctypes.CDLL(None, use_errno=True)
status_fd = -1
child_pid = 0
in_namespace = False


def check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def report(line: str) -> None:
    os.write(status_fd, (line.replace("\n", " ") + "\n").encode())


def main(config: dict) -> None:
    global status_fd, child_pid, in_namespace
    status_fd = config["status_fd"]
    os.set_inheritable(status_fd, False)  # pass_fds made it inheritable: the program must not get it
    # If the caller dies, SIGTERM: on_term kills the tree (the calling thread waits for us, so this
    # never fires early).
    check(libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0), "prctl(PR_SET_PDEATHSIG)")
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # applies to the forks below too
    # SIGTERM stays blocked until child_pid is set, so the handler always knows whom to kill.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    signal.signal(signal.SIGTERM, on_term)
    layers = enter_namespaces(config)
    in_namespace = layers["namespaces"]
    if in_namespace:
        child_pid = fork(lambda: init(config, layers))
    else:
        check(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), "prctl(PR_SET_CHILD_SUBREAPER)")
        prepare_host_workdir(config, layers)
        child_pid = fork(lambda: program(config, layers, config["files_dir"]))
        try:  # also done by the child: whichever runs first, the group exists before any kill
            os.setpgid(child_pid, child_pid)
        except OSError:
            pass
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    status = reap_until(child_pid)
    if not in_namespace:
        report(f"exit {status}")
        kill_descendants()


def on_term(signum, frame) -> None:
    """Kill the program and everything it started; ``main`` then reaps and returns. (With a pid
    namespace the child is init, whose death takes the whole namespace.)"""
    kills = (os.kill,) if in_namespace else (os.killpg, os.kill)
    for kill in kills:
        try:
            kill(child_pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def enter_namespaces(config: dict) -> dict:
    """Unshare mount, pid, net, ipc and uts namespaces: directly as root, inside a new user namespace
    otherwise. Returns which isolation layers are active.

    Root does not fall back to a user namespace: it maps one uid only, which would leave the program
    as the host's uid 0 (without capabilities, but still the owner of root's files). Without
    namespaces, root still runs the program as its own uid."""
    root = os.geteuid() == 0
    layers = {"namespaces": False, "unprivileged_uid": root, "filesystem_view": False,
              "no_network": False, "notes": []}
    if not config["namespaces"]:
        layers["notes"].append("namespaces disabled by the caller")
        return layers
    uid, gid = os.geteuid(), os.getegid()  # read now: in a new user namespace they are unmapped
    flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS
    if libc.unshare(flags | (0 if root else CLONE_NEWUSER)) != 0:
        layers["notes"].append(f"unshare: {os.strerror(ctypes.get_errno())}")
        return layers
    if not root:  # a failure here is fatal: this process is already in the new namespaces
        maps = (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1"))
        for name, text in maps:
            with open(f"/proc/self/{name}", "w") as f:
                f.write(text)
        layers["notes"].append("not root: the program keeps the caller's uid")
    layers.update(namespaces=True, no_network=True)
    return layers


def init(config: dict, layers: dict) -> None:
    """Pid 1 of the new pid namespace: build the view, start the program, reap, report."""
    check(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(PR_SET_PDEATHSIG)")
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    os.umask(0o022)
    cwd = config["files_dir"]
    try:
        build_view(config, layers)
        enter_view(config["root_dir"])
        layers["filesystem_view"], cwd = True, WORKDIR
    except ViewUnavailable as exc:
        layers["notes"].append(f"filesystem view: {exc.args[0]}")
        prepare_host_workdir(config, layers)
    pid = fork(lambda: program(config, layers, cwd))
    report(f"exit {reap_until(pid)}")


class ViewUnavailable(Exception):
    """The filesystem view could not be built; the host's filesystem is still the root, so the
    program can run without the view. Any other error while entering the view is fatal."""


def build_view(config: dict, layers: dict) -> None:
    """A read-only tmpfs root holding read-only binds of the system and the interpreter, a minimal
    /etc and /dev and a fresh /proc; the writable /sandbox, /tmp and /dev/shm are size-capped tmpfs."""
    root, uid, gid = config["root_dir"], config["uid"], config["gid"]
    try:
        check(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "make / private")
        mount_tmpfs(root, "size=1m,mode=755")
        for path in SYSTEM_DIRS + tuple(interpreter_dirs()):
            mirror(path, root)
        for name in ETC_ENTRIES:
            mirror(f"/etc/{name}", root)
        write_etc(root, uid, gid)
        for name in DEVICES:
            mirror(f"/dev/{name}", root, read_only=False)
        for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                             ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
            os.symlink(target, f"{root}/dev/{name}")
        for path, mode in ((WORKDIR, "755"), ("/tmp", "1777"), ("/dev/shm", "1777")):
            os.makedirs(root + path)
            mount_tmpfs(root + path, f"size={config['tmpfs_mb']}m,nr_inodes=16384,mode={mode}")
        shutil.copytree(config["files_dir"], root + WORKDIR, dirs_exist_ok=True)
        if layers["unprivileged_uid"]:
            chown_tree(root + WORKDIR, uid, gid)
        os.makedirs(root + "/proc")
        check(libc.mount(b"proc", f"{root}/proc".encode(), b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                         None), "mount /proc")
        # In a user namespace the program owns this tmpfs: read-only keeps it out all the same.
        check(libc.mount(None, root.encode(), None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, None),
              "make the root read-only")
    except OSError as exc:
        raise ViewUnavailable(str(exc)) from exc


def mount_tmpfs(path: str, options: str) -> None:
    check(libc.mount(b"tmpfs", path.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, options.encode()),
          f"mount a tmpfs on {path}")


def interpreter_dirs() -> list[str]:
    """The interpreter's install prefixes (e.g. ~/.pyenv/versions/3.11.7) not already under /usr."""
    dirs = {os.path.realpath(p) for p in (sys.base_prefix, sys.base_exec_prefix,
                                          os.path.dirname(os.path.dirname(sys.executable)))}
    system = tuple(os.path.realpath(d) for d in SYSTEM_DIRS)
    return sorted(d for d in dirs if not any(d == s or d.startswith(s + "/") for s in system))


def mirror(path: str, root: str, read_only: bool = True) -> None:
    """Recreate ``path`` under ``root``: a symlink as the same symlink, anything else as a bind mount."""
    if not os.path.lexists(path):
        return
    target = root + path
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if os.path.islink(path):
        os.symlink(os.readlink(path), target)
        return
    if os.path.isdir(path):
        os.makedirs(target, exist_ok=True)
    else:
        open(target, "w").close()
    check(libc.mount(path.encode(), target.encode(), None, MS_BIND, None), f"bind {path}")
    if read_only:
        # A bind mount ignores MS_RDONLY at first; it needs a remount, which must keep noexec if
        # the source has it (a user namespace locks it: EPERM). Atime flags are kept by default.
        flags = MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV
        flags |= os.statvfs(path).f_flag & os.ST_NOEXEC  # the same bit as MS_NOEXEC
        check(libc.mount(None, target.encode(), None, flags, None), f"read-only {path}")


def write_etc(root: str, uid: int, gid: int) -> None:
    # Only the sandbox's own user, so getpass/pwd work and no host account names leak in.
    os.makedirs(f"{root}/etc", exist_ok=True)
    with open(f"{root}/etc/passwd", "w") as f:
        f.write(f"root:x:0:0:root:/root:/usr/sbin/nologin\nsandbox:x:{uid}:{gid}::{WORKDIR}:/bin/sh\n")
    with open(f"{root}/etc/group", "w") as f:
        f.write(f"root:x:0:\nsandbox:x:{gid}:\n")


def enter_view(root: str) -> None:
    machine = os.uname().machine
    if machine not in SYS_PIVOT_ROOT:
        raise ViewUnavailable(f"pivot_root: unknown syscall number on {machine}")
    os.chdir(root)
    if libc.syscall(SYS_PIVOT_ROOT[machine], b".", b".") != 0:
        raise ViewUnavailable(f"pivot_root: {os.strerror(ctypes.get_errno())}")
    # The old root is now stacked on "/": detach it, or the host filesystem stays reachable.
    check(libc.umount2(b".", MNT_DETACH), "detach the old root")
    os.chdir("/")


def prepare_host_workdir(config: dict, layers: dict) -> None:
    """Without a view the program works in the host directory itself: hand it to the sandbox uid."""
    if layers["unprivileged_uid"]:
        os.chmod(config["workdir"], 0o711)
        chown_tree(config["files_dir"], config["uid"], config["gid"])


def chown_tree(path: str, uid: int, gid: int) -> None:
    for dirpath, _, filenames in os.walk(path):
        for name in [dirpath] + [os.path.join(dirpath, f) for f in filenames]:
            os.chown(name, uid, gid, follow_symlinks=False)


def program(config: dict, layers: dict, cwd: str) -> None:
    """Become the program: limits, the sandbox uid, no way back to privileges, then execve."""
    os.setpgid(0, 0)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    os.umask(0o022)
    os.chdir(cwd)
    limits = config["limits"]
    mb = 1024 * 1024
    for which, value in ((resource.RLIMIT_CPU, limits["cpu_s"]),
                         (resource.RLIMIT_AS, limits["memory_mb"] * mb),
                         (resource.RLIMIT_FSIZE, limits["file_size_mb"] * mb),
                         (resource.RLIMIT_NOFILE, limits["open_files"]),
                         (resource.RLIMIT_NPROC, limits["processes"])):
        resource.setrlimit(which, (value, value))
    if layers["unprivileged_uid"]:
        uid, gid = config["uid"], config["gid"]
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)  # drops every capability
    check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")  # no setuid binaries
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": cwd, "LANG": "C.UTF-8", "TMPDIR": cwd}
    report("ready " + json.dumps(layers))
    try:
        os.execve(sys.executable, [sys.executable, "-I", config["program"]], env)
    except PermissionError as exc:
        raise PermissionError(f"{exc} (without a filesystem view, the interpreter must be readable "
                              f"and executable by other users)") from None


def fork(child) -> int:
    """Fork; the child runs ``child`` (which ends in execve or reports) and never returns here."""
    pid = os.fork()
    if pid:
        return pid
    code = 0
    try:
        child()
    except BaseException as exc:  # a setup failure: the caller reports it as "sandbox_error"
        report(f"error {type(exc).__name__}: {exc}")
        code = 127
    finally:
        os._exit(code)


def reap_until(pid: int) -> int:
    """Reap children (orphans re-parent to us) until ``pid`` ends; return its wait status.

    ``pid`` is first waited for without reaping, and SIGTERM blocked before it is reaped: until
    then its pid cannot be reused, so ``on_term`` never kills a stranger that got the same pid."""
    while True:
        done = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOWAIT).si_pid
        if done == pid:
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        status = os.waitpid(done, 0)[1]
        if done == pid:
            return status


def kill_descendants() -> None:
    """Without a pid namespace: orphans re-parent to us (a child subreaper), so killing our children
    until none are left reaches every descendant, including those that left the group with setsid."""
    while True:
        children = children_of(os.getpid())
        if not children:
            return
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in children:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass


def children_of(parent: int) -> list[int]:
    children = []
    for name in os.listdir("/proc"):
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # not a process, or it has just ended
        if int(fields[1]) == parent:
            children.append(int(name))
    return children


if __name__ == "__main__":
    try:
        main(json.loads(sys.argv[1]))
    except Exception as exc:  # the caller turns this into "sandbox_error"
        if status_fd >= 0:
            report(f"error {type(exc).__name__}: {exc}")
        raise
