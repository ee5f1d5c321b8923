"""Writers of an export: Parquet tables, the Assemblage SQLite file, objects, manifest and datasheet."""
