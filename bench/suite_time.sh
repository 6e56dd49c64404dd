#!/usr/bin/env bash
# The README's test command, timed on fresh clones of two commits, back to back on this machine:
# what the suite costs a new contributor, and the ratio of the second to the first (the baseline).
#
#   bash bench/suite_time.sh BASE [REV]      # REV defaults to HEAD
#
# Each commit: a clone of this repository checked out at the commit, a new virtual environment,
# the CPU build of torch, then `pip install -e '.[dev]' && ruff ... && mypy && pytest` timed
# whole (with DYNL2_REQUIRE_POSTGRES=1 DYNL2_REQUIRE_BROWSER=1, as CI). Prints pytest's summary
# line and the wall time of each, then the ratio. Run it on an otherwise idle machine.
set -u
base=${1:?usage: bash bench/suite_time.sh BASE [REV]}
rev=${2:-HEAD}
root=$(git rev-parse --show-toplevel) || exit 2
base=$(git -C "$root" rev-parse --short "$base") || exit 2
rev=$(git -C "$root" rev-parse --short "$rev") || exit 2

one() {  # one() COMMIT: prints "SECONDS" last
  local tmp rc s e
  tmp=$(mktemp -d)
  git clone -q "$root" "$tmp/c" && git -C "$tmp/c" checkout -q "$1" || return 2
  python3 -m venv "$tmp/v" || return 2
  (
    # shellcheck disable=SC1091
    . "$tmp/v/bin/activate" && cd "$tmp/c" || exit 2
    python -m pip install -q torch==2.13.0 >/dev/null 2>&1
    export DYNL2_REQUIRE_POSTGRES=1 DYNL2_REQUIRE_BROWSER=1
    s=$(date +%s)
    pip install -q -e '.[dev]' >/dev/null 2>&1 && ruff check -q . && ruff format -q --check . \
      && mypy >/dev/null && pytest -q -p no:cacheprovider >"$tmp/pytest.log" 2>&1
    rc=$?
    e=$(date +%s)
    echo "$1: $(tail -n 1 "$tmp/pytest.log") (exit $rc)" >&2
    if [ "$rc" -ne 0 ]; then  # keep what failed: the clone and its log go away below
      cp "$tmp/pytest.log" "${TMPDIR:-/tmp}/suite_time-$1.log"
      grep -E '^(FAILED|ERROR) ' "$tmp/pytest.log" >&2
      echo "$1: the whole log: ${TMPDIR:-/tmp}/suite_time-$1.log" >&2
    fi
    echo $((e - s))
  )
  rc=$?
  rm -rf "$tmp"
  return $rc
}

t_base=$(one "$base") || exit $?
echo "$base (baseline): ${t_base} s"
t_rev=$(one "$rev") || exit $?
echo "$rev: ${t_rev} s"
python3 -c "print(f'ratio {\"$rev\"}/{\"$base\"}: {$t_rev / $t_base:.2f}')"
