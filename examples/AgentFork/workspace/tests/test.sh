#!/usr/bin/env bash
# The check every candidate must pass.
set -eu
cd "$(dirname "$0")/.."
[ "$(bash greet.sh)" = "Hello, World!" ] || { echo "default greeting is wrong: $(bash greet.sh)"; exit 1; }
[ "$(bash greet.sh Ada)" = "Hello, Ada!" ] || { echo "named greeting is wrong: $(bash greet.sh Ada)"; exit 1; }
echo "ok"
