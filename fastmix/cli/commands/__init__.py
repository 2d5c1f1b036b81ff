"""One module per ``fastmix`` sub-command (see :mod:`fastmix.cli`)."""
