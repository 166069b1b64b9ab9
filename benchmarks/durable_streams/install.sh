#!/usr/bin/env bash
# Installs the baseline of benchmarks/durable_streams.py, the protocol's Node reference server
# (package-lock.json pins @durable-streams/server), outside the source tree and prints the
# directory (tests/npm_cache.sh says how):
#   ${XDG_CACHE_HOME:-$HOME/.cache}/eventlog/durable-streams-bench-<hash of the lock file>
#   (or $EVENTLOG_BENCH_NODE_CACHE)
#
#   install.sh               install if needed, refresh the scripts, print the directory
#   install.sh --no-install  print the directory if it is installed (exit 1 if not): what the
#                            benchmark report uses, so that it never reaches for the network
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
exec "$here/../../tests/npm_cache.sh" "$here" durable-streams-bench EVENTLOG_BENCH_NODE_CACHE "$@"
