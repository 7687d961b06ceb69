# Server side of target "optin" (this project).  Sourced by ../shared/peers/bench.sh in a
# subshell, with PEERS (the shared peers folder), STATE (= $PEERS_STATE), TMP (= $STATE/tmp) and
# GUNICORN_ARGS set.  Writes only under $STATE and $TMP; the repository is used read-only.
PORT=${OPTIN_PORT:-8103}
HEALTH_PATH=/healthz
VENV="$STATE/.venv-optin"
# The repository root, two folders above this file (CI clones it anywhere).
OPTIN_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
OPTIN_BENCH="$OPTIN_ROOT/bench/peers"

optin_env() {   # the settings shared by the server, setup and the token command
  # The code of this run: a copy taken by setup(), so that the server and the token command run
  # the same version even if the working tree changes during the run.
  export PYTHONPATH="$TMP/optin-src"
  export DATABASE_URL="sqlite:///$TMP/optin.sqlite3"
  export OPTIN_INSTANCE_PATH="$TMP/optin-instance"
  export SECRET_KEY="bench-only-not-secret-optin-0123456789abcdefghijklmnopqrstuvwxyz"
  export BASE_URL="http://127.0.0.1:$PORT"
  export MAIL_BACKEND=discard          # renders the whole MIME message, then drops it (like the peer's sink)
  export OUTBOX_DELIVER_INLINE=true    # each worker renders the mail it queued right after the response
  export RATELIMIT_ENABLED=false       # the load comes from one IP; the per-IP limits would refuse it
  export FLASK_APP=app
}

install() {   # idempotent (again when pyproject.toml changes); PyPI by name, this repository editable
  [ "$VENV/.installed" -nt "$OPTIN_ROOT/pyproject.toml" ] && return 0
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q -e "$OPTIN_ROOT" "gunicorn==27.0.1"   # the peers' gunicorn
  touch "$VENV/.installed"
}

setup() {     # a copy of the code, a fresh SQLite database with the schema and the resource "bench"
  rm -rf "$TMP/optin.sqlite3" "$TMP/optin.sqlite3-wal" "$TMP/optin.sqlite3-shm" "$TMP/optin-instance" \
    "$TMP/optin-src"
  mkdir -p "$TMP/optin-instance" "$TMP/optin-src"
  local part
  for part in app templates static migrations; do
    [ -e "$OPTIN_ROOT/$part" ] && cp -R "$OPTIN_ROOT/$part" "$TMP/optin-src/"
  done
  find "$TMP/optin-src" -name __pycache__ -prune -exec rm -rf {} +
  git -C "$OPTIN_ROOT" describe --always --dirty > "$TMP/optin-src/VERSION" 2>/dev/null \
    || echo unknown > "$TMP/optin-src/VERSION"
  echo "optin code: $(cat "$TMP/optin-src/VERSION"), copied to $TMP/optin-src"
  optin_env
  "$VENV/bin/flask" db upgrade
  "$VENV/bin/flask" resources add bench --name Bench
  # The adapter's token command (optin.json): mints links with the server's key and database.
  cat > "$TMP/optin.tokens.sh" <<TOKENS
#!/bin/sh
# written by $OPTIN_BENCH/optin.sh setup(): emails on stdin, "email<TAB>token" out
export PYTHONPATH='$PYTHONPATH' DATABASE_URL='$DATABASE_URL' OPTIN_INSTANCE_PATH='$OPTIN_INSTANCE_PATH'
export SECRET_KEY='$SECRET_KEY'
export BASE_URL='$BASE_URL' MAIL_BACKEND=discard RATELIMIT_ENABLED=false
exec '$VENV/bin/python' '$OPTIN_BENCH/optin_tokens.py' "\$@"
TOKENS
  chmod +x "$TMP/optin.tokens.sh"
}

start() {     # exec: bench.sh stops the server by this PID
  optin_env
  cd "$TMP"
  # shellcheck disable=SC2086
  exec "$VENV/bin/gunicorn" $GUNICORN_ARGS -b "127.0.0.1:$PORT" \
    --error-logfile "$TMP/optin.gunicorn.log" "app:create_app()"
}
