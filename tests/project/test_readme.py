"""The README's first experience, run as it is written.

The laptop path is the commands of the fenced ``sh`` blocks that follow a ``<!-- laptop-path -->`` line:
in README.md ("On your laptop") ``make train`` and ``make serve``, then, from another shell, the sample
digit and the curl call. app/README.md gives the same blocks, and under ``<!-- by-hand -->`` what the two
make targets run. These tests hold the two READMEs to each other, to the Makefile and to Pulumi.yaml's
defaults, and run the laptop path for real on loopback: trained on the CPU, served over HTTPS, asked,
and the answer must be the digit the sample is. And every relative link of the READMEs and docs/ leads to
a file and a heading that exist, since moving a section moves its anchor.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.app.helpers import free_port
from tools import harness

ROOT = harness.ROOT
READMES = ("README.md", "app/README.md")
LAPTOP_PATH = "<!-- laptop-path -->"
BY_HAND = "<!-- by-hand -->"
# The address the README's client calls: make serve's (MLAPP_PORT's default), swapped for the test's own port.
README_ADDRESS = "localhost:8080"
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def commands(block: str) -> list[str]:
    """One string per shell command of a block: backslash-continued lines joined, blank and comment lines
    dropped (a comment after a command stays: the shell ignores it)."""
    joined = re.sub(r"\\\n\s*", " ", block)
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def marked_blocks(path: Path, marker: str) -> list[list[str]]:
    """The commands of every fenced ``sh`` block that follows a ``marker`` line, in order."""
    text = path.read_text(encoding="utf-8")
    pattern = re.escape(marker) + r"[ \t]*\n\s*```sh\n(.*?)^```"
    return [commands(m[1]) for m in re.finditer(pattern, text, re.MULTILINE | re.DOTALL)]


def words(command: str) -> list[str]:
    return shlex.split(command, comments=True)


def split_env(command: str) -> tuple[dict[str, str], list[str]]:
    """A command's leading ``NAME=value`` assignments, and the command line after them."""
    tokens = words(command)
    count = next((i for i, token in enumerate(tokens) if not _ASSIGNMENT.match(token)), len(tokens))
    env = dict(token.split("=", 1) for token in tokens[:count])
    return env, tokens[count:]


def laptop_path(readme: str) -> list[list[str]]:
    blocks = marked_blocks(ROOT / readme, LAPTOP_PATH)
    assert len(blocks) == 2, f"{readme}: the laptop path is two {LAPTOP_PATH} blocks (train and serve; then ask)"
    return blocks


def makefile_default(variable: str) -> str:
    found = re.search(rf"^{variable} \?= (\S+)$", (ROOT / "Makefile").read_text(encoding="utf-8"), re.MULTILINE)
    assert found, f"the Makefile no longer sets {variable} ?= ..."
    return found[1]


def test_both_readmes_give_one_laptop_path() -> None:
    readme, app = (laptop_path(name) for name in READMES)
    assert [[words(c) for c in block] for block in app] == [[words(c) for c in block] for block in readme], (
        "app/README.md's laptop path must be README.md's, command for command"
    )
    serve, ask = readme
    assert words(serve[0])[-2:] == ["make", "train"], serve
    assert split_env(serve[-1])[1] == ["make", "serve"], "make serve runs last: it stays in the foreground"
    assert "MLAPP_AUTH_PASSWORD" in split_env(serve[-1])[0], "make serve refuses to start without a password"
    assert README_ADDRESS in ask[-1], "the client calls make serve's address"


# Where a user, a password or a model name appears in the READMEs' commands and examples.
_USERS = (r"-u \"?([\w-]+):", r"MLAPP_AUTH_USERNAME=([\w-]+)", r"BasicAuth\(\"([^\"]+)\"")
_PASSWORDS = (r"-u \"?[\w-]+:([^\s\"$]+)", r"MLAPP_AUTH_PASSWORD=([^\s\"'$]+)")
_MODELS = (
    r"/v2/models/([a-z0-9][a-z0-9-]*)",
    r"MLAPP_MODEL_NAME=([a-z0-9][a-z0-9-]*)",
    r"--model-name ([a-z0-9][a-z0-9-]*)",
    r"(?:infer|get_model_metadata)\(\"([^\"]+)\"",
)


def found(patterns: tuple[str, ...], text: str) -> set[str]:
    return {name for pattern in patterns for name in re.findall(pattern, text)}


def test_one_user_one_password_one_model_in_both_readmes() -> None:
    """The model, the user and the password a newcomer meets are one each, in both READMEs: the stack's
    defaults (Pulumi.yaml), which are what make serve serves; other model names only for the examples."""
    declared = harness.project_declarations()
    user, model = declared["mlstack:basicAuthUsername"]["default"], declared["mlstack:modelName"]["default"]
    assert makefile_default("MODEL_NAME") == model, "make train/serve and a stack serve the same model"
    assert f"MLAPP_AUTH_USERNAME:-{user}}}" in (ROOT / "Makefile").read_text(encoding="utf-8"), "make serve's user"
    password = split_env(laptop_path("README.md")[0][-1])[0]["MLAPP_AUTH_PASSWORD"]
    examples = {
        yaml.safe_load(path.read_text(encoding="utf-8"))["config"]["mlstack:modelName"]
        for path in (ROOT / "examples").glob("*/stack-config.yaml")
    }
    for readme in READMES:
        text = (ROOT / readme).read_text(encoding="utf-8")
        assert found(_USERS, text) == {user}, f"{readme}: one user, {user!r}"
        assert found(_PASSWORDS, text) == {password}, f"{readme}: one password, the laptop path's {password!r}"
        models = found(_MODELS, text)
        assert model in models, f"{readme}: the default model {model!r}"
        allowed = {model} | (examples if readme == "README.md" else set())
        assert models <= allowed, f"{readme}: model names {sorted(models - allowed)} are no model we ship"


def dry_run(*targets: str) -> list[str]:
    """The commands ``make -n`` prints for ``targets`` (venv assumed ready), with make's own guards left out
    and ``${VAR:-default}`` read as the default, as a shell with VAR unset would."""
    env = {k: v for k, v in os.environ.items() if k not in make_variables() and not k.startswith("MLAPP_")}
    printed = subprocess.run(
        ["make", "--no-print-directory", "-n", "-o", "venv", *targets],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", c) for c in commands(printed) if not c.startswith("test ")]


def make_variables() -> set[str]:
    """What would change what make runs if the caller's environment set it."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    return {*re.findall(r"^(\w+) \?=", makefile, re.MULTILINE), "PLAIN_HTTP", "MAKEFLAGS", "MFLAGS", "MAKELEVEL"}


def test_app_readmes_commands_by_hand_are_what_make_runs() -> None:
    blocks = marked_blocks(ROOT / "app/README.md", BY_HAND)
    assert len(blocks) == 1, f"app/README.md: one {BY_HAND} block"
    by_hand = [split_env(c) for c in blocks[0]]
    by_make = [split_env(c) for c in dry_run("train", "serve")]
    assert len(by_hand) == len(by_make), f"by hand: {blocks[0]}\nmake -n: {by_make}"
    for (hand_env, hand), (make_env, made) in zip(by_hand, by_make, strict=True):
        assert hand == made, f"app/README.md runs {hand}, make runs {made}"
        # make serve takes the password from the caller's environment; by hand it is on the line.
        hand_env.pop("MLAPP_AUTH_PASSWORD", None)
        assert hand_env == make_env, f"{hand}: app/README.md sets {hand_env}, make sets {make_env}"


# --- links ------------------------------------------------------------------------------------

_FENCED = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.MULTILINE | re.DOTALL)
_HEADING = re.compile(r"^#{1,6}[ \t]+(.*?)[ \t]*#*[ \t]*$", re.MULTILINE)
_LINK = re.compile(r"\]\(([^)\s]+)\)")


def prose(path: Path) -> str:
    """A Markdown file without its fenced blocks (a ``# comment`` in a shell block is no heading)."""
    return _FENCED.sub("", path.read_text(encoding="utf-8"))


def anchors(path: Path) -> set[str]:
    """The anchors GitHub gives a file's headings: lower case, punctuation but ``-`` and ``_`` dropped,
    spaces to ``-``, and ``-1``, ``-2``... on a repeated one."""
    seen: dict[str, int] = {}
    for heading in _HEADING.findall(prose(path)):
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).lower()
        slug = re.sub(r"[^\w\- ]", "", text).replace(" ", "-")
        seen[slug] = seen.get(slug, -1) + 1
    return {slug if i == 0 else f"{slug}-{i}" for slug, n in seen.items() for i in range(n + 1)}


def test_every_link_in_the_readmes_and_docs_leads_somewhere() -> None:
    """Moving a section moves its anchor: every relative link of the READMEs and docs/ names a file that
    exists and, after ``#``, a heading it has."""
    broken = []
    for path in [ROOT / name for name in READMES] + sorted((ROOT / "docs").glob("*.md")):
        for target in _LINK.findall(prose(path)):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):
                continue  # https:, mailto:
            file, _, anchor = target.partition("#")
            linked = (path.parent / file).resolve() if file else path
            if not linked.exists():
                broken.append(f"{path.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
                broken.append(f"{path.relative_to(ROOT)}: {target} (no such heading)")
    assert broken == [], "\n".join(broken)


# --- the laptop path, run ----------------------------------------------------------------------


def checkout_of_our_own(where: Path) -> Path:
    """This checkout's files, linked, with a build/ of its own and venv/ the interpreter's running the tests:
    the README's relative paths (build/tls/ca.crt, build/digit.png) land in ``where``, never in the
    repository."""
    where.mkdir()
    for entry in ROOT.iterdir():
        if entry.name not in {"build", "venv"}:
            (where / entry.name).symlink_to(entry)
    (where / "venv").symlink_to(Path(sys.prefix))
    return where


def laptop_env(port: int, metrics_port: int) -> dict[str, str]:
    """A newcomer's shell: none of the caller's MLAPP_*, make variables or PYTHONPATH; the server on
    loopback ports of the test's own, and no proxy between curl and it."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("MLAPP_") and k not in make_variables() and k != "PYTHONPATH"
    }
    env |= {
        "MLAPP_HOST": "127.0.0.1",
        "MLAPP_PORT": str(port),
        "MLAPP_METRICS_PORT": str(metrics_port),
        "NO_PROXY": "localhost,127.0.0.1",
        "no_proxy": "localhost,127.0.0.1",
        "PYTHONDONTWRITEBYTECODE": "1",
        # The digits model is tiny: one intra-op thread is faster than two fighting over a 2-core CI machine.
        "OMP_NUM_THREADS": "1",
    }
    return env


class Shell:
    """Runs a README's commands with bash, where the README says to run them."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.cwd, self.env = cwd, env

    def run(self, command: str) -> str:
        done = subprocess.run(
            ["bash", "-c", command], cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=300,
            check=False,
        )  # fmt: skip
        assert done.returncode == 0, f"{command}\nexited {done.returncode}:\n{done.stdout}{done.stderr}"
        return done.stdout

    def start(self, command: str, log: Path) -> subprocess.Popen[bytes]:
        """A command that stays in the foreground, in a process group of its own (make and what it runs)."""
        with log.open("wb") as out:
            return subprocess.Popen(
                ["bash", "-c", command], cwd=self.cwd, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip


def wait_ready(server: subprocess.Popen[bytes], metrics_port: int, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"make serve exited {server.returncode}:\n{log.read_text(errors='replace')}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/v2/health/ready", timeout=2) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"make serve was not ready within {timeout}s:\n{log.read_text(errors='replace')}")


@pytest.fixture
def stopped_at_the_end() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Process groups to stop when the test ends, however it ends: SIGTERM (the server drains), then SIGKILL."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def test_the_laptop_path_trains_serves_and_answers_the_right_digit(
    tmp_path: Path, stopped_at_the_end: list[subprocess.Popen[bytes]]
) -> None:
    (*train, serve), ask = laptop_path("README.md")
    port, metrics_port = free_port(), free_port()
    shell = Shell(checkout_of_our_own(tmp_path / "checkout"), laptop_env(port, metrics_port))

    for command in train:
        shell.run(command)
    log = tmp_path / "make-serve.log"
    server = shell.start(serve, log)
    stopped_at_the_end.append(server)
    wait_ready(server, metrics_port, log)

    said = [shell.run(command.replace(README_ADDRESS, f"localhost:{port}")) for command in ask]
    digit = re.search(r": a (\d)$", said[0].strip())
    assert digit, f"the sample says which digit it wrote: {said[0]!r}"
    truth = int(digit[1])
    answer = json.loads(said[-1])
    assert (answer.get("label"), answer.get("class")) == (str(truth), truth), f"the server answered {answer}"
    assert answer["probabilities"][truth] > 0.9, answer
    model = harness.project_declarations()["mlstack:modelName"]["default"]
    assert (answer["model_name"], answer["model_version"]) == (model, "local"), answer
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f'"label":"{truth}"' in readme, "the README shows the answer the server gives"
