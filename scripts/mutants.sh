#!/usr/bin/env bash
# Mutation testing (docs/testing.md): cargo-mutants on the modules where a wrong answer is a
# security hole, each scoped to the tests that cover it. The scope is given to cargo as well
# as to the test run (--cargo-arg), so each mutant builds only those test targets, not every
# integration test: a module takes minutes, not hours.
#
#   bash scripts/mutants.sh                  # every module below
#   bash scripts/mutants.sh session accept   # some of them
#   bash scripts/mutants.sh --list           # the modules and their tests
#
# Results: ${MUTANTS_OUT:-${CARGO_TARGET_DIR:-target}/mutants}/<module>/mutants.out (missed.txt, caught.txt,
# unviable.txt, timeout.txt, outcomes.json). cargo-mutants works on a copy of the tree; extra
# options go in MUTANTS_ARGS (e.g. MUTANTS_ARGS=--in-place: faster, but leave the tree alone
# while it runs). Tests whose tool is missing fail rather than skip (RAKIT_CI=1), so a skipped
# test never passes a mutant unseen.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# module  file  tests ("lib": the daemon's unit tests; "protocol": the protocol crate's tests;
# any other word: that file of tests/).
modules=(
  "pusher_api    src/pusher/api.rs          lib pusher_protocol pusher_api"
  "pusher_auth   src/pusher/auth.rs         lib pusher_protocol"
  "session       src/session.rs             lib messaging_sessions messaging_cookie_origin"
  "accept        src/accept.rs              lib daemon_handshake messaging_cookie_origin messaging_sessions"
  "http_auth     src/http/auth.rs           lib api_http api_metrics"
  "handshake     protocol/src/handshake.rs  protocol"
  "frame         protocol/src/frame.rs      protocol"
  "channel_token src/channel_token.rs       lib namespaces"
  "authorize     src/router/authorize.rs    lib namespaces"
  "address       src/limits/address.rs      lib abuse_connections"
  "admission     src/limits/admission.rs    lib abuse_connections"
  "limits_flood  src/limits/flood.rs        lib abuse_messages abuse_pusher"
  "router_flood  src/router/flood.rs        lib abuse_messages"
)

if [[ "${1:-}" == --list ]]; then
  printf '%s\n' "${modules[@]}"
  exit 0
fi
if ! cargo mutants --version >/dev/null 2>&1; then
  echo "cargo-mutants is missing: cargo install cargo-mutants --locked" >&2
  exit 1
fi

export RAKIT_CI=1
out="${MUTANTS_OUT:-${CARGO_TARGET_DIR:-$PWD/target}/mutants}"
mkdir -p "$out"
wanted=("$@")
status=0
for line in "${modules[@]}"; do
  read -r name file tests <<<"$line"
  if ((${#wanted[@]})) && [[ " ${wanted[*]} " != *" $name "* ]]; then
    continue
  fi
  args=()
  for t in $tests; do
    case $t in
      lib) args+=(--cargo-arg=--lib) ;;
      protocol) args+=(--package=rakit-protocol) ;;
      *) args+=(--cargo-arg=--test="$t") ;;
    esac
  done
  echo "== $name: $file ($tests)"
  # shellcheck disable=SC2086 # MUTANTS_ARGS is a list of options
  cargo mutants --file "$file" --output "$out/$name" "${args[@]}" ${MUTANTS_ARGS:-} || status=1
  for outcome in caught missed unviable timeout; do
    printf '   %-8s %s\n' "$outcome" "$(wc -l <"$out/$name/mutants.out/$outcome.txt")"
  done
done
exit "$status"
