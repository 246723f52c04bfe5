"""Tab completion for the interactive shell (imported only on a terminal)."""

from __future__ import annotations

from collections.abc import Iterable

from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document

from exo.shell.core import Shell


class ShellCompleter(Completer):
    """Completes command names in first position and Exo paths elsewhere."""

    def __init__(self, shell: Shell) -> None:
        self.shell = shell

    def commands(self) -> set[str]:
        """Builtins, functions, aliases, installed apps, and the host programs the
        powerbox has a policy for."""
        from exo.pkg.installed import installed_apps
        from exo.shell.powerbox import Powerbox, PowerboxError

        names = set(self.shell.builtins) | set(self.shell.aliases) | set(self.shell.functions)
        names |= {app.name for app in installed_apps(self.shell.kernel.root)}
        try:
            policies = Powerbox.for_shell(self.shell).policies
        except PowerboxError:
            return names
        return names | {n for n in policies if Powerbox.find(n) is not None}

    def get_completions(
        self, document: Document, complete_event: CompleteEvent
    ) -> Iterable[Completion]:
        text = document.text_before_cursor
        word = text.split(" ")[-1] if text else ""
        before = text[: len(text) - len(word)]
        first = not before.strip() or before.rstrip().endswith(("|", ";", "&&", "||"))
        if first and "/" not in word:
            for name in sorted(self.commands()):
                if name.startswith(word):
                    yield Completion(name + " ", start_position=-len(word))
            return
        head, _, partial = word.rpartition("/")
        # ~ and $VAR in the directory part are looked in as the shell will expand them
        # (the word keeps them as typed); a name is inserted with its blanks and quotes
        # escaped, so the line means that file.
        shown = self._expanded(head)
        base = self.shell.vfs.normalize(shown + "/" if shown else ".", self.shell.cwd)
        if word.startswith("/") and not head:
            base = "/"
        try:
            entries = self.shell.vfs.listdir(base)
        except OSError:
            return
        for e in entries:
            if e.name.startswith(partial) and (partial.startswith(".") or e.name[0] != "."):
                full = (head + "/" if head or word.startswith("/") else "") + _escaped(e.name)
                yield Completion(full + ("/" if e.is_dir else ""), start_position=-len(word))

    def _expanded(self, head: str) -> str:
        """``head`` with a leading ``~`` (``~/``, ``~``) and ``$NAME`` parts expanded."""
        import re

        if head == "~" or head.startswith("~/"):
            head = self.shell.env.get("HOME", self.shell.session.home) + head[1:]
        from exo.shell.parser import ParseError

        def value(m: re.Match[str]) -> str:
            try:
                return self.shell.lookup(m.group(1))
            except ParseError:  # (set -u: an unset one completes as nothing)
                return ""

        return re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", value, head)


def _escaped(name: str) -> str:
    """A file name as a word of the line: blanks and the shell's special characters
    after a backslash."""
    return "".join("\\" + c if c in " \t'\"\\$`&|;<>()*?[]!#~{}" else c for c in name)
