#!/usr/bin/env bash
# The real peers of the integration suite (tests/inn2/): INN2 with its two readers and
# the pinned nyuu poster; and chromium with playwright-core for the browser suite (tests/ui/). Run as root; idempotent and fast when everything is up.
#
#   scripts/setup-peers.sh         install and start what is missing
#   scripts/setup-peers.sh stop    stop INN2 (nyuu is a tool, nothing runs)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
case ${1:-start} in
start)
    bash "$here/inn2-setup.sh" start
    bash "$here/nyuu-setup.sh"
    bash "$here/ui-setup.sh"
    ;;
stop) bash "$here/inn2-setup.sh" stop ;;
*) echo "usage: $0 [start|stop]" >&2; exit 1 ;;
esac
