"""The ``compress`` command line: one module per subcommand, joined in :mod:`compress.cli.main`."""
