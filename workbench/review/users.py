"""The users file of `workbench ui --users FILE`: who may log in and label, with salted password hashes.

One user per line, `name:hash`, where hash is `scrypt$N$r$p$salt$key` (hex salt and key of
hashlib.scrypt); blank lines and lines starting with '#' are ignored. `workbench review add-user FILE
NAME` writes a line (or replaces that user's). A bad line refuses the whole file, naming file and line.

    add_user("users.txt", "alice", "s3cret")
    users = read_users("users.txt")              # {"alice": "scrypt$16384$8$1$..."}
    check_password(users, "alice", "s3cret")     # True
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from pathlib import Path

from workbench.errors import InputError, WorkbenchError

# scrypt at N=2^14, r=8, p=1: 16 MiB and tens of milliseconds per login check
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2 ** 14, 8, 1
_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
_HASH = re.compile(r"scrypt\$(\d+)\$(\d+)\$(\d+)\$([0-9a-f]{16,128})\$([0-9a-f]{32,256})")


def hash_password(password: str, salt: bytes | None = None) -> str:
    """The stored form of a password: scrypt with a random 16-byte salt."""
    if not password:
        raise WorkbenchError("the password is empty; give one")
    salt = salt if salt is not None else os.urandom(16)
    key = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${key.hex()}"


def check_password(users: dict[str, str], name: str, password: str) -> bool:
    """Whether the user exists and the password matches its hash (compared in constant time)."""
    stored = users.get(name)
    if stored is None or not password:
        return False
    n, r, p, salt, key = _HASH.fullmatch(stored).groups()
    found = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p),
                           maxmem=256 * 1024 * 1024, dklen=len(key) // 2)
    return hmac.compare_digest(found.hex(), key)


def parse_user_line(text: str) -> tuple[str, str]:
    """(name, hash) of one line; ValueError says what is wrong with it."""
    name, sep, stored = text.strip().partition(":")
    if not sep:
        raise ValueError("expected NAME:HASH (write lines with `workbench review add-user FILE NAME`)")
    if not _NAME.fullmatch(name):
        raise ValueError(f"the user name {name!r} is not 1-64 letters, digits or _.@-")
    match = _HASH.fullmatch(stored)
    if not match:
        raise ValueError(f"the hash of {name!r} is not scrypt$N$r$p$SALT$KEY "
                         "(write it with `workbench review add-user FILE NAME`)")
    n, r, p = (int(v) for v in match.groups()[:3])
    if n < 2 or n & (n - 1) or n > 2 ** 20 or not 1 <= r <= 32 or not 1 <= p <= 16:
        raise ValueError(f"the scrypt parameters of {name!r} are out of range (N a power of 2 up to 2^20)")
    return name, stored


def read_users(path: str | os.PathLike) -> dict[str, str]:
    """{name: hash} from the users file; InputError (file and line) for a bad line or a repeated name."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise WorkbenchError(f"cannot read the users file {path}: {error}") from None
    users: dict[str, str] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            name, stored = parse_user_line(line)
        except ValueError as error:
            raise InputError(str(error), file=str(path), line=number) from None
        if name in users:
            raise InputError(f"user {name!r} is listed twice", file=str(path), line=number)
        users[name] = stored
    return users


def add_user(path: str | os.PathLike, name: str, password: str) -> bool:
    """Write the user's line into the file (created if missing); True if the user was new, False if
    its password was replaced. The file is checked first: a bad line refuses the change."""
    path = Path(path)
    if not _NAME.fullmatch(name or ""):
        raise WorkbenchError(f"the user name {name!r} is not 1-64 letters, digits or _.@-")
    existing = read_users(path) if path.exists() else {}
    line = f"{name}:{hash_password(password)}"
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    if name in existing:
        lines = [line if text.strip().partition(":")[0] == name else text for text in lines]
    else:
        lines.append(line)
    staged = path.with_name(path.name + ".tmp")
    staged.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.chmod(staged, 0o600)  # hashes are not passwords, but nobody else needs to read them
    os.replace(staged, path)
    return name not in existing
