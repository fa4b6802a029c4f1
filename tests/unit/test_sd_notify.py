"""sd_notify(3) from goexd (goexd/sd_notify.py): the datagram, abstract names, and what is not a socket."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from goexd.sd_notify import Notifier


def test_states_go_as_one_datagram_and_the_variable_leaves_the_environment(tmp_path: Path) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as manager:
        manager.bind(str(tmp_path / "notify"))
        env = {"NOTIFY_SOCKET": str(tmp_path / "notify"), "OTHER": "x"}
        notifier = Notifier(env)
        assert env == {"OTHER": "x"}  # no child of goexd's sees it
        assert notifier.notify("READY=1", "STATUS=serving on /s")
        assert manager.recv(4096) == b"READY=1\nSTATUS=serving on /s"


def test_an_abstract_name_is_reached() -> None:
    name = f"goex-test-notify-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as manager:
        manager.bind("\0" + name)
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).notify("STOPPING=1")
        assert manager.recv(4096) == b"STOPPING=1"


def test_nobody_to_tell_is_no_error(tmp_path: Path) -> None:
    assert not Notifier({}).notify("READY=1")
    assert not Notifier({"NOTIFY_SOCKET": "relative/path"}).notify("READY=1")  # neither a path nor @name
    assert not Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")}).notify("READY=1")  # nobody listens
