"""The ``review`` command: serve a reader's review of an output folder until interrupted."""

from __future__ import annotations

import argparse
import getpass
from pathlib import Path

from cmbdet.errors import EXIT_OK, InputError


def add_review(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "review",
        parents=[common],
        help="confirm, reject or add CMBs in the browser; writes reviewed_lesions.csv",
        description="Serve a review page for a subject's or a batch's output folder on "
        "127.0.0.1 (the printed URL carries a random token; nothing else is answered). Each "
        "detection and each of the highest rejected candidates can be confirmed, rejected "
        "with a reason or marked unsure, and missed CMBs added by clicking them; saving "
        "writes reviewed_lesions.csv in the subject's folder, which evaluate reads as ground "
        "truth. Stop with Ctrl-C.",
    )
    parser.add_argument("out_dir", type=Path, help="output folder of detect (one or a batch)")
    parser.add_argument(
        "--port", type=port_number, default=0, help="port, 1024-65535 (default: a free one)"
    )
    parser.add_argument(
        "--reader", default=None, help="the reader's name in the table (default: the login)"
    )
    parser.set_defaults(handler=review_command)


def review_command(args: argparse.Namespace) -> int:
    """``cmbdet review``: print the URL, serve until Ctrl-C."""
    from cmbdet.review.server import ReviewServer

    reader = args.reader if args.reader is not None else _login()
    try:
        server = ReviewServer(args.out_dir, reader, args.port)
    except OSError as error:  # the port is taken, or not ours to use
        raise InputError(None, f"cannot serve on port {args.port}: {error.strerror}") from None
    subjects = len(server.subjects)
    print(f"reviewing {subjects} subject{'s' * (subjects != 1)} of {args.out_dir}")
    print(f"open {server.url} in a browser (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("review stopped")
    finally:
        server.server_close()
    return EXIT_OK


def port_number(text: str) -> int:
    """A port to listen on: 0 (any free one) or 1024-65535."""
    value = int(text)
    if value != 0 and not 1024 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not 0 or a port in 1024-65535")
    return value


def _login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""
