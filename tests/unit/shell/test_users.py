"""A normal user's session holds the user's capability set, and no more: what the
shell does for them and everything it starts is bounded by it."""

from __future__ import annotations

import time

import pytest
from tests.unit.shell._support import run

from exo.kernel.kernel import Kernel
from exo.kernel.users import UserDatabase, session_grants
from exo.shell import Session, Shell, Vfs


def test_a_user_works_in_their_home_and_tmp(alice: Shell) -> None:
    assert alice.cwd == "/home/alice"
    assert run(alice, "echo mine > notes.txt; cat notes.txt")[1] == "mine\n"
    assert run(alice, "mkdir -p d/e && cp notes.txt d/e/ && ls d/e")[1] == "notes.txt\n"
    assert run(alice, "echo t > /tmp/alice-t && cat /tmp/alice-t")[1] == "t\n"
    assert run(alice, "ls /")[0] == 0  # names on the way to what she holds
    assert "alice" in run(alice, "ls /home")[1].split()
    assert "EXO_ROOT" not in alice.env  # no host path in a user's environment


def test_a_user_cannot_read_root_or_the_password_hashes(alice: Shell,
                                                        kernel: Kernel) -> None:
    home = kernel.root / "home" / "root"
    home.mkdir(parents=True, exist_ok=True)
    (home / ".exo_history").write_text("secret-command\n")
    refusals = [
        "cat /etc/passwd", "cat /home/root/.exo_history", "ls /home/root", "ls /var/log",
        "echo x > /home/root/planted", "touch /home/root/planted", "mkdir /home/root/d",
        "cp /home/root/.exo_history /tmp/stolen", "cp -r /home /tmp/stolen",
        "grep secret < /home/root/.exo_history", "cd /home/root", "rm -r /home/root",
        "mv /home/alice /home/bob", "head /etc/passwd",
    ]
    for line in refusals:
        status, out, err = run(alice, line)
        assert status != 0, line
        assert "secret" not in out and "$scrypt$" not in out, line
        assert "permission denied" in err, (line, err)
    assert not (home / "planted").exists() and not (home / "d").exists()
    assert not (kernel.root / "tmp" / "stolen").exists()


def test_a_user_cannot_ask_the_kernel_for_more(alice: Shell) -> None:
    for cap in ("storage://=READ,WRITE", "storage://home/root=READ", "storage://etc=READ",
                "net://*=SEND"):
        status, _, err = run(alice, f"run --cap {cap} -- /bin/true")
        assert status == 126, cap
        assert "not held by this session" in err
    assert run(alice, "run --cap storage://home/alice=READ -- /bin/true")[0] == 0


def test_power_and_user_management_need_capabilities_users_lack(alice: Shell,
                                                                kernel: Kernel) -> None:
    for line in ("shutdown", "exo shutdown"):
        status, _, err = run(alice, line)
        assert status == 1 and "device://power" in err
    assert not kernel.shutdown_requested.is_set()
    assert "only root manages users" in run(alice, "useradd mallory", b"x\n")[2]
    assert "only root" in run(alice, "passwd root", b"x\n")[2]


def test_the_administrator_grants_more_in_etc(kernel: Kernel) -> None:
    db = UserDatabase(kernel.root)
    bob = db.add("bob", "builder")
    (kernel.root / "home" / "shared").mkdir(parents=True)
    (kernel.root / "etc" / "exo").mkdir(parents=True, exist_ok=True)
    (kernel.root / "etc" / "exo" / "grants.toml").write_text(
        '[all]\ncapabilities = ["storage://home/shared=READ"]\n'
        '[users.bob]\ncapabilities = ["storage://home/shared=READ,WRITE", '
        '"device://power=WRITE"]\n')
    grants = session_grants(kernel.root, bob)
    assert grants is not None
    shell = Shell(kernel.api, Vfs(kernel.root, kernel.virtual_trees()),
                  Session(bob.name, bob.uid, bob.home, grants))
    assert run(shell, "echo hi > /home/shared/x; cat /home/shared/x")[1] == "hi\n"
    assert shell.session.holds("device://power", "WRITE")
    carol = db.add("carol", "c")
    carol_grants = session_grants(kernel.root, carol)
    assert carol_grants is not None
    carol_shell = Shell(kernel.api, Vfs(kernel.root, kernel.virtual_trees()),
                        Session(carol.name, carol.uid, carol.home, carol_grants))
    assert run(carol_shell, "cat /home/shared/x")[1] == "hi\n"  # [all]: read
    assert run(carol_shell, "echo no > /home/shared/x")[0] == 1  # but not write
    assert not carol_shell.session.holds("device://power", "WRITE")


def test_su_asks_a_password_and_derives_that_users_set(alice: Shell,
                                                        root_shell: Shell) -> None:
    from exo.shell.session import SwitchUser

    status, _, err = run(alice, "su root", b"\n")  # root has no password: never
    assert status == 1 and "authentication failure" in err
    assert run(alice, "su nobody", b"x\n")[0] == 1
    try:
        run(root_shell, "su alice")  # root needs no password
    except SwitchUser as exc:
        assert exc.session.user == "alice"
        assert exc.session.grants is not None
    else:
        raise AssertionError("su did not switch")


def test_a_user_sees_only_their_own_processes_and_no_kernel_records(alice: Shell,
                                                                    root_shell: Shell) -> None:
    run(root_shell, "run --cap storage://tmp=READ -- /bin/sleep 30 &")
    deadline = time.monotonic() + 20
    while len(root_shell.kernel.ps()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    pid = root_shell.kernel.ps()[-1]["pid"]
    assert "sleep" in run(root_shell, "ps")[1]
    assert "sleep" not in run(alice, "ps")[1]
    status, _, err = run(alice, f"kill {pid}")
    assert status == 1 and "not a process of user alice" in err
    assert "storage://tmp" in run(root_shell, "caps")[1]
    assert "storage://tmp" not in run(alice, "caps")[1]
    assert "not a process of user alice" in run(alice, f"caps {pid}")[2]
    mine = run(alice, "caps --session")[1]  # what her login holds, not root's
    assert "storage://home/alice" in mine and "storage://home/root" not in mine
    assert "every root capability" in run(root_shell, "caps --session")[1]
    for line in ("dmesg", "caps --audit"):
        status, _, err = run(alice, line)
        assert status == 1 and "permission denied" in err, line
    assert run(alice, "echo $(exit 3) still-here")[1] == "still-here\n"
    run(root_shell, "kill %1; wait")


def test_sudo_runs_one_command_with_the_other_users_set(alice: Shell, root_shell: Shell,
                                                        kernel: Kernel) -> None:
    status, out, err = run(alice, "sudo cat /etc/passwd", b"guess\n")
    assert status == 1 and "authentication failure" in err and "$scrypt$" not in out
    UserDatabase(kernel.root).set_password("root", "r00t-pw")
    status, out, err = run(alice, "sudo cat /etc/passwd", b"r00t-pw\n")
    assert status == 0 and "alice:$scrypt$" in out, err
    assert run(alice, "cat /etc/passwd")[0] == 1  # for that command only
    assert run(root_shell, "cd /tmp; sudo -u alice whoami; sudo -u alice pwd")[1] == \
        "alice\n/tmp\n"
    assert run(root_shell, "sudo -u alice cat /etc/passwd")[0] == 1


def test_passwd_of_a_user_asks_the_current_password_first(alice: Shell,
                                                          kernel: Kernel) -> None:
    """A normal user's passwd never asked the current password: a terminal left logged
    in was enough to take the account."""
    status, _, err = run(alice, "passwd", b"guess\nnew-pw\n")
    assert status == 1 and "not the current password; nothing changed" in err
    assert kernel.api.login("alice", "new-pw") is None
    status, out, _ = run(alice, "passwd", b"wonderland\nnew-pw\n")
    assert status == 0 and "password updated for alice" in out
    assert kernel.api.login("alice", "new-pw") is not None
    with pytest.raises(PermissionError):  # the kernel checks it, whatever a shell asks
        kernel.api.set_password(alice.session.token or "", "alice", "x")


def test_names_are_checked_before_any_password_is_asked(root_shell: Shell) -> None:
    for line, said in (("useradd root", "user 'root' already exists"),
                       ("useradd ../x", "invalid user name"),
                       ("su nosuch", "user 'nosuch' does not exist"),
                       ("sudo -u nobody ls", "user 'nobody' does not exist"),
                       ("sudo -u", "-u needs a user name")):
        status, out, err = run(root_shell, line, b"never-read\n")
        assert status != 0 and said in err and "Password" not in out + err, (line, err)


def test_each_user_has_a_tmp_of_their_own(alice: Shell, kernel: Kernel,
                                          root_shell: Shell) -> None:
    """Every user held ``storage://tmp`` read-write: alice read, replaced and deleted
    bob's files there (a hostile review). Each user's ``/tmp`` is now their own
    (``tmp/.users/NAME`` of the tree, as pam_namespace does it): the shell, the
    powerbox's programs, ``run`` and ``exo_std`` all see the same one; root's is the
    tree's, holding every user's."""
    user = UserDatabase(kernel.root).add("bob", "builder")
    (kernel.root / "home" / "bob").mkdir(parents=True)
    bob = Shell(kernel.api, Vfs(kernel.root, kernel.virtual_trees()),
                Session(user.name, user.uid, user.home, session_grants(kernel.root, user)))
    assert run(bob, "echo bobs > /tmp/note; mkdir /tmp/d")[0] == 0
    for line in ("cat /tmp/note", "/bin/cat /tmp/note", "ls /tmp/d", "rm /tmp/note",
                 "ls /tmp/.users", "cat /tmp/.users/bob/note"):
        assert run(alice, line)[0] != 0, line
    assert run(alice, "ls /tmp")[1] == ""
    assert run(alice, "echo alices > /tmp/note; cat /tmp/note")[1] == "alices\n"
    assert run(bob, "cat /tmp/note")[1] == "bobs\n"  # untouched
    # the same /tmp for the shell, a host program, an exo_std app and a `run` grant
    status, out, err = run(alice, "/usr/bin/sort /tmp/note -o /tmp/sorted && "
                                  "/bin/cat /tmp/sorted && cd /tmp && /bin/ls")
    assert (status, out) == (0, "alices\nnote\nsorted\n"), err
    run(alice, "cd; printf 'from exo_std import fs\\nprint(fs.File.open(\"storage://tmp/note\")"
               ".read().decode(), end=\"\")\\n' > app.py")
    status, out, err = run(alice, "run --cap storage://tmp=READ --cap "
                                  "storage://home/alice=READ -- python3 app.py")
    assert (status, out) == (0, "alices\n"), err
    # root's /tmp is the tree's: every user's is below it
    assert run(root_shell, "cat /tmp/.users/alice/note /tmp/.users/bob/note")[1] == \
        "alices\nbobs\n"
    assert (kernel.root / "tmp" / ".users" / "bob" / "note").read_text() == "bobs\n"


def test_a_link_planted_for_the_users_tmp_is_refused(kernel: Kernel) -> None:
    """``tmp/.users`` made by someone else as a link (root's /tmp is writable by root's
    programs) is never followed: the login fails, saying why."""
    (kernel.root / "tmp" / ".users").symlink_to(kernel.root / "etc")
    user = UserDatabase(kernel.root).add("carol", "pw")
    with pytest.raises(PermissionError, match="no /tmp of their own"):
        kernel.api.open_session(user.name, user.uid, user.home,
                                session_grants(kernel.root, user))
    assert not (kernel.root / "etc" / "carol").exists()


def test_any_name_useradd_takes_has_a_tmp(kernel: Kernel) -> None:
    """The name check of a user's /tmp took fewer names than useradd does: `Alice` could
    not log in."""
    for name in ("Alice", "user_2", "Bob99"):
        user = UserDatabase(kernel.root).add(name, "pw")
        session = kernel.api.open_session(user.name, user.uid, user.home,
                                          session_grants(kernel.root, user))
        assert (kernel.root / "tmp" / ".users" / name).is_dir()
        kernel.api.end_session(session.token)
