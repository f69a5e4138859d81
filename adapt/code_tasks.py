"""Code tasks in HumanEval or MBPP shape, scored by running their tests in the sandbox.

A task file is JSON lines, one task a line, in either shape (docs/sandbox.md has examples):

- HumanEval: ``task_id``, ``prompt`` (code the completion continues), ``entry_point``, ``test`` (a
  ``def check(candidate):`` block, with optional module-level code before it), optional
  ``canonical_solution``.
- MBPP: ``task_id``, ``prompt`` or ``text`` (a description; the completion is a whole program),
  ``test_list`` (assert statements), optional ``test_setup_code``, ``code`` (the reference
  solution) and ``entry_point`` (otherwise the first non-builtin function the asserts call).

Both become a ``CodeTask`` whose tests are separate cases, for partial credit: each statement of
``check``'s body that contains an ``assert`` is a case, run after the body's other statements that
precede it (its setup); each entry of ``test_list`` is a case.

Scoring forks a harness that holds the model's code only as string literals. The parent never runs
model code: it alone reads the random token (stdin, after the fork) and writes the result line that
``score`` trusts. The child defines the solution with private references to what it uses after;
each case runs in a grandchild and passes only if it runs to its end (no exception, exit, signal).

Known gaps (each needs code written against this harness): model code shares a process with the
reporting of its own cases, so it can pass cases with objects whose ``__eq__`` is always true, by
patching modules the tests use (``math.isclose``) or prompt helpers they call (HumanEval's
``poly``), or by finding the harness's pipes (``sys._getframe``, ``gc``, trying descriptors) and
writing results itself. The token's secrecy rests on the sandbox: the parent is non-dumpable, so
other processes of its uid cannot read its memory or ``/proc/<pid>/fd``; but the supervisor holds
stdin too, and where the program runs as the caller (not root, no namespaces) it can read that.
"""

from __future__ import annotations

import ast
import builtins
import json
import math
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from adapt.errors import AdaptError
from adapt.sandbox import SandboxLimits, execute


@dataclass
class CodeTask:
    """One task, normalised from either shape."""

    task_id: str
    prompt: str
    """What the model is given: code to continue (HumanEval) or a description (MBPP)."""
    entry_point: str
    """The function under test; the cases call it as ``candidate`` (or by its name)."""
    tests: list[str]
    """The test cases, each self-contained Python: its setup statements, then its assert(s)."""
    preamble: str = ""
    """Module-level test code run once before the cases (imports, helpers, MBPP's test_setup_code)."""
    canonical_solution: str | None = None
    """A reference completion, in the same form as a model's; it should score 1.0."""
    completes_prompt: bool = True
    """True when a completion continues ``prompt`` (HumanEval); False when it is a whole program."""


@dataclass
class TestScore:
    """The outcome of one (task, completion): how many test cases passed, and the sandbox status."""

    __test__ = False  # a dataclass, not a pytest test class

    passed: int
    total: int
    status: str
    """The sandbox's status: "ok" when the program ran to its end (whatever the cases did)."""

    @property
    def fraction(self) -> float:
        """passed / total: 0.0 when the program crashed, hung, flooded output or hit a limit."""
        return self.passed / self.total if self.total else 0.0


def builtin_tasks_path() -> Path:
    """About twenty small Python tasks written for adapt, in HumanEval shape, with reference solutions."""
    return Path(__file__).parent / "resources" / "code_tasks.jsonl"


def load_tasks(path: str | Path) -> list[CodeTask]:
    """Read a task file; an ``AdaptError`` names the file, line and field of any bad input."""
    path = Path(path)
    if not path.is_file():
        raise AdaptError("task file not found", file=str(path),
                         fix="give a .jsonl file of HumanEval- or MBPP-shaped tasks")
    tasks, first_line = [], {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = {"file": str(path), "line": number}
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise AdaptError(f"not valid JSON: {exc.msg}", **where, fix="one JSON object per line") from None
        if not isinstance(row, dict):
            raise AdaptError("a task must be a JSON object", **where)
        task = _mbpp_task(row, where) if "test_list" in row else _humaneval_task(row, where)
        if task.task_id in first_line:
            raise AdaptError(f"duplicate task_id {task.task_id!r} (first on line {first_line[task.task_id]})",
                             **where, key="task_id")
        first_line[task.task_id] = number
        tasks.append(task)
    if not tasks:
        raise AdaptError("the task file has no tasks", file=str(path))
    return tasks


def score(task: CodeTask, completion: str, limits: SandboxLimits = SandboxLimits()) -> TestScore:
    """Run ``completion`` against the task's test cases in one sandboxed process."""
    token = secrets.token_hex(16)
    result = execute(build_program(task, completion), limits=limits, stdin=token + "\n")
    passed = _count_passed(result.stdout, token, len(task.tests)) if result.ok else 0
    return TestScore(passed=passed, total=len(task.tests), status=result.status)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from ``n`` samples of which ``c`` are correct (Chen et al. 2021, "Evaluating
    Large Language Models Trained on Code", eq. 1): 1 - C(n-c, k) / C(n, k), computed as
    1 - prod_{i=n-c+1..n} (1 - k/i), which never forms the huge binomials."""
    if not (0 <= c <= n and 1 <= k <= n):
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0  # every draw of k samples contains a correct one
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


# The program's harness (see the module docstring); model code may rebind builtins in its process.
_HARNESS = '''
import builtins, os, sys, traceback, types

def __adapt_main(solution, preamble, cases, entry_point):
    try:  # PR_SET_DUMPABLE 0: the model's processes (our uid) cannot read our /proc/<pid>/fd or mem
        __import__("ctypes").CDLL(None).prctl(4, 0, 0, 0, 0)
    except Exception:
        pass
    results, report = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            os.close(results)
            __adapt_solution(solution, preamble, cases, entry_point, report)
        finally:
            os._exit(1)
    os.close(report)
    token = os.read(0, 4096).strip()  # only after the fork: the child's memory never holds it
    os.close(0)
    bits = os.read(results, len(cases) + 1)  # one write, at the child's end
    os.close(results)
    code = os.waitstatus_to_exitcode(os.waitpid(child, 0)[1])
    if code == 0 and len(bits) == len(cases) and not bits.strip(b"01"):
        os.write(1, b"\\n" + token + b" " + bits + b"\\n")
    if code < 0:  # die as the child did (say, past the CPU limit: "killed")
        os.kill(os.getpid(), -code)
    os._exit(code if code >= 0 else 1)

def __adapt_solution(solution, preamble, cases, entry_point, report):
    exec_, compile_, fork, pipe, read, write, close, waitpid, exit_ = (
        exec, compile, os.fork, os.pipe, os.read, os.write, os.close, os.waitpid, os._exit)
    SystemExit_, BaseException_, print_exc = SystemExit, BaseException, traceback.print_exc
    test_builtins = dict(vars(builtins))
    codes = [compile_(case, f"<test case {i}>", "exec", dont_inherit=True) for i, case in enumerate(cases)]
    close(0)
    os.open(os.devnull, os.O_RDONLY)  # fd 0 again: input() sees end of file
    sys.stdout.reconfigure(line_buffering=True)  # we leave by os._exit, which flushes nothing
    sys.modules["__main__"] = module = types.ModuleType("__main__")  # the solution's, as in a script
    program = module.__dict__
    try:
        exec_(compile_(solution, "<solution>", "exec", dont_inherit=True), program)
        exec_(compile_(preamble, "<test preamble>", "exec", dont_inherit=True), program)
    except SystemExit_ as exc:  # no results either way; exit(0) keeps the status "ok", as before
        exit_(0 if exc.code is None or exc.code == 0 else 1)
    except BaseException_:
        print_exc()
        exit_(1)
    # Pristine builtins: a solution's `abs = ...` or `builtins.len = ...` is not what its tests call.
    names = {name: value for name, value in program.items() if name not in test_builtins}
    names["__builtins__"] = test_builtins
    bits = b""
    for code in codes:
        passed_r, passed_w = pipe()
        pid = fork()
        if pid == 0:
            try:
                close(passed_r)
                close(report)
                names["candidate"] = names[entry_point] = program[entry_point]
                exec_(code, names)  # this process's own copy: the next case starts afresh
                write(passed_w, b"1")  # reached only when the case ran to its end
            finally:
                exit_(0)
        close(passed_w)
        passed = read(passed_r, 2) == b"1"
        close(passed_r)
        bits += b"1" if waitpid(pid, 0)[1] == 0 and passed else b"0"
    write(report, bits)
    exit_(0)

'''


def build_program(task: CodeTask, completion: str) -> str:
    """The program run in the sandbox: the harness, called with the solution (see ``_solution``),
    the test preamble and the cases, all as string literals."""
    arguments = (_solution(task, completion), task.preamble, task.tests, task.entry_point)
    return _HARNESS + f"__adapt_main{arguments!r}\n"


def _solution(task: CodeTask, completion: str) -> str:
    if not task.completes_prompt:
        return completion
    if re.search(rf"^\s*def\s+{re.escape(task.entry_point)}\s*\(", completion, re.MULTILINE):
        # A whole function: use it instead of the prompt, but keep the prompt's imports
        # (``from typing import List``), which such completions often leave out.
        imports = [line for line in task.prompt.splitlines() if line.startswith(("import ", "from "))]
        return "\n".join(imports + [completion])
    return task.prompt + completion


def _count_passed(stdout: str, token: str, total: int) -> int:
    for line in reversed(stdout.splitlines()):
        marker, _, bits = line.partition(" ")
        if marker == token and len(bits) == total:
            return bits.count("1")
    return 0  # no result line: the program exited before the harness ran


def _humaneval_task(row: dict, where: dict) -> CodeTask:
    prompt, entry_point, test = (_text(row, key, where) for key in ("prompt", "entry_point", "test"))
    preamble, tests = _split_check(test, where)
    return CodeTask(task_id=_task_id(row, where), prompt=prompt, entry_point=entry_point, tests=tests,
                    preamble=preamble, canonical_solution=_optional_text(row, "canonical_solution", where))


def _split_check(test: str, where: dict) -> tuple[str, list[str]]:
    """HumanEval's ``test``: module-level code (the preamble) and ``check``'s body, as cases."""
    tree = _parse(test, where, "test")
    check = next((node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "check"),
                 None)
    if check is None or not check.args.args:
        raise AdaptError("has no `def check(candidate):`", **where, key="test")
    param = check.args.args[0].arg
    setup = [] if param == "candidate" else [f"{param} = candidate"]
    tests = []
    for statement in check.body:
        source = ast.unparse(statement)
        if any(isinstance(node, ast.Assert) for node in ast.walk(statement)):
            tests.append("\n".join(setup + [source]))
        else:
            setup.append(source)
    if not tests:
        raise AdaptError("check() has no assert", **where, key="test")
    preamble = "\n".join(ast.unparse(node) for node in tree.body if node is not check)
    return preamble, tests


def _mbpp_task(row: dict, where: dict) -> CodeTask:
    prompt = _text(row, "prompt" if "prompt" in row else "text", where)
    tests = row["test_list"]
    if not (isinstance(tests, list) and tests and all(isinstance(t, str) for t in tests)):
        raise AdaptError("must be a non-empty list of assert statements", **where, key="test_list")
    trees = [_parse(test, where, f"test_list[{i}]") for i, test in enumerate(tests)]
    preamble = _optional_text(row, "test_setup_code", where) or ""
    _parse(preamble, where, "test_setup_code")
    entry_point = _optional_text(row, "entry_point", where) or _called_function(trees, where)
    # MBPP's own prompt (Austin et al. 2021, §2.1) shows the tests: they name the function to write.
    prompt = f"{prompt}\nYour code should pass these tests:\n\n" + "\n".join(tests) + "\n"
    return CodeTask(task_id=_task_id(row, where), prompt=prompt, entry_point=entry_point, tests=tests,
                    preamble=preamble, canonical_solution=_optional_text(row, "code", where),
                    completes_prompt=False)


def _called_function(trees: list[ast.Module], where: dict) -> str:
    """MBPP rows rarely name their entry point: take the first non-builtin function the asserts call."""
    for tree in trees:
        calls = sorted((node.col_offset, node.func.id) for node in ast.walk(tree)
                       if isinstance(node, ast.Call) and isinstance(node.func, ast.Name))
        for _, name in calls:
            if not hasattr(builtins, name):
                return name
    raise AdaptError("cannot tell which function the tests call", **where, key="entry_point",
                     fix="add an entry_point field")


def _parse(source: str, where: dict, key: str) -> ast.Module:
    try:
        return ast.parse(source)
    except SyntaxError as exc:
        raise AdaptError(f"the tests do not parse: {exc.msg} (line {exc.lineno} of the field)",
                         **where, key=key) from None


def _task_id(row: dict, where: dict) -> str:
    if not isinstance(row.get("task_id"), (str, int)):
        raise AdaptError("missing field (a string or integer)" if "task_id" not in row
                         else "must be a string or an integer", **where, key="task_id")
    return str(row["task_id"])


def _text(row: dict, key: str, where: dict) -> str:
    if key not in row:
        raise AdaptError("missing field", **where, key=key)
    if not isinstance(row[key], str):
        raise AdaptError("must be a string", **where, key=key)
    return row[key]


def _optional_text(row: dict, key: str, where: dict) -> str | None:
    return _text(row, key, where) if row.get(key) is not None else None
