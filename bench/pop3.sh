#!/usr/bin/env bash
# POP3 retrieval benchmark: a mailbox of 10,000 messages is listed and every
# message retrieved over POP3S (pipelined RETRs) from kanmon's POP3 server
# on loopback. Memory per operation is reported with -benchmem: messages are
# streamed, so it does not grow with the mailbox beyond the listing.
#
#   bench/pop3.sh [COUNT]
set -euo pipefail
cd "$(dirname "$0")/.."
go test -run=NONE -bench='Retrieve' -benchmem -count="${1:-3}" ./internal/pop3
