# Shared helpers for the project's scripts. Sourced, not run.
#
# ensure_postgres: sets DATABASE_URL to a PostgreSQL server the scripts may
# create databases on, by these rules, in order:
#   1. DATABASE_URL is already set: use it as it is.
#   2. a server answers on 127.0.0.1:5432: use it as user postgres.
#   3. otherwise start a throwaway cluster with the system's initdb/pg_ctl
#      (installing the `postgresql` package with apt when it is missing and
#      we are root), owned by a non-root user, on a free port, removed again
#      when the calling script exits.

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Runs the given command as the unprivileged owner of the throwaway cluster
# (PostgreSQL refuses to run as root).
_as_pg_user() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u "$PG_OS_USER" -- "$@"
  else
    "$@"
  fi
}

_find_pg_bin() {
  local dir
  if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    dirname "$(command -v pg_ctl)"
    return 0
  fi
  for dir in /usr/lib/postgresql/*/bin; do
    if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
      echo "$dir"
      return 0
    fi
  done
  return 1
}

_port_answers() {
  # bash's /dev/tcp keeps this free of extra tools.
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

_free_port() {
  local port
  for port in $(seq 55432 55532); do
    if ! _port_answers "$port"; then
      echo "$port"
      return 0
    fi
  done
  return 1
}

ensure_postgres() {
  if [ -n "${DATABASE_URL:-}" ]; then
    log "PostgreSQL: using DATABASE_URL from the environment"
    return 0
  fi
  if _port_answers 5432; then
    export DATABASE_URL="postgres://postgres@127.0.0.1:5432/postgres"
    log "PostgreSQL: using the server on 127.0.0.1:5432 (user postgres)"
    return 0
  fi

  local bin
  if ! bin=$(_find_pg_bin); then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
      log "PostgreSQL: not installed; installing the postgresql package with apt"
      apt-get update -qq >/dev/null
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
      bin=$(_find_pg_bin) || die "postgresql installed but initdb/pg_ctl not found"
    else
      die "no PostgreSQL: set DATABASE_URL, start a server on 127.0.0.1:5432, or install postgresql"
    fi
  fi

  PG_OS_USER=$(id -un)
  if [ "$(id -u)" -eq 0 ]; then
    PG_OS_USER=postgres
    id -u "$PG_OS_USER" >/dev/null 2>&1 || useradd --system --no-create-home "$PG_OS_USER"
  fi
  local port
  port=$(_free_port) || die "no free port for a throwaway PostgreSQL"
  PG_TMP_DIR=$(mktemp -d "${TMPDIR:-/tmp}/clipping-pg.XXXXXX")
  chmod 755 "$PG_TMP_DIR"
  [ "$(id -u)" -eq 0 ] && chown "$PG_OS_USER" "$PG_TMP_DIR"
  log "PostgreSQL: starting a throwaway cluster on 127.0.0.1:$port (as $PG_OS_USER, in $PG_TMP_DIR)"
  _as_pg_user "$bin/initdb" -D "$PG_TMP_DIR/data" -U postgres --auth=trust -E UTF8 >/dev/null \
    || die "initdb failed"
  _as_pg_user "$bin/pg_ctl" -D "$PG_TMP_DIR/data" -l "$PG_TMP_DIR/server.log" -w \
    -o "-p $port -k $PG_TMP_DIR -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=on" start >/dev/null \
    || { cat "$PG_TMP_DIR/server.log" >&2; die "pg_ctl start failed"; }
  PG_BIN_DIR=$bin
  trap stop_throwaway_postgres EXIT
  export DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
}

stop_throwaway_postgres() {
  if [ -n "${PG_TMP_DIR:-}" ] && [ -d "$PG_TMP_DIR/data" ]; then
    _as_pg_user "$PG_BIN_DIR/pg_ctl" -D "$PG_TMP_DIR/data" -m fast stop >/dev/null 2>&1 || true
    rm -rf "$PG_TMP_DIR"
  fi
}

# The directory cargo builds into, honouring CARGO_TARGET_DIR and the
# workspace's configuration: binaries live in "$(cargo_target_dir)/debug".
cargo_target_dir() {
  cargo metadata --format-version 1 --no-deps 2>/dev/null \
    | sed -E 's/.*"target_directory":"([^"]*)".*/\1/'
}

# Makes sure ffmpeg and ffprobe are on the PATH, installing Debian's ffmpeg
# when we are root and apt is there.
ensure_ffmpeg() {
  if command -v ffmpeg >/dev/null 2>&1 && command -v ffprobe >/dev/null 2>&1; then
    return 0
  fi
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing Debian's ffmpeg (the worker's media engine needs ffmpeg and ffprobe)"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg fonts-dejavu-core >/dev/null
  else
    die "the worker's ffmpeg engine needs ffmpeg and ffprobe (Debian/Ubuntu: apt-get install ffmpeg)"
  fi
}

# Writes a sample video to $1: 60 s of 1280x720 in four scenes, with a
# speech-like tone that pauses for 0.6 s every 5 s and is loud over 11-14 s
# and 36-39 s, each between two pauses (the parts a viewer would want
# clipped).
make_sample_video() {
  local out=$1
  local audio="aevalsrc=exprs='lt(mod(t\,5)\,4.4)*(0.03+0.5*(between(t\,11\,14)+between(t\,36\,39)))*sin(2*PI*220*t)*(0.6+0.4*sin(2*PI*4*t))':s=48000:d=60"
  ffmpeg -nostdin -hide_banner -loglevel error -y \
    -f lavfi -i "testsrc2=s=1280x720:r=30:d=15" \
    -f lavfi -i "smptehdbars=s=1280x720:r=30:d=15" \
    -f lavfi -i "testsrc=s=1280x720:r=30:d=15" \
    -f lavfi -i "rgbtestsrc=s=1280x720:r=30:d=15" \
    -f lavfi -i "$audio" \
    -filter_complex "[0:v][1:v][2:v][3:v]concat=n=4:v=1:a=0,format=yuv420p[v]" \
    -map "[v]" -map 4:a -c:v libx264 -preset veryfast -crf 28 -c:a aac \
    -metadata title="Sample talk" -movflags +faststart "$out"
}
