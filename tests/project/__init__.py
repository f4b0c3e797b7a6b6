"""Checks of the project as a whole: layers and imports, the docs site, the paper-values table, the
suite's isolation from the user's machine."""
