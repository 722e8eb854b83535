"""A stand-in for a real service: reports which secrets reached it.

It prints each secret's name, length and a short SHA-256 prefix, never the
value, so the output can be compared across runs without exposing secrets.
"""

import hashlib
import os
import sys

# Names the app inherited from its caller rather than from Infisical; the demo
# script lists them in APP_INHERITED_NAMES.
INHERITED = set(os.environ.get("APP_INHERITED_NAMES", "").split()) | {"APP_INHERITED_NAMES", "LC_CTYPE"}


def main() -> int:
    # pyenv's python3 launcher, where present, adds its own PYENV_ variables.
    names = sorted(name for name in os.environ if name not in INHERITED and "PYENV_" not in name)
    print(f"app.py (pid {os.getpid()}) received {len(names)} secrets:")
    for name in names:
        value = os.environb[name.encode()]
        digest = hashlib.sha256(value).hexdigest()[:12]
        print(f"  {name:<24} {len(value):>4} bytes  sha256 {digest}")
    leaked = [name for name in os.environ if "CLIENT_SECRET" in name or name.endswith("TOKEN")]
    if leaked:
        print(f"error: credentials reached the app: {', '.join(leaked)}", file=sys.stderr)
        return 1
    print("no credentials reached the app")
    return 0


if __name__ == "__main__":
    sys.exit(main())
