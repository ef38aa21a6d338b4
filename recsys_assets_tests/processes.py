"""Real servers for tests: started on free loopback ports in their own sessions, always stopped."""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parents[1]  # the checkout: its dagster.yaml, its package


def wait_for(condition: Callable[[], Any], timeout_s: float, interval_s: float, what: str) -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        return s.connect_ex((HOST, port)) == 0


def session_members(sid: int) -> list[int]:
    """Processes of session ``sid``: every descendant of a process started with a new session
    (Dagster, PySpark and the servers never start sessions of their own), even once reparented
    to init."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # exited meanwhile
        # After the command: state, ppid, pgrp, session.
        if int(fields[3]) == sid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


def kill_all(sid: int) -> list[int]:
    """SIGKILL every live member of session ``sid``; returns the pids signalled."""
    members = session_members(sid)
    for pid in members:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return members


def run(
    command: Sequence[str],
    timeout_s: float,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess:
    """``subprocess.run`` in a session of its own: whatever it started (a Spark JVM, say) is
    killed with it, also on a timeout."""
    process = subprocess.Popen(
        list(command),
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout_s)
    finally:
        kill_all(process.pid)
        process.wait()
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def listening_addresses(pids: Sequence[int]) -> set[str]:
    """The IPv4/IPv6 addresses on which these processes have listening TCP sockets."""
    inodes = set()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").glob("*"):
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    addresses = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and inode in inodes:  # 0A: LISTEN
                addresses.add(decode_address(local.split(":")[0]))
    return addresses


def decode_address(hex_address: str) -> str:
    """/proc/net/tcp's little-endian hex address as text."""
    raw = bytes.fromhex(hex_address)
    # Each 32-bit word is in host (little-endian) order.
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    address = ipaddress.ip_address(words)
    return str(getattr(address, "ipv4_mapped", None) or address)  # ::ffff:127.0.0.1 as IPv4


@dataclass
class Service:
    """A server process started by a test, in a session of its own, logging to a file."""

    name: str
    process: subprocess.Popen
    log_path: Path

    @classmethod
    def start(
        cls,
        name: str,
        command: Sequence[str],
        log_dir: Path,
        ready: Callable[[], Any],
        env: dict[str, str] | None = None,
        timeout_s: float = 120,
        cwd: Path | None = None,
    ) -> Service:
        """Start ``command`` and wait until ``ready()``; on any failure stop it and raise."""
        log_path = log_dir / f"{name}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                list(command),
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        service = cls(name, process, log_path)
        try:
            wait_for(lambda: service.check_alive() or ready(), timeout_s, 0.5, f"{name} to start")
        except BaseException as error:
            service.stop()
            raise RuntimeError(f"{name} did not start: {error}\n{service.log_tail()}") from error
        return service

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.name} exited with code {self.process.returncode}")

    def listening_addresses(self) -> set[str]:
        return listening_addresses(session_members(self.process.pid))

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as error:
            return f"(no log: {error})"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, grace_s: float = 20) -> None:
        """SIGTERM to the whole session, then SIGKILL to whatever of it is left."""
        sid = self.process.pid
        try:
            os.killpg(sid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            wait_for(lambda: not session_members(sid), grace_s, 0.2, f"{self.name} to stop")
        except TimeoutError:
            wait_for(lambda: not kill_all(sid), 30, 0.5, f"{self.name} to be killed")
        finally:
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait(timeout=30)
