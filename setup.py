"""The one C extension: assemblage.corpus.export._batches (see assemblage/corpus/export/batches.py).

Everything else is in pyproject.toml. The extension links the system's SQLite library (Debian:
libsqlite3-dev); it is optional, so an install without a C compiler or the headers goes on without it
(exports then write every Parquet table after the copy, in-process).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "assemblage.corpus.export._batches",
            ["assemblage/corpus/export/_batches.c"],
            libraries=["sqlite3"],
            extra_compile_args=["-O2"],
            optional=True,
        )
    ]
)
