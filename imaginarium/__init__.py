"""The ``imaginarium`` command line: one entry point that dispatches to each package."""
