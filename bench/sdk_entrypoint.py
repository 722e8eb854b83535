#!/usr/bin/env python3
"""Container entrypoint written on the official Python SDK (infisicalsdk).

Logs in with Universal Auth, lists one folder's secrets with imports and
references expanded, writes them over the inherited environment and replaces
itself with the command: ``sdk_entrypoint.py COMMAND [ARG...]``. This is the
script a user would write instead of infisical-init, kept as short as a
careful user would keep it.

Settings come from the variables infisical-init reads: INFISICAL_DOMAIN,
INFISICAL_UNIVERSAL_AUTH_CLIENT_ID, INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET,
INFISICAL_PROJECT_ID, INFISICAL_ENVIRONMENT (default dev) and
INFISICAL_SECRET_PATH (default /).
"""

import os
import sys

from infisical_sdk import InfisicalSDKClient

CREDENTIAL_VARIABLES = ("INFISICAL_UNIVERSAL_AUTH_CLIENT_ID", "INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET")


def key_and_value(secret):
    """Return (key, value) of a listed secret.

    infisicalsdk 1.0.18 turns folder secrets into BaseSecret objects but
    leaves the secrets of imports as plain dicts.
    """
    if isinstance(secret, dict):
        return secret["secretKey"], secret["secretValue"]
    return secret.secretKey, secret.secretValue


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: sdk_entrypoint.py COMMAND [ARG...]")
    # The cache is off because a one-shot entrypoint never reads a secret
    # twice, and with it on the SDK starts a cleanup thread and pickles the
    # whole listing.
    client = InfisicalSDKClient(host=os.environ["INFISICAL_DOMAIN"], cache_ttl=None)
    client.auth.universal_auth.login(
        client_id=os.environ["INFISICAL_UNIVERSAL_AUTH_CLIENT_ID"],
        client_secret=os.environ["INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET"],
    )
    listing = client.secrets.list_secrets(
        project_id=os.environ["INFISICAL_PROJECT_ID"],
        environment_slug=os.environ.get("INFISICAL_ENVIRONMENT", "dev"),
        secret_path=os.environ.get("INFISICAL_SECRET_PATH", "/"),
        expand_secret_references=True,
        include_imports=True,
    )

    environment = {name: value for name, value in os.environ.items() if name not in CREDENTIAL_VARIABLES}
    # Imports first and the folder's own secrets last, so the folder wins.
    for imported in listing.imports:
        for secret in imported.secrets:
            key, value = key_and_value(secret)
            environment[key] = value
    for secret in listing.secrets:
        key, value = key_and_value(secret)
        environment[key] = value
    os.execvpe(sys.argv[1], sys.argv[1:], environment)


if __name__ == "__main__":
    main()
