"""How the Parquet tables are cut, in a module without pyarrow (the export reads it before it needs pyarrow)."""

ROW_GROUP = 65_536  # rows of a row group, at most
ROW_GROUP_BYTES = 8 << 20  # or this much Arrow data, whichever comes first
ROWS_PER_FILE = 1_048_576  # a new file every so many rows
