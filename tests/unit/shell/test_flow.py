"""Functions, positional parameters, break/continue/return, $!: the shell's scripts as
sh runs them. `f() { ...; }` was two unknown commands, `break` was "command not found"
(a `while true` with a break in it never ended), `$1`, `$#`, `$@` and `$!` were printed
as typed."""

from __future__ import annotations

import pytest
from tests.unit.shell._support import run

from exo.shell import Shell


def test_functions_take_arguments_locals_and_return(root_shell: Shell) -> None:
    assert run(root_shell, "f() { echo n=$# first=$1 all=$@ name=$0; }; f x 'y z'") == (
        0, "n=2 first=x all=x y z name=exosh\n", "")
    line = ('greet() { local who=${1:-world}; echo "hello $who"; return 3; echo never; }; '
            'who=me; greet; echo $?; greet you; echo "who=$who"')
    assert run(root_shell, line)[1] == "hello world\n3\nhello you\nwho=me\n"
    # over several lines, `function NAME`, redirections of the call and of the definition
    run(root_shell, "function shout {\n  echo \"$1!\"\n}\nlog() { echo \"$@\"; } >> log.txt")
    assert run(root_shell, "shout hey > out.txt; cat out.txt; log a; log b; cat log.txt") \
        == (0, "hey!\na\nb\n", "")
    from exo.shell.completion import ShellCompleter

    assert {"shout", "log"} <= ShellCompleter(root_shell).commands()
    assert run(root_shell, "type shout; unset -f shout; shout x") == (
        127, "shout is a function\nshout () \n{ \n    echo \"$1!\";\n}\n",
        "exo: shout: command not found\n")
    # "$@": each argument a word of its own, none when there are none
    run(root_shell, 'each() { for a in "$@"; do echo "[$a]"; done; echo n=$#; }')
    assert run(root_shell, "each 'a b' c; each; each x\"$@\"y")[1] == \
        "[a b]\n[c]\nn=2\nn=0\n[xy]\nn=1\n"
    assert run(root_shell, 'wrap() { each "$@"; }; wrap "p q" r')[1] == "[p q]\n[r]\nn=2\n"
    # as a stage of a pipeline and in the background: with its own arguments
    assert run(root_shell, "words() { echo $#; }; words a b c | /usr/bin/wc -l")[1] == "1\n"
    assert run(root_shell, "words a b & wait")[1] == "2\n"


def test_break_continue_and_their_counts(root_shell: Shell) -> None:
    assert run(root_shell, "for i in 1 2 3 4; do [ $i = 3 ] && break; echo $i; done")[1] \
        == "1\n2\n"
    assert run(root_shell, "for i in 1 2 3; do [ $i = 2 ] && continue; echo $i; done")[1] \
        == "1\n3\n"
    assert run(root_shell, "for a in 1 2; do for b in x y; do [ $b = y ] && break 2; "
                           "echo $a$b; done; done; echo after=$?")[1] == "1x\nafter=0\n"
    assert run(root_shell, "x=0; while true; do x=$((x+1)); [ $x -gt 3 ] && break; "
                           "done; echo $x")[1] == "4\n"
    # outside a loop or a function: said, as sh says it; $(...) is a subshell
    assert run(root_shell, "break") == (
        0, "", "break: only meaningful in a for, while or until loop\n")
    assert run(root_shell, "return")[0] == 1
    assert run(root_shell, "for i in 1 2; do echo $(break; echo in) $i; done")[1] == \
        "1\n2\n"
    assert run(root_shell, "f() { x=$(return 3; echo no); echo \"[$x] $?\"; }; f")[1] == \
        "[] 3\n"
    assert run(root_shell, "x=$(false); echo $?; x=$(true); echo $?; x=1; echo $?")[1] \
        == "1\n0\n0\n"


def test_positional_parameters_set_shift_source_and_bang(root_shell: Shell) -> None:
    assert run(root_shell, "set -- a b c; echo $# $2 ${3}; shift; echo $1 $#")[1] == \
        "3 b c\nb 2\n"
    assert run(root_shell, "shift 5") == (1, "", "shift: shift count out of range\n")
    run(root_shell, "echo 'echo got $# $1; return 4; echo never' > script.sh")
    assert run(root_shell, "source script.sh one two; echo $?; echo $#")[1] == \
        "got 2 one\n4\n2\n"  # the script's arguments, then the shell's again
    status, out, err = run(root_shell, "/bin/sleep 0.1 & echo pid=$!; wait $!; "
                                       "echo $?")
    assert status == 0 and err.startswith("[1] ")
    assert out == f"pid={err.split()[1]}\n0\n"  # the job's program, as sh's $!


def test_a_function_cannot_recurse_the_kernel_away(root_shell: Shell) -> None:
    assert run(root_shell, "r() { r; }; r") == (
        1, "", "exo: r: functions nested more than 100 deep\n")
    heavy = "h() { if true; then for i in 1; do while true; do h; break; done; done; fi; }"
    assert run(root_shell, f"{heavy}; h")[2] == "exo: the line is nested too deeply\n"
    assert run(root_shell, "h | /usr/bin/wc -c") == (0, "0\n", "h: nested too deeply\n")
    assert run(root_shell, "echo still here")[1] == "still here\n"


def test_a_block_pipes_into_the_rest_of_its_pipeline(root_shell: Shell) -> None:
    """`for …; done | sort` was "a block takes redirections, not pipes"."""
    assert run(root_shell, "for i in 3 1 2; do echo $i; done | /usr/bin/sort")[1] == \
        "1\n2\n3\n"
    assert run(root_shell, "if true; then echo a; echo b; fi | /usr/bin/wc -l")[1] == "2\n"
    assert run(root_shell, "{ echo one; echo two; } | /usr/bin/tail -n 1")[1] == "two\n"
    assert run(root_shell, "for i in 1 2; do echo $i; done > /dev/null | /usr/bin/wc -l") \
        == (0, "0\n", "")  # its own redirection first, as in sh
    line = 'f() { for a in "$@"; do echo $a; [ $a = b ] && break; done | /usr/bin/sort -r; }'
    assert run(root_shell, f"{line}; f a c b d")[1] == "c\nb\na\n"
    assert run(root_shell, "for i in a; do echo $i; done | false")[0] == 1
    assert run(root_shell, "for i in a; do echo $i; done x")[0] == 2  # arguments: refused


def test_a_pipeline_pipes_into_a_block(root_shell: Shell) -> None:
    """`cat f | while read l; do …; done` was "syntax error near unexpected 'do'"."""
    run(root_shell, "cd /tmp; printf 'a b\\nc d\\n' > in.txt")
    assert run(root_shell, 'cat in.txt | while read line; do echo "L:$line"; done')[1] == \
        "L:a b\nL:c d\n"
    assert run(root_shell, "/usr/bin/sort -r in.txt | while read x y; do echo $y; done | "
                           "/usr/bin/tr a-z A-Z")[1] == "D\nB\n"
    assert run(root_shell, "echo 'x|y' | while read l; do echo \"$l\"; done > o.txt; "
                           "cat o.txt")[1] == "x|y\n"
    assert run(root_shell, "echo 3 | if read n; then echo n=$n; fi")[1] == "n=3\n"
    assert run(root_shell, "echo q | { read v; echo v=$v; }")[1] == "v=q\n"


def test_and_or_before_a_block_decide_whether_it_runs(root_shell: Shell) -> None:
    """`false && if …; fi` ran the block, and `echo a || while true; …` never ended:
    the && and || before a block were dropped."""
    assert run(root_shell, "false && if true; then echo wrong; fi; echo after")[1] == \
        "after\n"
    assert run(root_shell, "echo a || while true; do echo no; done")[1] == "a\n"
    assert run(root_shell, "true && for i in 1; do echo yes; done")[1] == "yes\n"
    assert run(root_shell, "false || { echo rescued; }")[1] == "rescued\n"
    assert run(root_shell, "false && echo q | while read v; do echo $v; done; echo ok")[1] \
        == "ok\n"


def test_case_chooses_the_first_clause_whose_pattern_matches(root_shell: Shell) -> None:
    """`case` was "syntax error near ';'"."""
    line = ('for w in apple b.txt zz; do case "$w" in a*) echo "$w:a";; *.txt|*.md) '
            'echo "$w:doc";; *) echo "$w:?";; esac; done')
    assert run(root_shell, line)[1] == "apple:a\nb.txt:doc\nzz:?\n"
    assert run(root_shell, "case x in y) echo no;; esac; echo $?")[1] == "0\n"
    assert run(root_shell, "p='b*'; case bee in (a) echo a;; $p) echo pattern;; esac")[1] \
        == "pattern\n"
    text = "case abc in\n  a*)\n    echo multi\n    echo line\n    ;;\n  *)\n    echo no\nesac"
    assert all(root_shell.needs_more(text[:n]) for n in (11, 20, 40))
    assert run(root_shell, text)[1] == "multi\nline\n"
    assert run(root_shell, "case q in q) case r in r) echo nested;; esac;; esac")[1] == \
        "nested\n"
    assert run(root_shell, "false && case x in x) echo no;; esac; echo hi | case x in "
                           "x) cat;; esac")[1] == "hi\n"
    assert run(root_shell, "case x in x) echo a;; esac extra")[0] == 2
    assert run(root_shell, "echo 'a;;b' \"c;;d\" 'x<<y'")[1] == "a;;b c;;d x<<y\n"  # quoted


def test_a_subshell_keeps_its_changes_to_itself(root_shell: Shell) -> None:
    """`( LIST )` was "command not found": `(cd dir && make)` is how scripts run
    something elsewhere. What a subshell changes of the shell is undone when it ends;
    `exit` ends the subshell alone."""
    run(root_shell, "cd /tmp")
    for line, out in (
            ("(echo a; echo b)", "a\nb\n"),
            ("x=1; (x=2; echo in=$x); echo out=$x", "in=2\nout=1\n"),
            ("(cd / && pwd); pwd", "/\n/tmp\n"),
            ("(echo one; echo two) | wc -l", "2\n"),
            ("echo x | (read v; echo v=$v)", "v=x\n"),
            ("(exit 3); echo $?", "3\n"),
            ("false || (echo ran) && echo after", "ran\nafter\n"),
            ("(echo x) > sub.txt; cat sub.txt", "x\n"),
            ("if true; then (echo then); fi; for i in 1 2; do (echo $i); done",
             "then\n1\n2\n"),
            ("(echo nested; (echo deeper))", "nested\ndeeper\n"),
            ("(f() { echo fn; }; alias q=x; export Z=1; f); type f q; echo ${Z:-unset}",
             "fn\nunset\n"),
            ("(sleep 0.1; echo bg) & wait; echo done", "bg\ndone\n"),
            ('(echo "a)b"; echo \')\')', "a)b\n)\n"),
            ("echo $( (echo inside) )", "inside\n"),
            ("case a in (a) echo clause;; esac", "clause\n"),  # a clause, not a subshell
            # `((` whose parentheses do not close together: two subshells, as in sh
            ("((echo a); echo b)", "a\nb\n"),
            ("((echo a) | tr a b)", "b\n"),
            ("(( (1) + (2) == 3 )) && echo arith", "arith\n")):
        assert run(root_shell, line)[1] == out, line
    assert run(root_shell, "(exit 3)")[0] == 3
    assert run(root_shell, "()")[0] == 2
    assert run(root_shell, "( " * 40 + "x" + " )" * 40)[2] == \
        "exo: subshells nested more than 32 deep\n"


def test_an_open_subshell_asks_for_more_lines(root_shell: Shell) -> None:
    from exo.shell.parser import IncompleteInput, parse_blocks, split_list

    with pytest.raises(IncompleteInput, match="subshell"):
        parse_blocks(split_list("(echo a"))
    assert run(root_shell, "(echo a\necho b)")[1] == "a\nb\n"


def test_set_e_ends_the_line_or_script_at_a_failure_and_set_x_traces(
        root_shell: Shell) -> None:
    """`set -e` (and `set -x`) were "not supported": scripts begin with them. A failing
    command ends the line (a sourced script: all of it), except in a condition, before
    `&&`/`||`, or in a `$(…)` or `( … )` that set it itself."""
    for line, out in (
            ("set -e; echo a; false; echo no", "a\n"),
            ("set -e; false && echo x; false || echo y; echo reached", "y\nreached\n"),
            ("set -e; if false; then :; fi; while false; do :; done; echo fine", "fine\n"),
            ("set -e; f() { echo in; false; echo no; }; f; echo no", "in\n"),
            ("set -o errexit; false; echo no", ""),
            ("x=$(set -e; false; echo no); (set -e); false; echo [$x]", "[]\n"),
            ("set -e -- a b; echo $1 $2", "a b\n")):
        got = run(root_shell, line)[1]
        run(root_shell, "set +e")
        assert got == out, line
    assert run(root_shell, "set -e; false; echo no")[0] == 1
    run(root_shell, "set +e; printf 'set -e\\necho one\\nfalse\\necho two\\n' > /tmp/s.sh")
    assert run(root_shell, "source /tmp/s.sh; echo after")[1] == "one\n"
    run(root_shell, "set +e")
    assert run(root_shell, "set -x; echo traced | cat; set +x") == \
        (0, "traced\n", "+ echo traced\n+ cat\n+ set +x\n")
    assert run(root_shell, "set -q")[0] == 2
    assert run(root_shell, "set -e; set -o; set +o; set +e")[1] == (
        "errexit         on\nnounset         off\nxtrace          off\npipefail        off\n"
        "set -o errexit\nset +o nounset\nset +o xtrace\nset +o pipefail\n")


def test_a_subshell_ends_alone_on_set_e_unset_break_continue_and_return(
        root_shell: Shell) -> None:
    """A review of the subshells: its `set -e`, `${y:?}`, `break`, `continue` and
    `return` ended the whole line (or the loop or function around it), and its `shift`
    and `set --` changed the function's `$1`. As in sh, each ends the subshell alone."""
    for line, out in (
            ("(set -e; false; echo inner); echo outer $?", "outer 1\n"),
            ("(echo ${y:?in sub}); echo after-sub", "after-sub\n"),
            ("for i in 1 2 3; do (break); echo $i; done", "1\n2\n3\n"),
            ("for i in 1 2; do (continue); echo $i; done", "1\n2\n"),
            ("f() { (return 3); echo after $?; }; f; echo $?", "after 3\n0\n"),
            ("g() { (shift; echo in $1); echo out $1; }; g a b", "in b\nout a\n"),
            ("h() { (set -- x y; echo in $1); echo out $1; }; h a", "in x\nout a\n")):
        assert run(root_shell, line)[1] == out, line


def test_set_e_spares_what_an_and_or_list_tests(root_shell: Shell) -> None:
    """`f || echo failed` with set -e: a failure inside f (or a block) on the left of
    `||` does not end the line, as in sh."""
    for line, out in (
            ("set -e; f2() { false; echo in-f; }; f2 || echo f-failed", "in-f\n"),
            ("set -e; { false; } || echo group-or", "group-or\n"),
            ("set -e; false && echo x; echo reached", "reached\n")):
        assert run(root_shell, line)[1] == out, line
        run(root_shell, "set +e")


def test_read_cuts_at_ifs_as_sh_does(root_shell: Shell) -> None:
    """`IFS=: read a b` cut at blanks, and `IFS= read -r line` lost the line's leading
    and trailing blanks (compared with bash by hand)."""
    for line, out in (
            ('IFS=: read a b <<< "x:y:z"; echo "[$a] [$b]"', "[x] [y:z]\n"),
            ('IFS= read -r l <<< "   both ends   "; echo "[$l]"', "[   both ends   ]\n"),
            ('read -r l <<< "   both ends   "; echo "[$l]"', "[both ends]\n"),
            ('read a b c <<< "  one   two three four  "; echo "[$a] [$b] [$c]"',
             "[one] [two] [three four]\n"),
            ('IFS=, read a b c <<< "1,,3"; echo "[$a] [$b] [$c]"', "[1] [] [3]\n"),
            ('IFS=" :" read a b <<< " x : y "; echo "[$a] [$b]"', "[x] [y]\n")):
        assert run(root_shell, line)[1] == out, line


def test_getopts_let_and_arithmetic_commands(root_shell: Shell) -> None:
    """`getopts`, `let` and `(( … ))` were "command not found" (bash's answers)."""
    run(root_shell, 'f() { OPTIND=1; while getopts "ab:c" o; do case $o in a) echo A;; '
                    'b) echo B=$OPTARG;; c) echo C;; ?) echo bad;; esac; done; '
                    'shift $((OPTIND-1)); echo rest=$*; }')
    assert run(root_shell, "f -a -b val -ca -bX x y")[1] == \
        "A\nB=val\nC\nA\nB=X\nrest=x y\n"
    _, out, err = run(root_shell, "f -z q")
    assert out == "bad\nrest=q\n" and "illegal option -- z" in err
    assert run(root_shell, 'g() { OPTIND=1; while getopts ":b:" o; do echo "$o '
                           '[$OPTARG]"; done; }; g -b; g -q')[1] == ": [b]\n? [q]\n"
    assert run(root_shell, "f -- -a z")[1] == "rest=-a z\n"
    for line, out in (
            ("let x=1+2 y=4; let x+=3; let i=0; let i++ i++; echo $x $y $i", "6 4 2\n"),
            ("let z=0; echo $?", "1\n"),
            ("i=0; while ((i < 3)); do ((i++)); done; echo $i", "3\n"),
            ("((x = 5 * 2)); (( x > 3 )) && echo $x; ((0)); echo $?", "10\n1\n"),
            ("alias ll=ls; h() { :; }; type -t ll h cd sort", "alias\nfunction\nbuiltin\nfile\n")):
        assert run(root_shell, line)[1] == out, line
    assert run(root_shell, "(( 1 + ))")[0] == 2


def test_trap_exit_runs_when_a_script_or_subshell_ends(
        root_shell: Shell, capfd: pytest.CaptureFixture[str]) -> None:
    """`trap 'rm -f $tmp' EXIT` was "command not found". It runs when the script (or
    the session, or a subshell) ends, with the script's status."""
    from exo.shell.repl import run_script

    status = run_script(root_shell, ["trap 'echo cleanup $?' EXIT", "echo working",
                                     "false"])
    assert status == 1 and capfd.readouterr().out == "working\ncleanup 1\n"
    assert run(root_shell, "(trap 'echo sub-bye' EXIT; echo in); echo out")[1] == \
        "in\nsub-bye\nout\n"
    assert run(root_shell, "trap 'echo bye' EXIT; trap")[1] == "trap -- 'echo bye' EXIT\n"
    assert run(root_shell, "trap - EXIT; trap")[1] == ""
    # Scripts name signals beside EXIT: each is kept (INT's runs on a Ctrl-C: the pty
    # test); an unknown or untrappable one is refused, saying so, status 1.
    assert run(root_shell, "trap 'echo bye' EXIT INT SIGTERM 1; trap")[1] == (
        "trap -- 'echo bye' EXIT\ntrap -- 'echo bye' INT\ntrap -- 'echo bye' TERM\n"
        "trap -- 'echo bye' HUP\n")
    assert run(root_shell, "trap - EXIT INT TERM HUP; trap")[1] == ""
    for line in ("trap x KILL", "trap x NOSUCH", "trap x 99"):
        status, _, err = run(root_shell, line)
        assert status == 1 and "invalid signal specification" in err, line


def test_c_style_for_loops(root_shell: Shell) -> None:
    """`for ((i=0; i<3; i++))` was "not a valid identifier" (split at its ;)."""
    for line, out in (
            # as bash takes them: no ';' before `do`, no space after `for`
            ("for ((i=0;i<2;i++)) do echo $i; done", "0\n1\n"),
            ("for((i=0;i<2;i++)); do echo $i; done", "0\n1\n"),
            ("for((i=0;i<2;i++)) do echo a$i; done", "a0\na1\n"),
            ("for ((i=0;i<2;i++)) do\necho d$i\ndone", "d0\nd1\n"),
            ("for ((i=0;i<3;i++)); do echo $i; done", "0\n1\n2\n"),
            ('for (( i = 10 ; i > 0 ; i -= 4 )); do echo -n "$i "; done; echo', "10 6 2 \n"),
            ("for ((;;)); do echo once; break; done", "once\n"),
            ("n=0; for ((i=0; i<5; i++)); do if ((i % 2)); then continue; fi; ((n++)); "
             "done; echo n=$n", "n=3\n")):
        assert run(root_shell, line)[1] == out, line
    status, _, err = run(root_shell, "for ((i=0; i<; i++)); do echo x; done")
    assert status == 1 and "bad arithmetic" in err
    assert run(root_shell, "for ((i=0; i<3)); do :; done")[0] == 2


def test_set_u_ends_the_line_at_an_unset_variable(root_shell: Shell) -> None:
    """`set -u` was "not supported". An unset variable (or `$1` past the arguments)
    ends the line, saying so; `${x:-…}` and kin, `$#`, `"$@"` and `$RANDOM` do not."""
    for line, out, err in (
            ("set -u; echo $nope; echo after", "", "exo: nope: unbound variable\n"),
            ("set -u; echo ${nope:-def} ${nope-d2} ${nope+alt}x $# \"$@\"; echo ok",
             "def d2 x 0\nok\n", ""),
            ("set -u; f() { echo $1; }; f; echo after", "", "exo: $1: unbound variable\n"),
            ("set -u; echo $((nope + 1))", "", "exo: nope: unbound variable\n")):
        assert run(root_shell, line)[1:] == (out, err), line
        run(root_shell, "set +u")
    assert run(root_shell, "echo $nope ok")[1] == "ok\n"


def test_readonly_refuses_every_change_to_its_variables(root_shell: Shell) -> None:
    """`readonly NAME=V` (scripts' constants): an assignment to it ends the line; every
    builtin that would change or unset it fails, status 1, saying so; a subshell's marks
    end with it."""
    sh = root_shell
    assert run(sh, "readonly ro=1; ro=2; echo no") == (1, "", "exo: ro: readonly variable\n")
    assert run(sh, "ro=3 true")[0] == 1
    for line, err in (("unset ro", "unset: ro: cannot unset: readonly variable\n"),
                      ("read ro <<< hi", "read: ro: readonly variable\n"),
                      ("export ro=5", "export: ro: readonly variable\n"),
                      ("let ro=4", "let: ro: readonly variable\n"),
                      ("getopts a ro -a", "getopts: ro: readonly variable\n"),
                      ("readonly ro=9", "readonly: ro: readonly variable\n")):
        status, _, got = run(sh, line)
        assert (status != 0, got) == (True, err), line
    assert run(sh, "for ro in a; do echo in; done")[0] == 1
    assert run(sh, "f() { local ro=3; echo $ro; }; f")[1] == "1\n"
    assert run(sh, "echo $ro")[1] == "1\n"  # through all of that
    assert run(sh, "(readonly sub=1; echo $sub); sub=2; echo $sub")[1] == "1\n2\n"
    # (with the session's UID and EUID, read-only as in bash)
    assert run(sh, "readonly -p") == (
        0, "readonly EUID=0\nreadonly UID=0\nreadonly ro=1\n", "")
    assert run(sh, "readonly 1a")[0] == 1


def test_dollar_dash_says_the_options_set(root_shell: Shell) -> None:
    """`$-`: the option letters set, "i" in an interactive session (scripts test
    `case $- in *i*)`)."""
    assert run(root_shell, "echo [$-]")[1] == "[]\n"
    assert run(root_shell, "set -eu; echo [$-]; set +eu")[1] == "[eu]\n"
    assert run(root_shell, 'echo "a$-b" ${x-y}')[1] == "ab y\n"
    assert run(root_shell, "case $- in *i*) echo i;; *) echo script;; esac")[1] == "script\n"


def test_declare_sets_variables_and_their_attributes(root_shell: Shell) -> None:
    """bash scripts' `declare` (and `typeset`): -r read-only, -x exported, in a function
    of that call alone unless -g; `local -r` ends with its call; -p shows them; arrays and
    -i are refused in one line."""
    sh = root_shell
    assert run(sh, 'declare A=1 B="x y"; echo $A/$B')[1] == "1/x y\n"
    assert run(sh, "declare -r R=5; R=6")[0] == 1
    assert run(sh, "declare -x E=7; env | grep ^E=")[1] == "E=7\n"
    assert run(sh, "f() { declare L=in; declare -g G=glob; local -r LR=9; echo $L $LR; }; "
                   'f; echo "[$L] $G [$LR]"; LR=3; echo $LR')[1] == "in 9\n[] glob []\n3\n"
    assert run(sh, "declare -p A E R")[1] == "declare -- A=1\ndeclare -x E=7\ndeclare -r R=5\n"
    assert run(sh, "typeset T=t; echo $T; declare -F")[1] == "t\ndeclare -f f\n"
    # (-A: associative arrays, -i: integers, test_syntax)
    assert run(sh, "declare -z x")[0] == 2
    assert run(sh, "declare 1x=3")[0] == 1


def test_shopt_nullglob_and_dotglob(root_shell: Shell) -> None:
    """bash scripts' `shopt -s nullglob` (a loop over `*.txt` with none runs no time) and
    `dotglob`; bash's other options are refused by name, status 1."""
    sh = root_shell
    run(sh, "mkdir -p /tmp/sg; cd /tmp/sg; touch a.txt .hid")
    assert run(sh, "for f in *.none; do echo got $f; done")[1] == "got *.none\n"
    assert run(sh, "shopt -s nullglob; for f in *.none; do echo got; done; echo end")[1] \
        == "end\n"
    assert run(sh, "shopt -q nullglob && shopt -p nullglob")[1] == "shopt -s nullglob\n"
    assert run(sh, "(shopt -u nullglob; echo *.x); echo *.x end")[1] == "*.x\nend\n"
    run(sh, "shopt -u nullglob")
    assert run(sh, "echo *; shopt -s dotglob; echo *; shopt -u dotglob")[1] == \
        "a.txt\n.hid a.txt\n"
    assert run(sh, "shopt")[0] == 0 and run(sh, "shopt -q dotglob")[0] == 1
    status, _, err = run(sh, "shopt -s extglob")
    assert status == 1 and "extglob: not an option" in err


def test_a_bang_inverts_a_block_and_the_session_s_uid_stays(root_shell: Shell) -> None:
    """`! ( … )`, `! { …; }`, `! if`/`for`/`while`… invert the block's status, and a
    failure inside one is an answer that `set -e` spares (both were syntax errors);
    `! !` is bash's double negation. UID and EUID are the session's, read-only as in bash;
    `let` with a malformed expression answers 1, as bash's; `set -x` traces assignments."""
    sh = root_shell
    assert run(sh, "! ( false ); echo $?; ! { true; }; echo $?")[1] == "0\n1\n"
    assert run(sh, "true && ! if false; then :; fi && echo never; echo $?")[1] == "1\n"
    assert run(sh, "false && ! { echo no; }; echo $?")[1] == "1\n"
    assert run(sh, "! for i in 1 2; do false; done && echo inverted")[1] == "inverted\n"
    assert run(sh, "! { echo a; echo b; } | grep -c a; echo $?")[1] == "1\n1\n"
    assert run(sh, "! ! true; echo $?")[1] == "0\n"
    assert run(sh, "(set -e; ! { false; echo inside; }; echo after $?)")[1] == \
        "inside\nafter 1\n"
    assert run(sh, "UID=5; echo reached") == (1, "", "exo: UID: readonly variable\n")
    assert run(sh, "unset EUID; echo $? $UID")[1] == "1 0\n"
    assert run(sh, "let 'x = 1 +'; echo $?")[1] == "1\n"
    assert run(sh, "set -x; a=1; b=\"$a x\"; set +x")[2] == "+ a=1\n+ b='1 x'\n+ set +x\n"


def test_a_block_with_an_ampersand_runs_in_the_background(root_shell: Shell) -> None:
    """`{ …; } &`, `( … ) &`, `for …; done &` ran in the foreground (the `&` dropped):
    each is now a job, run by a copy of the shell (sh's subshell: what it changes stays
    its own); a job with no program of its own has `$!` = its job (`%N`), which `wait`
    and `kill` take; `wait` alone answers 0, as sh's."""
    sh = root_shell
    status, out, err = run(sh, 'x=1; { x=2; /bin/sleep 0.3; echo "in $x"; } & '
                               'echo "after $x"; wait $!; echo "status $? x=$x"')
    assert (status, out, err) == (0, "after 1\nin 2\nstatus 0 x=1\n", "[1] { …; }\n")
    assert run(sh, "(exit 3) & wait $!; echo $?")[1] == "3\n"
    assert run(sh, "{ exit 4; } & wait; echo $?")[1] == "0\n"
    assert run(sh, "for i in 1 2; do echo $i; done > /tmp/bg.txt & wait; cat /tmp/bg.txt"
               )[1] == "1\n2\n"
    assert run(sh, "cd /tmp; { cd /; } & wait; pwd")[1] == "/tmp\n"
    assert run(sh, "sleep 0.1 & echo $!; wait $!; echo $?")[1] == "%1\n0\n"
    status, out, _ = run(sh, "{ /bin/sleep 30; } & kill $!; wait $!; echo $?")
    assert out == "143\n"


def test_exec_runs_a_command_in_place_of_the_shell(root_shell: Shell) -> None:
    """`exec CMD` was "command not found": it runs CMD (never a function of that name)
    and the shell, script or subshell ends with its status (`exec > FILE` alone:
    test_syntax's test_exec_keeps_descriptors_for_the_shell)."""
    from exo.shell.session import Logout

    sh = root_shell
    assert run(sh, '(exec false); echo $?; (exec echo "a  b"; echo never)')[1] == \
        "1\na  b\n"
    assert run(sh, "f() { echo fn; }; (exec f)")[2] == "exo: f: command not found\n"
    with pytest.raises(Logout) as ended:
        run(sh, "exec true")
    assert ended.value.status == 0


def test_funcname_names_the_functions_being_called(root_shell: Shell) -> None:
    """bash's FUNCNAME (scripts' error messages): the innermost function, and as an
    array the calls innermost first; empty outside every function."""
    sh = root_shell
    assert run(sh, 'echo "[$FUNCNAME]"; f() { echo $FUNCNAME; g; }; '
                   'g() { echo "${FUNCNAME[@]}" ${#FUNCNAME[@]}; }; f')[1] == "[]\nf\ng f 2\n"
