"""The ``assemblage`` command line (:mod:`assemblage.cli.main`).

A command imports a lot before it does anything (SQLAlchemy and the models, pydantic, typer and rich; an
export also pyarrow) and then mostly streams rows through C. Python's default collection threshold (one
collection every 700 new container objects) walked that growing heap 250 times in an export of
bench/export.py, 0.15 to 0.25 s of its CPU; one every 10,000 costs 0.05 s and no measurable memory (garbage
in cycles waits at most 10,000 allocations longer). :func:`assemblage.cli.main.main` also freezes the heap
before the interpreter exits, which otherwise walks it again while it tears the modules down (0.25 s).
"""

import gc

gc.set_threshold(10_000, 20, 100)
