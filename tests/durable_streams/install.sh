#!/usr/bin/env bash
# Installs the Node side of the Durable Streams tests (package-lock.json: the protocol's
# conformance suite and its TypeScript client) outside the source tree and prints the directory
# (tests/npm_cache.sh says how):
#   ${XDG_CACHE_HOME:-$HOME/.cache}/eventlog/durable-streams-<hash>   (or $EVENTLOG_NODE_CACHE)
#
#   install.sh               install if needed, refresh the scripts, print the directory
#   install.sh --no-install  print the directory if it is installed (exit 1 if not): what the
#                            tests use to find it without touching the network
#
# package.json pins vitest and vite besides the two packages: the suite asks for vitest ^4, and
# from vitest 4.1 on that brings vite 7+, which needs Node 20.19+; Debian 12's nodejs (what .ci/run
# installs) is Node 18. vitest 4.0.18 with vite 6.4.6 runs the suite on Node 18 and newer alike.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
exec "$here/../npm_cache.sh" "$here" durable-streams EVENTLOG_NODE_CACHE "$@"
