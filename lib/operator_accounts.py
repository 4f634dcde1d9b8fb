"""Dashboard users: the YAML file streamlit-authenticator reads, and a command to add users.

Passwords are stored only as bcrypt hashes. The committed demo file is refused when a live
Stripe key is configured, so nobody runs production with a password printed in the README.

Add a user:  ``python -m lib.operator_accounts add USERNAME --name N --email E --role admin``
(the password is asked for on the terminal, never taken from the command line).
"""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
from pathlib import Path
from typing import Any

import bcrypt
import yaml

from lib.errors import ConfigurationError, ValidationError
from lib.roles import Role, canonical_username
from lib.settings import PROJECT_ROOT, Settings

logger = logging.getLogger(__name__)

DEMO_AUTH_PATH = PROJECT_ROOT / ".streamlit" / "auth.example.yaml"
#: bcrypt 5 refuses longer inputs; refuse them clearly instead.
MAX_PASSWORD_BYTES = 72
MIN_PASSWORD_LENGTH = 12


def hash_password(password: str) -> str:
    """A bcrypt hash of ``password`` (12 rounds)."""
    encoded = password.encode("utf-8")
    if len(encoded) > MAX_PASSWORD_BYTES:
        raise ValidationError(f"Passwords are limited to {MAX_PASSWORD_BYTES} bytes.")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationError(f"Passwords need at least {MIN_PASSWORD_LENGTH} characters.")
    return bcrypt.hashpw(encoded, bcrypt.gensalt(12)).decode("ascii")


def load_credentials(settings: Settings) -> dict[str, Any]:
    """Read and check the users file named by ``AUTH_CONFIG_PATH``."""
    path = Path(settings.auth_config_path)
    if settings.livemode and path.resolve() == DEMO_AUTH_PATH.resolve():
        raise ConfigurationError(
            "AUTH_CONFIG_PATH points at the demo users file while a live Stripe key is "
            "configured: create your own users file (python -m lib.operator_accounts add …)."
        )
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigurationError(
            f"AUTH_CONFIG_PATH file {path} does not exist: copy .streamlit/auth.example.yaml "
            "or add a user with python -m lib.operator_accounts add …"
        ) from None
    except yaml.YAMLError:
        raise ConfigurationError(f"AUTH_CONFIG_PATH file {path} is not valid YAML.") from None
    users = (document.get("credentials") or {}).get("usernames") if isinstance(document, dict) else None
    if not isinstance(users, dict) or not users:
        raise ConfigurationError(f"AUTH_CONFIG_PATH file {path} has no credentials.usernames.")
    seen: dict[str, str] = {}
    for username, user in users.items():
        # streamlit-authenticator lower-cases names at login and the desk compares canonical
        # names (lib.roles.canonical_username): two entries one person could sign in as would
        # make the two-person rule compare the wrong people.
        other = seen.setdefault(canonical_username(str(username)), str(username))
        if other != str(username):
            raise ConfigurationError(
                f"Users {other!r} and {username!r} in {path} are the same name in another case "
                "or Unicode form: keep one."
            )
        if not isinstance(user, dict) or not str(user.get("password", "")).startswith("$2"):
            raise ConfigurationError(
                f"User {username!r} in {path} has no bcrypt password hash."
            )
        unknown = [r for r in user.get("roles") or [] if r not in Role._value2member_map_]
        if unknown:
            raise ConfigurationError(f"User {username!r} in {path} has unknown roles {unknown}.")
    return {"usernames": users}


def add_user(path: Path, *, username: str, name: str, email: str, role: Role, password: str) -> None:
    """Add (or replace) one user in the YAML file at ``path``."""
    if not username.isidentifier():
        raise ValidationError("Usernames are letters, digits and underscores.")
    document: dict[str, Any] = {}
    if path.exists():
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    users = document.setdefault("credentials", {}).setdefault("usernames", {})
    # Stored canonical (what the login form and lib.roles compare): "Alice" replaces "alice".
    username = canonical_username(username)
    for existing in [n for n in users if canonical_username(str(n)) == username]:
        del users[existing]
    users[username] = {
        "name": name, "email": email, "password": hash_password(password), "roles": [role.value],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(document, sort_keys=True), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lib.operator_accounts")
    sub = parser.add_subparsers(dest="command", required=True)
    add = sub.add_parser("add", help="add or replace a dashboard user")
    add.add_argument("username")
    add.add_argument("--name", required=True)
    add.add_argument("--email", required=True)
    add.add_argument("--role", required=True, choices=[r.value for r in Role if r is not Role.FREELANCER])
    add.add_argument("--file", type=Path, default=PROJECT_ROOT / ".streamlit" / "auth.yaml")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    password = getpass.getpass("Password: ")
    if password != getpass.getpass("Again: "):
        sys.stderr.write("The passwords differ; nothing written.\n")
        return 2
    try:
        add_user(args.file, username=args.username, name=args.name, email=args.email,
                 role=Role(args.role), password=password)
    except ValidationError as exc:
        sys.stderr.write(f"{exc}\n")
        return 2
    logger.info("user %s (%s) written to %s", args.username, args.role, args.file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
