"""PDB: the MSF container (:mod:`.msf`), CodeView records (:mod:`.cv`), the reader (:mod:`.reader`) and producers."""

from .msf import CorruptPdb
from .producers import majority_opt, producers_from_compiles
from .reader import (
    CompileRecord,
    PdbFile,
    PdbInlineSite,
    PdbModule,
    PdbProcedure,
    PdbPublic,
    pdb_path_candidates,
    read_pdb,
    read_pdb_identity,
)

__all__ = [
    "CompileRecord",
    "CorruptPdb",
    "PdbFile",
    "PdbInlineSite",
    "PdbModule",
    "PdbProcedure",
    "PdbPublic",
    "majority_opt",
    "pdb_path_candidates",
    "producers_from_compiles",
    "read_pdb",
    "read_pdb_identity",
]
