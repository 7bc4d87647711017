"""Real processes for live tests: start one in its own process group, stop the whole group."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A free port below the kernel's ephemeral range: a port the kernel hands out (bind to 0)
    can be taken as the source port of any outgoing connection before our server binds it."""
    low = _ephemeral_low()
    for _ in range(200):
        port = random.randrange(max(1024, low - 12000), low)  # noqa: S311 - not cryptography
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def spawn(args: list[str], *, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start ``args`` from the repository root, output to ``log``, in a new process group."""
    with log.open("wb") as out:
        return subprocess.Popen(
            args,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop(proc: subprocess.Popen[bytes], *, grace: float = 20) -> None:
    """SIGTERM the group (a clean shutdown), SIGKILL it if it outlives ``grace`` seconds."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=grace)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def tail(log: Path, lines: int = 40, *, title: str = "output") -> str:
    text = log.read_text(errors="replace") if log.exists() else ""
    return f"\n--- {title} (tail) ---\n" + "\n".join(text.splitlines()[-lines:])
