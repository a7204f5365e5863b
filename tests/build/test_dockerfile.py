"""The Dockerfile parser and docker's variable expansion."""

from __future__ import annotations

import pytest

from ocirun.build.dockerfile import DockerfileError, expand, expand_words, key_values, parse


def test_continuations_comments_and_json_form():
    df = parse(
        "# syntax=docker/dockerfile:1\n"
        "ARG V=1\n"
        "FROM busybox AS base\n"
        "RUN echo a \\\n"
        "# a comment inside the instruction\n"
        "    && echo b\n"
        "\n"
        "cmd [\"sh\", \"-c\", \"echo hi\"]\n"
        "COPY --chown=1:2 --from=base a b /dst/\n"
    )
    cmds = [(i.cmd, i.line) for i in df.instructions]
    assert cmds == [("ARG", 2), ("FROM", 3), ("RUN", 4), ("CMD", 8), ("COPY", 9)]
    run = df.instructions[2]
    assert run.rest == "echo a && echo b" and run.json_args is None
    assert df.instructions[3].json_args == ["sh", "-c", "echo hi"]
    assert df.instructions[4].flags == {"chown": "1:2", "from": "base"}
    assert df.instructions[4].rest == "a b /dst/"


def test_heredocs_and_mounts():
    from ocirun.build.heredoc import run_argv

    df = parse(
        "FROM x\n"
        'RUN ["sh", "-c", "cat <<EOF"]\n'
        "RUN --mount=type=cache,target=/x --mount=type=tmpfs,dst=/t <<EOF\n"
        "# kept: a body's comment\n"
        "EOF\n"
        "COPY <<A <<-'B' /d/\n"
        "a $X\n"
        "A\n"
        "\tb\n"
        "\tB\n"
        "RUN cat <<<here && python3 <<PY\n"
        "print(1)\n"
        "PY\n"
        "LABEL after=1\n"
    )
    exec_form, script, copy, py, label = df.instructions[1:]
    assert exec_form.json_args == ["sh", "-c", "cat <<EOF"] and exec_form.heredocs == []
    assert [(h.name, h.body) for h in script.heredocs] == [("EOF", "# kept: a body's comment\n")]
    assert script.mounts == [{"type": "cache", "target": "/x"}, {"type": "tmpfs", "dst": "/t"}]
    assert [(h.name, h.body, h.expand, h.chomp) for h in copy.heredocs] == [
        ("A", "a $X\n", True, False), ("B", "b\n", False, True)]
    assert run_argv(script.rest, script.heredocs, ["/bin/sh", "-c"]) == (
        ["/bin/sh", "-c", "# kept: a body's comment\n"], None)
    assert run_argv(py.rest, py.heredocs, ["/bin/sh", "-c"])[0] == [
        "/bin/sh", "-c", "cat <<<here && python3 <<PY\nprint(1)\nPY"]
    assert (label.cmd, label.line) == ("LABEL", 14)


def test_escape_directive():
    df = parse("# escape=`\nFROM scratch\nCOPY a `\n  b c:\\dir\\\n")
    assert df.escape == "`" and df.instructions[1].rest == "a b c:\\dir\\"


@pytest.mark.parametrize(
    "text,message",
    [
        ("FROM scratch\nFOO bar\n", "Dockerfile:2: unknown instruction: FOO"),
        ("RUN true\n", "Dockerfile:1: RUN: no FROM before it"),
        ("FROM scratch\nCOPY onlyone\n", "Dockerfile:2: COPY requires at least 2 arguments"),
        ("FROM scratch\nCOPY --bogus=1 a b\n", "Dockerfile:2: COPY: unknown flag: --bogus"),
        ("FROM a b c\n", "Dockerfile:1: FROM: expected 'FROM image [AS name]'"),
        ("FROM scratch\nUSER a b\n", "Dockerfile:2: USER takes at most 1 argument"),
        ("", "Dockerfile: the file has no instructions"),
    ],
)
def test_syntax_errors_name_file_line_and_instruction(text, message):
    with pytest.raises(DockerfileError) as exc:
        parse(text)
    assert exc.value.message.startswith(message), exc.value.message


def test_expansion_forms():
    env = {"A": "x", "EMPTY": ""}
    assert expand("${A}-$A-${B:-dflt}-${A:+set}-${B:+unset}-${EMPTY-e}-${EMPTY:-e}", env) == "x-x-dflt-set---e"
    assert expand(r"\$A '$A' \"$A\"", env) == "$A $A \"x\""
    assert expand_words('a "b c" $A ${B:-d e}', env) == ["a", "b c", "x", "d e"]
    with pytest.raises(Exception, match="B: must be set"):
        expand("${B:?must be set}", env)


def test_env_and_label_pairs():
    df = parse('FROM scratch\nENV A=1 B="two words" C=${A}x\nENV OLD value with spaces\nLABEL "k 1"=v k2=\'$A\'\n')
    env = {"A": "1"}
    assert key_values(df.instructions[1], env, "\\", "Dockerfile") == [("A", "1"), ("B", "two words"), ("C", "1x")]
    assert key_values(df.instructions[2], env, "\\", "Dockerfile") == [("OLD", "value with spaces")]
    assert key_values(df.instructions[3], env, "\\", "Dockerfile") == [("k 1", "v"), ("k2", "$A")]
