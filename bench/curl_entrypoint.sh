#!/bin/sh
# Container entrypoint written with curl and jq: logs in with Universal Auth,
# lists one folder's secrets with imports and references expanded, exports
# them and replaces itself with the command: curl_entrypoint.sh COMMAND [ARG...].
# This is the script a user would write instead of infisical-init.
#
# Settings come from the variables infisical-init reads: INFISICAL_DOMAIN,
# INFISICAL_UNIVERSAL_AUTH_CLIENT_ID, INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET,
# INFISICAL_PROJECT_ID, INFISICAL_ENVIRONMENT (default dev) and
# INFISICAL_SECRET_PATH (default /). The credentials and the token travel on
# standard input, never on a command line that `ps` shows.
set -eu

if [ "$#" -eq 0 ]; then
  echo "usage: curl_entrypoint.sh COMMAND [ARG...]" >&2
  exit 64
fi
api="${INFISICAL_DOMAIN%/}/api"

login_body=$(jq -n --arg id "$INFISICAL_UNIVERSAL_AUTH_CLIENT_ID" \
  --arg secret "$INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET" '{clientId: $id, clientSecret: $secret}')
login=$(printf '%s' "$login_body" | curl -fsS -H 'Content-Type: application/json' --data-binary @- \
  "$api/v1/auth/universal-auth/login")
token=$(printf '%s' "$login" | jq -r '.accessToken // empty')
if [ -z "$token" ]; then
  echo "curl_entrypoint.sh: the login response has no accessToken" >&2
  exit 1
fi

# /api/v3/secrets/raw is deprecated but works on servers with and without
# /api/v4/secrets, which only servers from mid-2025 on have.
listing=$(printf 'header = "Authorization: Bearer %s"\n' "$token" | curl -fsS -K - -G \
  --data-urlencode "workspaceId=$INFISICAL_PROJECT_ID" \
  --data-urlencode "environment=${INFISICAL_ENVIRONMENT:-dev}" \
  --data-urlencode "secretPath=${INFISICAL_SECRET_PATH:-/}" \
  -d expandSecretReferences=true -d include_imports=true \
  "$api/v3/secrets/raw")

# Imports first and the folder's own secrets last, so later exports win as
# infisical-init merges them. @sh quotes every value for eval, and names that
# are not shell variable names are skipped because `export` rejects them.
exports=$(printf '%s' "$listing" | jq -r '
  [(.imports // [])[].secrets[], (.secrets[] | select(.type != "personal")), (.secrets[] | select(.type == "personal"))][]
  | select(.secretKey | test("^[A-Za-z_][A-Za-z0-9_]*$"))
  | "export \(.secretKey)=\(.secretValue | @sh)"')
unset INFISICAL_UNIVERSAL_AUTH_CLIENT_ID INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET
eval "$exports"
exec "$@"
