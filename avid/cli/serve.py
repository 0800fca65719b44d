"""`avid serve --db DB [--host 127.0.0.1] [--port 8765]`: a local web app to review a library, name the unknown
people, and search by photo, voice or words."""
from __future__ import annotations

import argparse

from ._common import add_db_argument, at_least, config_from_args, gallery_path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "serve", help="a local web app: review the library, name unknown people, search",
        description="Serves the library and gallery as web pages on this machine (people, unknown people, each "
                    "recording with who speaks when, search by photo, voice or words). Prints a URL with a secret "
                    "token for this session; every page needs it. Listens on 127.0.0.1 only unless --host says "
                    "otherwise (then warns).")
    add_db_argument(parser)
    parser.add_argument("--host", metavar="ADDR", help="address to listen on (default serve.host: 127.0.0.1)")
    parser.add_argument("--port", type=at_least(0), metavar="N", help="port (default serve.port: 8765; 0: any free)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import errno
    import socket

    from ..errors import AvidError
    from ..serve import serve

    if args.port is not None and args.port > 65535:
        raise AvidError(f"--port must be at most 65535, got {args.port}")
    cfg = config_from_args(args)
    host, port = args.host or cfg.serve.host, cfg.serve.port if args.port is None else args.port
    try:
        serve(gallery_path(args.db), cfg, host=host, port=port)
    except OSError as exc:     # the port taken, an address not of this machine, a name that does not resolve
        if not isinstance(exc, socket.gaierror) and exc.errno not in (errno.EADDRINUSE, errno.EADDRNOTAVAIL,
                                                                      errno.EACCES):
            raise
        raise AvidError(f"cannot listen on {host}:{port} ({exc.strerror})") from None
    return 0
