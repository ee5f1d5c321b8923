"""The source text of functions, cut from the pinned checkout a build compiled.

Debug information names files as the build saw them (``/build/src/eval.c``
inside the sandbox, the scratch folder's own path without one).
:class:`SourceTree` maps such paths back to the checkout, reads each file
once, lexes it once (one regular expression, so the scan runs in C: comments,
string and character literals, raw strings, preprocessor lines and braces),
and then cuts any number of functions from it.

The rule for one function (``decl_line`` D, the line rows of the function):

1. The declaration line D must name the function (its name without template
   arguments, or ``operator``). Otherwise the text there is not the
   function's own (a compiler-generated destructor points at its class, a
   function made by a macro at the macro's use): the cut is then the lines
   the function's own line rows reach in D's file, from D to the last of
   them (``rule = "lines"``).
2. The body is the first ``{`` after the name, found no later than the last
   line the line rows reach in that file (K&R parameter declarations may sit
   between), up to its matching ``}``. Braces inside comments, strings,
   ``#if 0`` blocks are not counted, and every ``#else``/``#elif`` branch
   starts again from the depth its ``#if`` started at, the first branch's
   depth holding after ``#endif``: a body that opens a brace in both branches
   of an ``#ifdef`` still balances, and so does a function written wholly in
   an ``#else`` branch (zlib's crc32.c has both).
   The cut ends at that ``}`` (``rule = "braces"``): line rows reaching
   past it in the same file are code inlined from a later function and are
   recorded as inlining facts, not as part of this function. With no
   matching brace (a body assembled by macros, braces unbalanced by
   preprocessor tricks), the cut falls back to rule 1's line reach.
3. The cut starts at D, extended upwards over the rest of the declaration
   written on the lines above it (``static int`` on its own line in GNU
   style, ``template <...>``, an attribute), i.e. over non-blank lines that
   are not comments or preprocessor lines and hold no ``;``, ``{``, ``}`` and
   do not end in ``:`` or ``,`` (at most 8 lines).
4. ``top_comment`` is the comment block that ends on the line right above the
   cut (``//`` lines and ``/* */`` blocks, adjacent ones joined, no blank
   line in between; a comment that follows code on its first line is that
   code's, not the function's).

Limits: files outside the checkout (system headers, generated files the build
wrote, anything a path with ``..`` or a symbolic link leads out of the
checkout to) get no text; a file over :data:`MAX_SOURCE_BYTES` is not read;
text that is not UTF-8 is read as Latin-1; NUL characters become U+FFFD.
Lines split at ``\\n``, ``\\r\\n`` and a lone ``\\r``, as the compilers count
them. A function whose body comes from a header included twice with
different macros gets the header's text as written.
"""

from __future__ import annotations

import bisect
import os
import posixpath
import re
import stat
from dataclasses import dataclass
from pathlib import Path

__all__ = ["FunctionText", "MAX_SOURCE_BYTES", "SourceFile", "SourceTree"]

MAX_SOURCE_BYTES = 16 * 1024 * 1024
HEADER_LINES = 8  # how far rule 3 may extend a cut upwards

# One pass over a file: each alternative is one kind of token; the order matters
# (a comment start inside a string is part of the string, and the reverse).
_TOKENS = re.compile(
    r"""
      (?P<pp>^[ \t]*\#(?:[^\n\\/]|\\.|\\\n|/(?![/*]))*)   # a preprocessor line (with continuations)
    | (?P<lc>//(?:[^\n\\]|\\.|\\\n)*)                    # a line comment (continued by a backslash)
    | (?P<bc>/\*.*?(?:\*/|\Z))                           # a block comment
    | (?P<raw>\bR"(?P<delim>[^()\\\s"]{0,16})\(.*?\)(?P=delim)")  # a C++ raw string
    | (?P<str>"(?:[^"\\\n]|\\.|\\\n)*")                  # a string literal
    | (?P<chr>(?<![0-9A-Za-z_])'(?:[^'\\\n]|\\.){1,8}')  # a character literal (not a digit separator)
    | (?P<brace>[{}])
    """,
    re.VERBOSE | re.DOTALL | re.MULTILINE,
)
_DIRECTIVE = re.compile(r"[ \t]*#[ \t]*(\w+)(.*)", re.DOTALL)
_NEWLINES = re.compile(r"\r\n?")


@dataclass(frozen=True, slots=True)
class FunctionText:
    """What was cut for one function."""

    source_code: str
    top_comment: str | None
    first_line: int  # 1-based, inclusive
    last_line: int
    rule: str  # "braces" or "lines"


class SourceFile:
    """One file of the checkout, lexed once: its lines, its code braces, its comments."""

    def __init__(self, text: str) -> None:
        text = _NEWLINES.sub("\n", text.replace("\x00", "\ufffd"))
        self.lines = text.split("\n")
        self._starts = [0] + [m.end() for m in re.finditer("\n", text)]  # offset of each line
        self._lex(text)
        self._comment_starts = [c[0] for c in self._comments]
        self._code_lines = self._code_only_lines(text, self._comments)

    def _lex(self, text: str) -> None:
        """Find comments and code braces; give each brace its nesting depth.

        A ``{`` is keyed by the depth before it, a ``}`` by the depth after it, so the
        brace closing a ``{`` of key k is the next ``}`` of key k. Conditionals: each
        ``#else``/``#elif`` branch starts again at the depth its ``#if`` began with,
        and after ``#endif`` the depth is the one the first branch left (so a brace
        opened in both branches is counted once, and a function written wholly in an
        ``#else`` branch still balances); braces of an ``#if 0`` branch do not count.
        """
        braces_at: list[int] = []  # offsets of code braces, in order
        braces: list[str] = []
        keys: list[int] = []
        comments: list[tuple[int, int]] = []
        frames: list[list] = []  # per open conditional: [depth at #if, depth after branch 1 or None, dead]
        depth = 0
        dead = 0  # open ``#if 0`` branches
        for m in _TOKENS.finditer(text):
            kind = m.lastgroup
            if kind == "brace":
                if dead:
                    continue
                ch = m.group()
                if ch == "{":
                    keys.append(depth)
                    depth += 1
                else:
                    depth -= 1
                    keys.append(depth)
                braces_at.append(m.start())
                braces.append(ch)
            elif kind in ("lc", "bc"):
                comments.append((m.start(), m.end()))
            elif kind == "pp":
                d = _DIRECTIVE.match(m.group())
                if d is None:
                    continue
                word, rest = d.group(1), d.group(2).split("/")[0].strip()
                if word in ("if", "ifdef", "ifndef"):
                    zero = word == "if" and rest in ("0", "(0)")
                    frames.append([depth, None, zero])
                    dead += zero
                elif word in ("elif", "else") and frames:
                    frame = frames[-1]
                    if frame[2]:  # leaving an ``#if 0`` branch: what follows is live, from the same depth
                        frame[2] = False
                        dead -= 1
                    elif frame[1] is None:
                        frame[1] = depth
                    depth = frame[0]
                elif word == "endif" and frames:
                    frame = frames.pop()
                    if frame[2]:
                        dead -= 1
                    elif frame[1] is not None:
                        depth = frame[1]
        self._braces_at = braces_at
        self._braces = braces
        self._comments = comments
        closing: dict[int, list[int]] = {}
        for i, (ch, key) in enumerate(zip(braces, keys)):
            if ch == "}":
                closing.setdefault(key, []).append(i)
        self._keys = keys
        self._closing = closing

    def _code_only_lines(self, text: str, comments: list[tuple[int, int]]) -> list[str]:
        """Each line with its comments blanked out (for telling code, comment and blank lines apart)."""
        if not comments:
            return self.lines
        parts, pos = [], 0
        for a, b in comments:
            parts.append(text[pos:a])
            parts.append(re.sub(r"[^\n]", " ", text[a:b]))
            pos = b
        parts.append(text[pos:])
        return "".join(parts).split("\n")

    # ------------------------------------------------------------ queries

    def line_of(self, offset: int) -> int:
        """The 1-based line holding ``offset``."""
        return bisect.bisect_right(self._starts, offset)

    def text(self, line: int) -> str | None:
        return self.lines[line - 1] if 1 <= line <= len(self.lines) else None

    def cut(self, decl_line: int, name: str, own_lines: list[int]) -> FunctionText | None:
        """The function declared at ``decl_line`` named ``name``; ``own_lines`` are its line rows in this file."""
        n = len(self.lines)
        if not 1 <= decl_line <= n:
            return None
        reach = max((ln for ln in own_lines if decl_line <= ln <= n), default=decl_line)
        start = self._header_start(decl_line)
        end, rule = reach, "lines"
        name_at = self._name_offset(decl_line, name)
        if name_at is not None:
            close = self._matching_body(name_at, reach)
            if close is not None:
                end, rule = close, "braces"
        code = "\n".join(self.lines[start - 1 : end])
        return FunctionText(
            source_code=code, top_comment=self._comment_above(start), first_line=start, last_line=end, rule=rule
        )

    def _name_offset(self, line: int, name: str) -> int | None:
        base = name.strip()
        if base.startswith("operator"):
            pattern = r"\boperator\b"
        else:
            base = base.split("<", 1)[0].split("(", 1)[0].strip()
            if not base:
                return None
            pattern = (r"~\s*" + re.escape(base[1:]) if base.startswith("~") else r"\b" + re.escape(base)) + r"\b"
        m = re.search(pattern, self._code_lines[line - 1])
        return None if m is None else self._starts[line - 1] + m.start()

    def _matching_body(self, after: int, reach: int) -> int | None:
        """The line of the ``}`` closing the first ``{`` after offset ``after`` (opened by line ``reach``)."""
        i = bisect.bisect_left(self._braces_at, after)
        if i >= len(self._braces) or self._braces[i] != "{":
            return None
        if self.line_of(self._braces_at[i]) > reach:
            return None
        candidates = self._closing.get(self._keys[i], [])
        j = bisect.bisect_right(candidates, i)
        if j >= len(candidates):
            return None
        return self.line_of(self._braces_at[candidates[j]])

    def _header_start(self, decl_line: int) -> int:
        start = decl_line
        while start > 1 and decl_line - start < HEADER_LINES:
            raw, code = self.lines[start - 2], self._code_lines[start - 2].strip()
            if not code or code.startswith("#") or any(c in code for c in ";{}") or code[-1] in ":,\\":
                break
            if not raw.strip():
                break
            start -= 1
        return start

    def _comment_above(self, start: int) -> str | None:
        first = None
        ln = start - 1
        while ln >= 1 and self.lines[ln - 1].strip() and not self._code_lines[ln - 1].strip():
            # only comment on this line: the comment holding its last character, and where that one starts
            line_start, line = self._starts[ln - 1], self.lines[ln - 1]
            last = line_start + len(line.rstrip()) - 1
            k = bisect.bisect_right(self._comment_starts, last) - 1
            if k < 0:
                break
            a, b = self._comments[k]
            if not a <= last < b or b > line_start + len(line):
                break
            top = self.line_of(a)
            if self._code_lines[top - 1].strip():
                break  # code before the comment on its first line: the comment belongs to that code
            first, ln = top, top - 1
        if first is None:
            return None
        return "\n".join(self.lines[first - 1 : start - 1])


class SourceTree:
    """The checkout of one source as one build saw it: debug paths mapped back, files read once.

    ``views`` are the folders the build saw the checkout at (``/build/src`` in the
    sandbox). One per build. ``shared`` is a cache of lexed files that several
    trees of the same checkout may pass (the builds of one source under every
    configuration read the same files): keyed by the file's identity, size and
    modification time, so a changed file is read again. A :class:`SourceFile` does
    not change once made, so builds on other threads may share them.
    """

    def __init__(self, root: Path, views: list[str], *, shared: dict | None = None) -> None:
        self.root = Path(os.path.realpath(root))
        self.views = [posixpath.normpath(v) for v in views if v]
        self._files: dict[str, SourceFile | None] = {}
        self._shared = shared

    def local_path(self, debug_path: str) -> Path | None:
        """Where a path from debug information is in the checkout (None: outside it, or not a regular file)."""
        if not debug_path or "\x00" in debug_path:
            return None
        norm = posixpath.normpath(debug_path.replace("\\", "/"))
        for view in self.views:
            if norm.startswith(view + "/"):
                rel = norm[len(view) + 1 :]
                break
        else:
            return None
        real = Path(os.path.realpath(self.root / rel))
        if not real.is_relative_to(self.root):
            return None  # a link or a path leading out of the checkout
        try:
            st = os.stat(real)
        except OSError:
            return None
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_SOURCE_BYTES:
            return None
        return real

    def file(self, debug_path: str | None) -> SourceFile | None:
        """The lexed file for a debug path (None for files outside the checkout); each file is read once."""
        if not debug_path:
            return None
        if debug_path in self._files:
            return self._files[debug_path]
        src = None
        path = self.local_path(debug_path)
        key = None
        if path is not None and self._shared is not None:
            try:
                st = os.stat(path)
                key = (str(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
            except OSError:
                key = None
            if key is not None and key in self._shared:
                src = self._files[debug_path] = self._shared[key]
                return src
        if path is not None:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
                with os.fdopen(fd, "rb") as fh:
                    data = fh.read(MAX_SOURCE_BYTES + 1)
            except OSError:
                data = None
            if data is not None and len(data) <= MAX_SOURCE_BYTES:
                try:
                    text = data.decode("utf-8")
                except UnicodeDecodeError:
                    text = data.decode("latin-1")
                src = SourceFile(text)
        self._files[debug_path] = src
        if key is not None and self._shared is not None:  # a key is made only with a shared cache
            self._shared[key] = src
        return src

    def cut_functions(self, functions) -> list[tuple[str | None, str | None, list[str | None]]]:
        """For each function (``name``, ``source_file``, ``decl_line``, ``lines`` of ``source_file``/``line``):
        its ``source_codes``, its ``top_comments`` and the text of each of its line rows."""
        out = []
        for f in functions:
            code = comment = None
            src = self.file(f.source_file) if f.decl_line else None
            if src is not None:
                own = [r.line for r in f.lines if r.source_file == f.source_file]
                cut = src.cut(f.decl_line, f.name, own)
                if cut is not None:
                    code, comment = cut.source_code, cut.top_comment
            texts = []
            for r in f.lines:
                rf = self.file(r.source_file) if r.line > 0 else None
                texts.append(rf.text(r.line) if rf is not None else None)
            out.append((code, comment, texts))
        return out
