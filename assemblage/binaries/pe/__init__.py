"""PE: the image (:mod:`.image`), DWARF inside it (:mod:`.dwarf`, mingw) and the analysis (:mod:`.analysis`)."""

from .analysis import CodeView, PdataEntry, analyze_pe, classify_pdata, read_codeview, read_pdata
from .image import ImageReader, string_table_name

__all__ = [
    "CodeView",
    "ImageReader",
    "PdataEntry",
    "analyze_pe",
    "classify_pdata",
    "read_codeview",
    "read_pdata",
    "string_table_name",
]
