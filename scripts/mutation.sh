#!/bin/sh
# Mutation testing of the packages that hold the laws, with gremlins
# (github.com/go-gremlins/gremlins, pinned below): each mutant is one small
# change to the code (a flipped comparison, a changed operator); a mutant
# the package's tests do not notice marks a check that cannot fail.
#
# Usage: scripts/mutation.sh [PACKAGE...]   (default: the five below)
#   MUTATION_BUDGET   time allowed per package (default 30m); a package
#                     over budget is reported as such, without a score
#   MUTATION_WORKERS  mutants tested at once (default 2)
#
# Writes the scores between the markers in docs/mutation.md. Not part of
# .ci/run: a full run takes far longer than the rest of the suite.
set -eu

GREMLINS=github.com/go-gremlins/gremlins/cmd/gremlins@v0.6.0
BUDGET=${MUTATION_BUDGET:-30m}
WORKERS=${MUTATION_WORKERS:-2}

cd "$(dirname "$0")/.."
if [ $# -eq 0 ]; then
	set -- internal/policy internal/address internal/queue internal/smtpd internal/auth
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
GOBIN="$work" go install "$GREMLINS"

for pkg in "$@"; do
	name=$(echo "$pkg" | tr / _)
	echo "mutation: $pkg (budget $BUDGET)" >&2
	start=$(date +%s)
	# --timeout-coefficient 30: a mutant's test run may take 30 times the
	# coverage run, so building the mutated package is not mistaken for
	# a mutant that hangs the tests.
	if timeout "$BUDGET" "$work/gremlins" unleash --workers "$WORKERS" --test-cpu 1 \
		--timeout-coefficient 30 -o "$work/$name.json" "./$pkg" >"$work/$name.log" 2>&1; then
		echo "$(($(date +%s) - start))" >"$work/$name.seconds"
	else
		status=$?
		echo "mutation: $pkg: gremlins ended with status $status (124: over budget); log:" >&2
		tail -5 "$work/$name.log" >&2
		echo "$status" >"$work/$name.failed"
	fi
done

python3 scripts/mutation_report.py --dir "$work" --doc docs/mutation.md \
	--command "scripts/mutation.sh $* (MUTATION_BUDGET=$BUDGET MUTATION_WORKERS=$WORKERS, $GREMLINS)" "$@"
