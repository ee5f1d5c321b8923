"""Provenance read back from producers: compiler, version, flags, level, and the majority rule."""

from __future__ import annotations

import pytest

from assemblage.binaries.model import Producer
from assemblage.binaries.producer import observed_opt, opt_from_flags, parse_comment, parse_producer


def test_gcc_producer_with_recorded_switches():
    p = parse_producer("GNU C17 12.2.0 -mtune=generic -march=x86-64 -g -O2 -fasynchronous-unwind-tables")
    assert (p.compiler, p.version, p.opt) == ("gcc", "12.2.0", "O2")
    assert p.flags == ("-mtune=generic", "-march=x86-64", "-g", "-O2", "-fasynchronous-unwind-tables")


def test_gcc_without_an_o_switch_is_o0_but_without_switches_unknown():
    assert parse_producer("GNU C++17 11.3.0 -mtune=generic -march=x86-64 -g").opt == "O0"
    assert parse_producer("GNU C17 12.2.0").opt is None


def test_clang_command_line_drops_paths_and_outputs():
    raw = (
        "Debian clang version 19.1.7 (3~deb12u1) /usr/lib/llvm-19/bin/clang --driver-mode=g++ -g -Os "
        "-grecord-command-line -o out /src/a.cpp -dumpdir out-"
    )
    p = parse_producer(raw)
    assert (p.compiler, p.version, p.opt) == ("clang", "19.1.7", "Os")
    assert p.flags == ("-g", "-Os", "-grecord-command-line")


def test_clang_without_recorded_command_line_has_unknown_level():
    p = parse_producer("Debian clang version 14.0.6")
    assert (p.compiler, p.version, p.opt, p.flags) == ("clang", "14.0.6", None, ())


def test_assembler_is_not_a_compiler():
    assert parse_producer("GNU AS 2.40").compiler == "gas"


@pytest.mark.parametrize(
    "flags, level",
    [
        (["-O2", "-O3"], "O3"),
        (["-O"], "O1"),
        (["-Ofast"], "Ofast"),
        (["-Oz"], "Oz"),
        (["-Og"], "Og"),
        (["-O9"], "O3"),
        (["-g"], None),
    ],
)
def test_last_o_switch_wins(flags, level):
    assert opt_from_flags(flags) == level


def test_comment_section_entries():
    ps = parse_comment(
        b"GCC: (Debian 12.2.0-14) 12.2.0\0Debian clang version 19.1.7 (3~deb12u1)\0GCC: (Debian 12.2.0-14) 12.2.0\0"
    )
    assert [(p.compiler, p.version, p.source) for p in ps] == [
        ("gcc", "12.2.0", "comment"),
        ("clang", "19.1.7", "comment"),
    ]


def _p(opt, compiler="gcc", flags=("-O?",)):
    return Producer("x", compiler, "1", tuple(flags), opt)


def test_observed_opt_is_majority_of_units_with_functions():
    units = [
        (_p("O2"), 10),
        (_p("O2"), 3),
        (_p("O0"), 50),
        (_p("O0"), 0),
        (_p("O0"), 0),
        (Producer("GNU AS 2.40", "gas", "2.40"), 4),
    ]
    assert observed_opt(units)[0] == "O2"


def test_observed_opt_tie_goes_to_more_functions_and_ignores_unknown():
    assert observed_opt([(_p("O1"), 2), (_p("O3"), 9), (_p(None), 30), (None, 5)])[0] == "O3"
    assert observed_opt([(None, 1)]) == (None, ())


def test_switch_values_stay_with_their_switch_and_repeats_are_dropped():
    # what clang-19 -grecord-gcc-switches really records (llvm-dwarfdump-19 shows it so)
    raw = (
        "Debian clang version 19.1.7 (3~deb12u1) /usr/lib/llvm-19/bin/clang -g -grecord-command-line -O2 "
        "-D FOO=1 -I /usr/include -include cfg.h -g -c p.c -o p.o"
    )
    p = parse_producer(raw)
    assert p.flags == ("-grecord-command-line", "-O2", "-DFOO=1", "-I/usr/include", "-include cfg.h", "-g")
    assert p.opt == "O2"
    # gcc repeats -g when both the build and our wrapper ask for it
    g = parse_producer("GNU C17 12.2.0 -mtune=generic -march=x86-64 -g -g -O2 -fasynchronous-unwind-tables")
    assert g.flags == ("-mtune=generic", "-march=x86-64", "-g", "-O2", "-fasynchronous-unwind-tables")


def test_last_o_switch_still_wins_after_dropping_repeats():
    p = parse_producer("GNU C17 12.2.0 -O2 -O0 -O2 -O0 -g")
    assert p.flags == ("-O2", "-O0", "-g") and p.opt == "O0"
