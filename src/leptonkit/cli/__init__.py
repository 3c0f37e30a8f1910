"""The ``leptonkit`` command line: one typer module per verb group, assembled in :mod:`leptonkit.cli.main`."""
