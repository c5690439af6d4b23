"""`python -m web.users add NAME`: a dashboard login. The password is read from the terminal (asked
twice) or, when stdin is not a terminal, from its first line; never from the command line, where
shell history and `ps` would keep it. Prints the `NAME:hash` entry to add to DASHBOARD_USERS
(comma-separated); only the salted scrypt hash is ever stored."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import TextIO

from settings import USER_NAME_RE
from web.auth import hash_password

MIN_LENGTH = 10


def read_password(stream: TextIO) -> str:
    if stream.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            raise SystemExit("the passwords differ")
        return password
    return stream.readline().rstrip("\r\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m web.users", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    add = commands.add_parser("add", help="print the DASHBOARD_USERS entry of a new login")
    add.add_argument("name", help="the user name (letters, digits, _.@-)")
    args = parser.parse_args(argv)
    if not USER_NAME_RE.match(args.name):
        raise SystemExit("a user name is 1-64 letters, digits or _.@-")
    password = read_password(sys.stdin)
    if len(password) < MIN_LENGTH:
        raise SystemExit(f"the password must have at least {MIN_LENGTH} characters")
    print(f"{args.name}:{hash_password(password)}")
    print("add it to DASHBOARD_USERS (comma-separated entries) and restart the web process", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
