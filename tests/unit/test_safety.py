"""Tests of the agent's safety checks: the input-path sandbox and the master-as-worker guard.
Addresses are only resolved, never contacted."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from ffleet.agent.safety import (
    MASTER_AS_WORKER_WARNING,
    MasterAsWorkerRefused,
    confirm_master_as_worker,
    master_is_local,
    resolve_input_path,
)
from ffleet.scenarios import ScenarioError

PROMPT = "Do you want to continue? (yes/no): "


def interface_addresses() -> list[str]:
    return [
        entry.address.split("%", 1)[0]
        for entries in psutil.net_if_addrs().values()
        for entry in entries
        if entry.family in (socket.AF_INET, socket.AF_INET6)
    ]


def url_for(address: str) -> str:
    host = f"[{address}]" if ":" in address else address
    return f"http://{host}:8700"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8700",
        "http://127.4.5.6:8700/api",
        "http://localhost:8700",
        "https://LOCALHOST",
        "localhost:8700",
        "http://[::1]:8700",
        "http://[::ffff:127.0.0.1]:8700",
        "http://0.0.0.0:8700",
    ],
)
def test_loopback_is_local(url: str) -> None:
    assert master_is_local(url)


def test_own_hostname_is_local() -> None:
    assert master_is_local(f"http://{socket.gethostname()}:8700")


def test_interface_address_is_local() -> None:
    external = [
        address
        for address in interface_addresses()
        if not ipaddress.ip_address(address).is_loopback
    ]
    if not external:
        pytest.skip("this machine has no non-loopback interface address")
    for address in external:
        assert master_is_local(url_for(address)), address


def test_other_address_is_not_local() -> None:
    # TEST-NET addresses never route anywhere; pick one this machine does not carry
    # (some sandboxes put their own interface in 192.0.2.0/24).
    own = set(interface_addresses())
    candidates = ["192.0.2.1", "198.51.100.1", "203.0.113.1", "2001:db8::1"]
    remote = [address for address in candidates if address not in own]
    assert remote
    for address in remote:
        assert not master_is_local(url_for(address)), address


def fake_resolver(table: dict[str, list[str]]) -> Callable[..., object]:
    def getaddrinfo(host: str, port: object, *args: object, **kwargs: object) -> object:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, 0))
            for a in table[host]
        ]

    return getaddrinfo


def isolate(monkeypatch: pytest.MonkeyPatch, table: dict[str, list[str]]) -> None:
    """This machine becomes "buildbox" at 198.51.100.20 with no interface addresses."""
    monkeypatch.setattr(socket, "getaddrinfo", fake_resolver(table))
    monkeypatch.setattr(socket, "gethostname", lambda: "buildbox")
    monkeypatch.setattr(socket, "getfqdn", lambda: "buildbox.example.net")
    monkeypatch.setattr(psutil, "net_if_addrs", dict)


def test_name_resolving_to_own_hostname_address_is_local(monkeypatch: pytest.MonkeyPatch) -> None:
    isolate(monkeypatch, {"buildbox": ["198.51.100.20"], "master.lan": ["198.51.100.20"]})
    assert master_is_local("http://master.lan:8700")


def test_own_fqdn_is_local_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    isolate(monkeypatch, {"buildbox.example.net": ["203.0.113.9"]})
    assert master_is_local("http://BuildBox.example.net:8700")


def test_names_are_not_matched_by_substring(monkeypatch: pytest.MonkeyPatch) -> None:
    isolate(
        monkeypatch,
        {
            "buildbox": ["198.51.100.20"],
            "localhost.example.com": ["203.0.113.5"],
            "buildbox2": ["203.0.113.6"],
        },
    )
    assert not master_is_local("http://localhost.example.com:8700")
    assert not master_is_local("http://buildbox2:8700")


def test_unresolvable_host_is_not_local(monkeypatch: pytest.MonkeyPatch) -> None:
    isolate(monkeypatch, {"buildbox": ["198.51.100.20"]})
    assert not master_is_local("http://master.invalid:8700")


@pytest.mark.parametrize("url", ["", "http://", "http://[::1:8700", "http://a..b:8700"])
def test_malformed_urls_are_not_local(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    isolate(monkeypatch, {})
    assert not master_is_local(url)


# --- confirmation -------------------------------------------------------------------------


class Console:
    def __init__(self, *answers: str | type[BaseException]) -> None:
        self.answers = list(answers)
        self.prompts: list[str] = []
        self.printed: list[str] = []

    def ask(self, prompt: str) -> str:
        self.prompts.append(prompt)
        answer = self.answers.pop(0)
        if isinstance(answer, str):
            return answer
        raise answer()

    def out(self, text: str) -> None:
        self.printed.append(text)


def confirm(console: Console, *, allow: bool, assume_yes: bool, interactive: bool) -> None:
    confirm_master_as_worker(
        allow=allow,
        assume_yes=assume_yes,
        interactive=interactive,
        ask=console.ask,
        out=console.out,
    )


def test_warning_explains_the_risks() -> None:
    text = MASTER_AS_WORKER_WARNING.lower()
    assert len(MASTER_AS_WORKER_WARNING.splitlines()) > 3
    for needle in ("contention", "benchmark", "whole fleet", "crash", "development", "testing"):
        assert needle in text


@pytest.mark.parametrize("interactive", [True, False])
@pytest.mark.parametrize("assume_yes", [True, False])
def test_refused_without_allow(interactive: bool, assume_yes: bool) -> None:
    console = Console("yes")
    with pytest.raises(MasterAsWorkerRefused, match="--allow-master-as-worker"):
        confirm(console, allow=False, assume_yes=assume_yes, interactive=interactive)
    assert console.printed == [MASTER_AS_WORKER_WARNING]
    assert console.prompts == []


@pytest.mark.parametrize("interactive", [True, False])
def test_allow_with_yes_flag_needs_no_question(interactive: bool) -> None:
    console = Console()
    confirm(console, allow=True, assume_yes=True, interactive=interactive)
    assert console.printed == [MASTER_AS_WORKER_WARNING]
    assert console.prompts == []


@pytest.mark.parametrize("answer", ["yes", "y", "YES", "Y", " Yes \n"])
def test_interactive_yes_continues(answer: str) -> None:
    console = Console(answer)
    confirm(console, allow=True, assume_yes=False, interactive=True)
    assert console.prompts == [PROMPT]
    assert console.printed == [MASTER_AS_WORKER_WARNING]


@pytest.mark.parametrize("answer", ["no", "n", "", "yess", "ok", "sure"])
def test_interactive_anything_else_refuses(answer: str) -> None:
    console = Console(answer)
    with pytest.raises(MasterAsWorkerRefused, match="Not confirmed"):
        confirm(console, allow=True, assume_yes=False, interactive=True)
    assert console.prompts == [PROMPT]


def test_interactive_end_of_input_refuses() -> None:
    console = Console(EOFError)
    with pytest.raises(MasterAsWorkerRefused, match="Not confirmed"):
        confirm(console, allow=True, assume_yes=False, interactive=True)


def test_no_terminal_without_yes_refuses() -> None:
    console = Console("yes")
    with pytest.raises(MasterAsWorkerRefused, match="--yes"):
        confirm(console, allow=True, assume_yes=False, interactive=False)
    assert console.prompts == []
    assert console.printed == [MASTER_AS_WORKER_WARNING]


def test_resolve_input_path(tmp_path: Path) -> None:
    allowed = tmp_path / "media"
    (allowed / "sub").mkdir(parents=True)
    clip = allowed / "sub" / "clip.mp4"
    clip.write_bytes(b"x")
    outside = tmp_path / "secret.mp4"
    outside.write_bytes(b"x")
    (allowed / "link.mp4").symlink_to(outside)

    assert resolve_input_path(str(clip), [allowed]) == clip
    assert resolve_input_path("sub/clip.mp4", [tmp_path / "other", allowed]) == clip
    assert resolve_input_path(f"{allowed}/sub/../sub/clip.mp4", [allowed]) == clip
    for escape in ("../secret.mp4", f"{allowed}/../secret.mp4", "link.mp4", str(outside)):
        with pytest.raises(ScenarioError, match="outside"):
            resolve_input_path(escape, [allowed])
    with pytest.raises(ScenarioError, match="does not exist"):
        resolve_input_path("missing.mp4", [allowed])
    with pytest.raises(ScenarioError, match="does not exist"):
        resolve_input_path("sub", [allowed])  # a directory is not an input file
    with pytest.raises(ScenarioError, match="allows no input files"):
        resolve_input_path(str(clip), [])
