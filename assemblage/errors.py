"""The errors Assemblage raises on purpose.

Inner code raises these; the CLI catches them at the top and turns each family
into its own exit code and a message that says how to fix the problem. Errors
of third-party libraries (pyelftools, pefile, botocore, SQLAlchemy, docker) are
translated into these where they arise and never reach users raw.

    AssemblageError                 exit 1
    ├── RecipeError                 exit 2  (a list of located problems)
    ├── SourceError                 exit 3  (fetching or unpacking a source)
    │   ├── UnsafeArchiveError      (an archive tried to escape its folder)
    │   └── FetchRefusedError       (the fetch policy refused a path or an address)
    ├── ToolchainError              exit 4  (unknown or not installed)
    ├── BuildError                  exit 5  (the build machinery itself, not a compile error)
    ├── InvalidBinaryError          exit 6  (a file we cannot parse as ELF/PE/PDB)
    │   └── PdbMismatchError        (a PDB that does not belong to the PE)
    ├── StorageError                exit 7  (object store or database unavailable)
    ├── SettingsError               exit 8  (invalid or unsafe settings: unknown key, bad value, default secret)
    ├── FleetError                  exit 10 (EC2 / Auto Scaling / IAM calls of `assemblage fleet`)
    ├── LockError                   exit 2  (a lock file that does not validate)
    ├── DriftError                  exit 11 (a lock's toolchain, image or source differs here)
    ├── SelectionError              exit 2  (a corpus filter or export option that does not validate)
    └── ExportError                 exit 12 (an export that cannot be written: object missing or corrupt, ...)
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "AssemblageError",
    "BuildError",
    "DriftError",
    "ExportError",
    "FetchRefusedError",
    "FleetError",
    "InvalidBinaryError",
    "LockError",
    "PdbMismatchError",
    "Problem",
    "RecipeError",
    "SelectionError",
    "SettingsError",
    "SourceError",
    "StorageError",
    "ToolchainError",
    "UnsafeArchiveError",
]


class AssemblageError(Exception):
    """Base of every error Assemblage raises deliberately."""

    exit_code = 1


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem in a recipe: where (``sources[1].ref``) and what."""

    location: str
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}" if self.location else self.message


class RecipeError(AssemblageError):
    """A recipe that does not validate. Carries every problem, not just the first."""

    exit_code = 2

    def __init__(self, problems: list[Problem], *, file: str | None = None) -> None:
        self.problems = list(problems)
        self.file = file
        where = f"{file}: " if file else ""
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"{where}{len(self.problems)} problem(s) in recipe\n{lines}")


class SourceError(AssemblageError):
    """A source could not be fetched, pinned or unpacked."""

    exit_code = 3


class UnsafeArchiveError(SourceError):
    """An archive member would land outside the extraction folder, or the archive is too big."""


class FetchRefusedError(SourceError):
    """A source outside the service's source root, or a URL that resolves to an address fetches may not reach."""


class ToolchainError(AssemblageError):
    """A toolchain is unknown, cannot target a platform/arch, or is not installed."""

    exit_code = 4


class BuildError(AssemblageError):
    """The build machinery failed (not the project's own compile error)."""

    exit_code = 5


class InvalidBinaryError(AssemblageError):
    """A file cannot be analysed: not ELF/PE/PDB, truncated, corrupt or over budget."""

    exit_code = 6

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class PdbMismatchError(InvalidBinaryError):
    """The PDB's GUID/age differ from the CodeView record of the PE."""


class StorageError(AssemblageError):
    """The object store or the database cannot be reached or refused a write."""

    exit_code = 7


class SettingsError(AssemblageError):
    """The settings are invalid or unsafe for this environment (``assemblage.settings``; docs/settings.md)."""

    exit_code = 8


class FleetError(AssemblageError):
    """An AWS call of the fleet commands failed (credentials, a missing group, throttling)."""

    exit_code = 10  # 8 is invalid settings, 9 a run with failed builds


class LockError(AssemblageError):
    """A lock (``assemblage lock``'s JSON) that is not JSON or does not validate; says where."""

    exit_code = 2


class DriftError(AssemblageError):
    """Rebuilding a lock here would not use what it pins (toolchain version, image digest, source)."""

    exit_code = 11  # 8 is invalid settings, 9 a run with failed builds, 10 fleet

    def __init__(
        self, differences: list, *, hint: str = "pass --allow-drift to rebuild anyway and record them"
    ) -> None:
        self.differences = list(differences)
        lines = "\n".join(f"  {d}" for d in self.differences)
        super().__init__(f"{len(self.differences)} difference(s) between the lock and this machine; {hint}\n{lines}")


class SelectionError(AssemblageError):
    """A corpus selection or export option that does not validate (an unknown filter, a bad range, ...).

    Carries every problem, each with where it was given (``--where size``, ``split``).
    """

    exit_code = 2

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(str(p) for p in self.problems) or "invalid selection")


class ExportError(AssemblageError):
    """An export that cannot be written: an object missing from the store or not matching its sha256,
    an output folder that is not empty."""

    exit_code = 12  # 9 is `build`'s "some builds did not succeed", 10 a fleet error, 11 lock drift
