"""The ``byline`` command as a user runs it: real subprocesses of the installed script against a small real index.

Each issue-16 CLI item has a test here: subcommand usage on a wrong option, ``--version``, ``-k``/``--k``
everywhere, one clear line on a busy port, Ctrl-C in chat, the start-up indicator, and the short answer first.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pty
import select
import signal
import socket
import subprocess
import sys
import time
from datetime import date
from importlib.metadata import version
from pathlib import Path

import pytest
from conftest import ROOT, SEED_QUESTION

BYLINE = Path(sys.executable).parent / "byline"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
# Start-up is now often quicker than the indicator's half-second delay: the loading tests show it at once.
SHOW_LOADING = {**ENV, "BYLINE_LOADING_DELAY_S": "0"}


def byline(
    *args: str, stdin: str | None = None, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    if not BYLINE.exists():
        pytest.skip(f"{BYLINE} is not installed (make install)")
    return subprocess.run(
        [str(BYLINE), *args], input=stdin, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env or ENV
    )


# ------------------------------------------------------------------------------------------ arguments


@pytest.mark.parametrize("command", ["ask", "chat", "eval", "serve"])
def test_a_wrong_option_prints_the_subcommands_usage(command: str) -> None:
    result = byline(command, "--wrong", "hi")
    assert result.returncode == 2
    assert result.stderr.startswith(f"usage: byline {command} "), result.stderr
    assert f"byline {command}: error: unrecognized arguments: --wrong" in result.stderr
    assert "COMMAND" not in result.stderr  # not the top-level usage


def test_version() -> None:
    result = byline("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"byline {version('byline')}"


@pytest.mark.parametrize("spelling", ["-k", "--k"])
def test_k_is_accepted_both_ways_by_ask_chat_and_eval(spelling: str) -> None:
    from eval.cli import add_arguments as eval_arguments
    from service.cli import ask_add_arguments, chat_add_arguments

    for add, rest in ((ask_add_arguments, ["q"]), (chat_add_arguments, []), (eval_arguments, ["questions.jsonl"])):
        parser = argparse.ArgumentParser(exit_on_error=False)
        add(parser)
        assert parser.parse_args([spelling, "3", *rest]).k == 3


@pytest.mark.parametrize("spelling", ["-k", "--k"])
def test_ask_retrieves_k_passages_with_either_spelling(seed_index: Path, spelling: str) -> None:
    result = byline("ask", "--index", str(seed_index), "--json", spelling, "3", SEED_QUESTION)
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)["passages"]) == 3


def test_eval_takes_dash_k(seed_index: Path, tmp_path: Path) -> None:
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"id": "one", "turns": [{"question": SEED_QUESTION}]}) + "\n")
    result = byline("eval", str(questions), "--index", str(seed_index), "-k", "4", "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "out" / "report.json").read_text())["k"] == 4


@pytest.mark.parametrize("command", ["ask", "chat"])
def test_an_opt_in_reader_without_its_model_is_one_clear_line(seed_index: Path, tmp_path: Path, command: str) -> None:
    env = {**ENV, "BYLINE_READER": "distilled", "BYLINE_READER_DIR": str(tmp_path)}
    args = (
        ["ask", "--index", str(seed_index), SEED_QUESTION] if command == "ask" else ["chat", "--index", str(seed_index)]
    )
    result = byline(*args, stdin="", env=env)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1] == f"byline {command}: no distilled judge in {tmp_path / 'distilled'}: build it with " + (
        '`make reader-distilled` (hours: README "Reading")'
    ), result.stderr
    assert "Traceback" not in result.stderr


# ------------------------------------------------------------------------------------------ serve


def test_serve_on_a_busy_port_prints_one_clear_line(seed_index: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = byline("serve", "--index", str(seed_index), "--port", str(port), timeout=60)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"byline serve: port {port} on 127.0.0.1 is already in use")
    assert "Byline on" not in result.stderr and "Errno" not in result.stderr


def test_port_problem_is_none_for_a_free_port() -> None:
    from service.cli import port_problem

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert port_problem("127.0.0.1", port) is None
    assert "cannot listen" in (port_problem("no-such-host.invalid", port) or "")


# ------------------------------------------------------------------------------------------ chat on a terminal


class Terminal:
    """``byline chat`` on a pseudo-terminal that is its controlling terminal, so Ctrl-C is a real SIGINT."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        if not BYLINE.exists():
            pytest.skip(f"{BYLINE} is not installed (make install)")
        self.master, slave = pty.openpty()
        self.process = subprocess.Popen(
            [str(BYLINE), *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=ROOT,
            env=env or ENV,
            preexec_fn=self._controlling_terminal,  # noqa: PLW1509 - single-threaded at this point
        )
        os.close(slave)
        self.output = b""

    @staticmethod
    def _controlling_terminal() -> None:
        import fcntl
        import termios

        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    def read_until(self, text: str, timeout: float = 90) -> str:
        deadline = time.monotonic() + timeout
        while text.encode() not in self.output:
            if time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} in: {self.output.decode(errors='replace')[-800:]}")
            ready, _, _ = select.select([self.master], [], [], 0.1)
            if ready:
                try:
                    self.output += os.read(self.master, 65536)
                except OSError:  # the process is gone
                    break
        return self.output.decode(errors="replace")

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def finish(self, timeout: float = 30) -> int:
        code = self.process.wait(timeout=timeout)
        while True:
            ready, _, _ = select.select([self.master], [], [], 0.2)
            if not ready:
                break
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                break
            if not chunk:
                break
            self.output += chunk
        os.close(self.master)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)


@pytest.mark.parametrize("key", [b"\x03", b"\x04"], ids=["ctrl-c", "ctrl-d"])
def test_ctrl_c_in_chat_exits_like_ctrl_d_with_the_conversation_id(seed_index: Path, key: bytes) -> None:
    terminal = Terminal("chat", "--index", str(seed_index))
    try:
        terminal.read_until("\n> ")
        terminal.send(SEED_QUESTION.encode() + b"\n")
        terminal.read_until("index v")  # the answer's last line
        terminal.read_until("\n> ")
        terminal.send(key)
        code = terminal.finish()
    finally:
        terminal.kill()
    text = terminal.output.decode(errors="replace")
    assert code == 0, text[-500:]
    assert "(conversation " in text.rsplit("\n> ", 1)[-1], text[-500:]
    assert "Traceback" not in text and "KeyboardInterrupt" not in text


def test_ctrl_c_while_answering_still_prints_the_conversation_id(seed_index: Path) -> None:
    """SIGINT after a first answer, while the next question is being answered: the id of the conversation so far."""
    terminal = Terminal("chat", "--index", str(seed_index))
    try:
        terminal.read_until("\n> ")
        terminal.send(SEED_QUESTION.encode() + b"\n")
        terminal.read_until("index v")
        terminal.read_until("\n> ")
        terminal.send(b"How did Moscow respond to him?\n")
        terminal.process.send_signal(signal.SIGINT)
        code = terminal.finish()
    finally:
        terminal.kill()
    text = terminal.output.decode(errors="replace")
    assert code == 0 and "(conversation " in text and "Traceback" not in text, text[-500:]


# ------------------------------------------------------------------------------------------ start-up indicator


def test_loading_shows_one_line_on_stderr_only_when_start_up_is_slow() -> None:
    from service.loading import Loading

    quick = io.StringIO()
    with Loading("loading the index…", stream=quick, delay=0.5) as indicator:
        pass
    assert quick.getvalue() == "" and not indicator.shown

    slow = io.StringIO()
    with Loading("loading the index…", stream=slow, delay=0.05) as indicator:
        time.sleep(0.3)
    assert slow.getvalue() == "loading the index…\n" and indicator.shown


def test_loading_spins_on_a_terminal_and_erases_itself() -> None:
    from service.loading import FRAMES, Loading

    master, slave = pty.openpty()
    with open(slave, "w", encoding="utf-8", closefd=True) as stream:
        assert stream.isatty()
        with Loading("loading…", stream=stream, delay=0.05):
            time.sleep(0.5)
    written = b""
    while select.select([master], [], [], 0.1)[0]:
        try:
            written += os.read(master, 65536)
        except OSError:  # EIO: the terminal's other end is closed and everything was read
            break
    os.close(master)
    text = written.decode()
    frames = [frame for frame in FRAMES if f"\r{frame} loading…" in text]
    assert len(frames) >= 3, text  # it turned
    assert text.endswith("\r\x1b[K")  # and left a clean line for the answer


@pytest.mark.parametrize("command", ["ask", "eval"])
def test_ask_and_eval_say_they_are_loading_on_stderr(seed_index: Path, tmp_path: Path, command: str) -> None:
    """A start-up slower than the delay (0 here) shows one "loading" line on stderr and nothing on stdout."""
    if command == "ask":
        result = byline("ask", "--index", str(seed_index), SEED_QUESTION, env=SHOW_LOADING)
    else:
        questions = tmp_path / "q.jsonl"
        questions.write_text(json.dumps({"id": "one", "turns": [{"question": SEED_QUESTION}]}) + "\n")
        out = str(tmp_path)
        result = byline(
            "eval", str(questions), "--index", str(seed_index), "--no-progress", "--out", out, env=SHOW_LOADING
        )
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines()[0] == "loading the index…"
    assert "loading" not in result.stdout


def test_chat_says_it_is_loading_before_its_prompt(seed_index: Path) -> None:
    terminal = Terminal("chat", "--index", str(seed_index), env=SHOW_LOADING)
    try:
        text = terminal.read_until("\n> ")
        terminal.send(b"\x04")
        terminal.finish()
    finally:
        terminal.kill()
    assert "loading the index…" in text
    assert text.index("loading the index…") < text.index("Ask a question")
    assert "\x1b[K" in text.split("Ask a question")[0]  # the spinner was erased before the help line


# ------------------------------------------------------------------------------------------ short answer first


def _with_short_answer(seed_index: Path, encoder):  # noqa: ANN001, ANN202 - fixtures
    """A real answer with a short answer built by hand: the first few words of its first cited quote."""
    from service.answering.engine import Engine
    from service.answering.schemas import AskRequest, ShortAnswer

    answer = Engine(index_root=seed_index, encoder=encoder).ask(AskRequest(question=SEED_QUESTION, as_of=date.today()))
    source = answer.sources[0]
    quote = source.quotes[0]
    words = " ".join(quote.text.split()[:4])
    short = ShortAnswer(
        text=words,
        source=source.n,
        article_id=source.article_id,
        start=quote.start,
        end=quote.start + len(words),
        kind="thing",
    )
    return answer.model_copy(update={"short_answer": short})


def test_the_short_answer_is_the_first_line_in_ask_chat_and_openai_text(seed_index: Path, encoder) -> None:  # noqa: ANN001
    from service.cli import print_answer
    from service.web.openai_compat import completion_text

    answer = _with_short_answer(seed_index, encoder)
    short = answer.short_answer
    out = io.StringIO()
    print_answer(answer, out)
    assert out.getvalue().splitlines()[0] == f"Answer: {short.text} [{short.source}]"
    assert completion_text(answer).splitlines()[0] == f"Answer: {short.text} [{short.source}]"
    # without one, the answer text comes first as before
    plain = answer.model_copy(update={"short_answer": None})
    out = io.StringIO()
    print_answer(plain, out)
    assert not out.getvalue().startswith("Answer:")
    assert not completion_text(plain).startswith("Answer:")
