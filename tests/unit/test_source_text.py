"""Cutting a function's text from its file: the rule of assemblage.sources.text, case by case.

Expected texts are written out here by hand from tests/fixtures/sourcetext/styles.c,
so a change of the rule shows up as a diff of text, not of numbers.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from assemblage.sources.text import MAX_SOURCE_BYTES, SourceFile, SourceTree

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "sourcetext"
STYLES = (FIXTURE / "styles.c").read_text()
LINES = STYLES.split("\n")


def line_of(prefix: str) -> int:
    return next(i for i, ln in enumerate(LINES, 1) if ln.startswith(prefix))


def cut(prefix: str, name: str, own: list[int] | None = None):
    decl = line_of(prefix)
    return SourceFile(STYLES).cut(decl, name, own if own is not None else [decl])


def test_gnu_style_takes_the_return_type_line_and_the_block_comment_above() -> None:
    got = cut("gnu_style (", "gnu_style", [line_of("gnu_style ("), line_of("  return -x;")])
    assert got.rule == "braces"
    assert got.source_code == "int\ngnu_style (int x)\n{\n  if (x > 10)\n    return clamp (x, 0, 100);\n  return -x;\n}"
    assert got.top_comment == (
        "/*\n * GNU style: the return type on its own line.\n * A second line of the comment.\n */"
    )


def test_k_and_r_parameters_sit_between_declarator_and_body() -> None:
    got = cut("int kr_style(a, b)", "kr_style", [line_of("    return a * b + 1;")])
    assert got.source_code == "int kr_style(a, b)\n    int a;\n    int b;\n{\n    return a * b + 1;\n}"
    assert got.top_comment == "// K&R style: parameters declared between the\n// declarator and the body."


def test_a_brace_opened_in_both_branches_of_an_ifdef_is_counted_once() -> None:
    got = cut("int with_ifdef", "with_ifdef", [line_of("    return y + x;")])
    assert got.rule == "braces"
    assert got.source_code.endswith("    }\n    return y + x;\n}")
    assert got.last_line == line_of("    return y + x;") + 1


def test_braces_in_comments_strings_and_characters_do_not_count() -> None:
    got = cut("int braces_in_text", "braces_in_text")
    assert got.source_code.splitlines()[-1] == "}"
    assert "return (int)strlen(s)" in got.source_code
    assert got.top_comment is None  # a blank line separates it from the function above


def test_a_function_in_the_else_branch_of_if_0() -> None:
    decl = [i for i, ln in enumerate(LINES, 1) if ln.startswith("int in_else_branch")][1]
    got = SourceFile(STYLES).cut(decl, "in_else_branch", [decl])
    assert got.rule == "braces"
    assert got.source_code == "int in_else_branch(int x) {\n    return x + 1;\n#endif\n}"


def test_one_line_function_and_a_trailing_comment_that_is_not_a_leading_one() -> None:
    got = cut("int one_line", "one_line")
    assert got.source_code == "int one_line(int x) { return x * 3; }  /* trailing comment of the code */"
    assert (got.first_line, got.last_line) == (line_of("int one_line"), line_of("int one_line"))


def test_a_macro_made_function_gets_its_line_rows_not_a_guess() -> None:
    got = cut("GETTER(alpha", "get_alpha")
    assert got.rule == "lines"
    assert got.source_code == "GETTER(alpha, 1)"
    assert got.top_comment is None


def test_a_header_function_and_an_artificial_one() -> None:
    header = (FIXTURE / "styles.h").read_text()
    lines = header.split("\n")
    decl = next(i for i, ln in enumerate(lines, 1) if "clamp(" in ln)
    got = SourceFile(header).cut(decl, "clamp", [decl + 1])
    assert (
        got.source_code == "static inline int clamp(int v, int lo, int hi) {\n"
        "    return v < lo ? lo : v > hi ? hi : v;\n}"
    )
    assert got.top_comment.startswith("/* Defined in a header")
    # a compiler-made destructor points at its class: only the line rows are cut, not the class body
    cls = "class Circle : public Shape {\npublic:\n    double r;\n};\n"
    got = SourceFile(cls).cut(1, "~Circle", [1])
    assert (got.source_code, got.rule) == ("class Circle : public Shape {", "lines")


def test_template_arguments_and_operators_are_found_by_their_base_name() -> None:
    text = (
        "template <typename T>\nT twice(T v) {\n    return v + v;\n}\n"
        "struct P { int x; };\nbool operator<(P a, P b) { return a.x < b.x; }\n"
    )
    got = SourceFile(text).cut(2, "twice<int>", [3])
    assert got.source_code == "template <typename T>\nT twice(T v) {\n    return v + v;\n}"
    assert SourceFile(text).cut(6, "operator<", [6]).rule == "braces"


def test_line_endings_nul_and_raw_strings() -> None:
    text = 'int f(void)\r\n{\r\n    const char *s = R"x(}})x";\r\n    return 0;\r\n}\r\nint g(void)\r{ return 1; }\r'
    src = SourceFile(text)
    assert src.cut(1, "f", [4]).source_code == 'int f(void)\n{\n    const char *s = R"x(}})x";\n    return 0;\n}'
    assert src.cut(6, "g", [6]).source_code == "int g(void)"  # a lone CR ends a line, as for the compilers
    assert src.cut(6, "g", [7]).source_code == "int g(void)\n{ return 1; }"
    assert "\x00" not in SourceFile("int h(void) { return '\x00'; }").lines[0]


def test_tree_maps_build_paths_back_and_reads_each_file_once(tmp_path: Path) -> None:
    root = tmp_path / "checkout"
    (root / "src").mkdir(parents=True)
    (root / "src" / "a.c").write_text("int a(void) { return 1; }\n")
    tree = SourceTree(root, ["/build/src"])
    assert tree.local_path("/build/src/src/a.c") == (root / "src" / "a.c").resolve()
    assert tree.local_path("/build/src/builddir/../src/a.c") == (root / "src" / "a.c").resolve()
    assert tree.local_path("/usr/include/stdio.h") is None  # outside the checkout: no text
    assert tree.local_path("/build/src/src/missing.c") is None
    first = tree.file("/build/src/src/a.c")
    (root / "src" / "a.c").write_text("changed\n")
    assert tree.file("/build/src/src/a.c") is first  # read once per build


def test_trees_of_one_checkout_share_lexed_files_until_a_file_changes(tmp_path: Path) -> None:
    """The builds of one source share its lexed files (one lexing for every configuration); a changed file
    (size or modification time) is read again, a file of another checkout is never taken."""
    root = tmp_path / "checkout"
    root.mkdir()
    (root / "a.c").write_text("int a(void) { return 1; }\n")
    shared: dict = {}
    first = SourceTree(root, ["/build/src"], shared=shared).file("/build/src/a.c")
    assert first is not None and len(shared) == 1
    assert SourceTree(root, ["/build/src"], shared=shared).file("/build/src/a.c") is first
    assert SourceTree(root, ["/build/src"]).file("/build/src/a.c") is not first  # no cache: read again
    (root / "a.c").write_text("int a(void) { return 22; }\n")
    again = SourceTree(root, ["/build/src"], shared=shared).file("/build/src/a.c")
    assert again is not first and "22" in again.lines[0]
    other = tmp_path / "other"
    other.mkdir()
    (other / "a.c").write_text("int a(void) { return 333; }\n")
    assert "333" in SourceTree(other, ["/build/src"], shared=shared).file("/build/src/a.c").lines[0]


def test_tree_never_leaves_the_checkout(tmp_path: Path) -> None:
    secret = tmp_path / "secret.h"
    secret.write_text("int secret(void) { return 42; }\n")
    root = tmp_path / "checkout"
    root.mkdir()
    os.symlink(secret, root / "leak.h")
    os.symlink(tmp_path, root / "up")
    (root / "fifo").mkdir()
    tree = SourceTree(root, ["/build/src"])
    assert tree.file("/build/src/leak.h") is None
    assert tree.file("/build/src/up/secret.h") is None
    assert tree.file("/build/src/../secret.h") is None
    assert tree.file("/build/src/fifo") is None  # not a regular file
    assert tree.file("/build/srcx/leak.h") is None  # a sibling of the view is not the view
    inside = root / "real.c"
    inside.write_text("int r(void) { return 0; }\n")
    os.symlink(inside, root / "alias.c")
    assert tree.file("/build/src/alias.c").lines[0] == "int r(void) { return 0; }"  # a link inside is fine


def test_tree_limits_size_and_decodes_latin1(tmp_path: Path) -> None:
    (tmp_path / "big.c").write_bytes(b"x" * (MAX_SOURCE_BYTES + 1))
    (tmp_path / "latin.c").write_bytes("/* caf\xe9 */\nint f(void) { return 0; }\n".encode("latin-1"))
    tree = SourceTree(tmp_path, ["/build/src"])
    assert tree.file("/build/src/big.c") is None
    assert tree.file("/build/src/latin.c").lines[0] == "/* café */"


@pytest.mark.parametrize("name", ["", "   ", "<lambda>"])
def test_names_that_cannot_be_found_fall_back_to_line_rows(name: str) -> None:
    got = SourceFile("int f(void) {\n    return 0;\n}\n").cut(1, name, [2])
    assert (got.rule, got.last_line) == ("lines", 2)


def test_an_else_branch_starts_again_from_the_depth_of_its_if() -> None:
    got = cut("int two_headers(int x) {", "two_headers")
    assert got.rule == "braces"
    assert got.source_code == "int two_headers(int x) {\n#endif\n    return x - 1;\n}"
    assert got.top_comment is None  # the #ifdef line stands between the comment and the function
