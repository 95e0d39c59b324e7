"""Remote devices over SSH (OpenSSH client, the user's config and keys) and the remote agent run.

>>> from compress.remote import RemoteHost, parse_remote   # doctest: +SKIP
"""

from compress.remote.ssh import RemoteHost, parse_remote, quote_command

__all__ = ["RemoteHost", "parse_remote", "quote_command"]
