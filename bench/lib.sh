# Sourced by the bench/ scripts that run on the sandbox (examples/sandbox.rs): starting and
# stopping it, and reading /usr/bin/time's and `run --json`'s figures.

# sandbox_start DIR ARGS...: starts the release sandbox with ARGS (--users, --media-objects,
# ...) writing into DIR, waits until it has seeded everything, and sources DIR/sandbox.env.
# SANDBOX holds its pid until sandbox_stop.
sandbox_start() {
  local dir=$1
  shift
  mkdir -p "$dir"
  target/release/examples/sandbox --dir "$dir" "$@" 2>"$dir/sandbox.log" &
  SANDBOX=$!
  until [ -e "$dir/ready" ]; do
    kill -0 "$SANDBOX" 2>/dev/null || { cat "$dir/sandbox.log" >&2; return 1; }
    sleep 1
  done
  # shellcheck disable=SC1091
  source "$dir/sandbox.env"
}

# Stops the sandbox (SIGTERM: it stops its services and removes their data on the way out).
sandbox_stop() {
  if [ -n "${SANDBOX:-}" ]; then
    kill "$SANDBOX" 2>/dev/null || true
    wait "$SANDBOX" 2>/dev/null || true
    SANDBOX=
  fi
}

# settle URL...: waits (up to 5 minutes) until no autovacuum worker runs on these servers, so
# a timed run does not share the machine with the clean-up after the last load.
settle() {
  local url
  for url in "$@"; do
    for _ in $(seq 300); do
      [ "$(psql -X -A -t -q -d "$url" -c "SELECT count(*) FROM pg_stat_activity
            WHERE backend_type = 'autovacuum worker'")" = 0 ] && break
      sleep 1
    done
  done
}

# Seconds, and peak RSS in MiB, from a file /usr/bin/time -f '%e %M' wrote.
elapsed() { cut -d' ' -f1 "$1"; }
rss_mib() { awk '{printf "%.0f", $2 / 1024}' "$1"; }
# json FILE EXPR: a Python expression over the JSON document in FILE, as `r`.
json() { python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print($2)" "$1"; }
# min and median of the arguments
stats() {
  printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {printf "%.2f %.2f\n", v[1], v[int((NR+1)/2)]}'
}
