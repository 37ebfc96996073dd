#!/usr/bin/env bash
# Run pytest and treat "no tests collected" (exit 5) as the failure it is.
set -uo pipefail
python=$1; shift
"$python" -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then echo "run-pytest: no tests were collected; failing" >&2; exit 1; fi
exit "$rc"
