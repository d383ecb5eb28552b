#!/usr/bin/env bash
# Real-client checks of Palisade Shop (`make api-check`; CI runs it after `make test`):
#   1. newman replays the README walkthrough from postman/shop.postman_collection.json;
#   2. schemathesis fuzzes every running service from its own /openapi.json with every check it has
#      (no 5xx; status codes, headers, content types and schemas as documented; schema-valid data
#      accepted and invalid data rejected; ...), once without a token and once with an admin's. The
#      documented exceptions are in scripts/schemathesis.toml. Users runs last: its admin routes
#      may change roles, which revokes tokens.
# Both run against one `shop all` with fresh SQLite databases in a temporary folder, each service on a
# free port (so a `make run` in another terminal does not matter); newman gets the ports as variables.
#
# Installs its own tools, pinned, under target/api-check (override with API_CHECK_TOOLS): a Python venv
# with schemathesis and an npm prefix with newman. Needs python3 (with venv) and node/npm; on Debian
# it installs python3-venv / nodejs when missing.
#
# Knobs (environment): API_CHECK_PROFILE=debug|release (default debug: `make test` already built
# it), API_CHECK_MAX_EXAMPLES (default 50 per operation), API_CHECK_SEED (fixed by default so a
# failure reproduces; set `random` for a new one), API_CHECK_ONLY=newman|schemathesis,
# API_CHECK_CHECKS (schemathesis checks, comma-separated; default below).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

schemathesis_version=4.32.5
newman_version=6.2.2
tools=${API_CHECK_TOOLS:-$root/target/api-check}
profile=${API_CHECK_PROFILE:-debug}
max_examples=${API_CHECK_MAX_EXAMPLES:-50}
seed=${API_CHECK_SEED:-20261127}
only=${API_CHECK_ONLY:-}
checks=${API_CHECK_CHECKS:-all}
export NO_COLOR=1

log() { printf '== api-check: %s\n' "$*"; }
die() { printf 'api-check: %s\n' "$*" >&2; exit 1; }

apt_install() {
  if ! command -v apt-get >/dev/null 2>&1 || [ "$(id -u)" != 0 ]; then
    die "install $* (Debian: apt-get install $*)"
  fi
  log "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

install_schemathesis() {
  local st=$tools/venv/bin/schemathesis
  if [ -x "$st" ] && "$st" --version 2>/dev/null | grep -q "version $schemathesis_version\$"; then
    return
  fi
  command -v python3 >/dev/null 2>&1 || apt_install python3 python3-venv
  rm -rf "$tools/venv"
  if ! python3 -m venv "$tools/venv" >/dev/null 2>&1; then
    rm -rf "$tools/venv"
    apt_install python3-venv
    # The Debian package serves /usr/bin/python3, which may not be the first python3 on PATH.
    /usr/bin/python3 -m venv "$tools/venv"
  fi
  log "installing schemathesis $schemathesis_version"
  "$tools/venv/bin/pip" install -q --disable-pip-version-check "schemathesis==$schemathesis_version"
}

install_newman() {
  local newman=$tools/newman/node_modules/.bin/newman
  if [ -x "$newman" ] && [ "$("$newman" --version 2>/dev/null)" = "$newman_version" ]; then
    return
  fi
  command -v npm >/dev/null 2>&1 || apt_install nodejs npm
  log "installing newman $newman_version"
  mkdir -p "$tools/newman"
  npm install --prefix "$tools/newman" --no-audit --no-fund --loglevel=error "newman@$newman_version" >/dev/null
}

[ "$only" = newman ] || install_schemathesis
[ "$only" = schemathesis ] || install_newman

log "building shop ($profile)"
if [ "$profile" = release ]; then
  "${CARGO:-cargo}" build --quiet --release --bin shop
  shop=$root/target/release/shop
else
  "${CARGO:-cargo}" build --quiet --bin shop
  shop=$root/target/debug/shop
fi

# Every implemented service, from `shop help` ("usage: shop [all | users | catalog | migrate | …]").
mapfile -t services < <("$shop" help | sed -e 's/^usage: shop \[//' -e 's/\]$//' | tr '|' '\n' \
  | sed -e 's/^ *//' -e 's/ *$//' | grep -Ev '^(all|migrate|openapi \[dir\]|keygen)$')
[ "${#services[@]}" -gt 0 ] || die "\`shop help\` lists no service"

run_dir=$(mktemp -d "${TMPDIR:-/tmp}/shop-api-check.XXXXXX")
shop_pid=
cleanup() {
  local status=$?
  if [ -n "$shop_pid" ] && kill -0 "$shop_pid" 2>/dev/null; then
    kill -TERM "$shop_pid" 2>/dev/null || true
    wait "$shop_pid" 2>/dev/null || true
  fi
  if [ "$status" -ne 0 ] && [ -f "$run_dir/shop.log" ]; then
    echo "--- last lines of the shop log ($run_dir/shop.log):"
    tail -n 40 "$run_dir/shop.log"
  else
    rm -rf "$run_dir"
  fi
}
trap cleanup EXIT

# A fresh database per service, a JWT secret of this run, nothing from the caller's configuration.
for name in $(env | grep -o '^SHOP__[A-Z0-9_]*' || true); do unset "$name"; done
unset CONFIG_PATH
for service in "${services[@]}"; do
  export "SHOP__${service^^}__DATABASE_URL=sqlite://$run_dir/$service.db?mode=rwc"
  export "SHOP__${service^^}__PORT=0"
done
SHOP__JWT_SECRET=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
export SHOP__JWT_SECRET

log "starting shop all (${services[*]}) in $run_dir"
RUST_LOG=${RUST_LOG:-warn} "$shop" all >"$run_dir/shop.log" 2>&1 &
shop_pid=$!

declare -A url=()
for _ in $(seq 600); do
  kill -0 "$shop_pid" 2>/dev/null || die "shop all exited early (see its log below)"
  while read -r service base; do url[$service]=$base; done < <(
    sed -n 's/^\([a-z]*\) *API \(http:[^ ]*\)\/v1 .*/\1 \2/p' "$run_dir/shop.log")
  [ "${#url[@]}" -eq "${#services[@]}" ] && break
  sleep 0.1
done
[ "${#url[@]}" -eq "${#services[@]}" ] || die "shop all did not print every service's URL in 60 s"
for service in "${services[@]}"; do
  base=${url[$service]:-}
  [ -n "$base" ] || die "shop all printed no URL for $service"
  curl -sf --retry 30 --retry-delay 1 --retry-all-errors -o /dev/null "$base/readyz" \
    || die "$service is not ready at $base/readyz"
done

# An admin token: the users service logs in its bootstrapped admin; without users, sign one with
# this run's secret (the claims every service's kit verifies).
# The users service's defaults (users.admin_email, users.admin_password): the run sets neither.
admin_email=admin@palisade.local
admin_password=palisade-admin-password
if [ -n "${url[users]:-}" ]; then
  token=$(curl -sf -X POST "${url[users]}/v1/sessions" -H 'Content-Type: application/json' \
    -d "{\"email\":\"$admin_email\",\"password\":\"$admin_password\"}" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])') \
    || die "cannot log in as the bootstrapped admin $admin_email"
else
  token=$(python3 - "$admin_email" <<'EOF'
import base64, hashlib, hmac, json, os, sys, time
def b64(raw): return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
now = int(time.time())
header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
claims = b64(json.dumps({"sub": "00000000-0000-4000-8000-000000000001", "email": sys.argv[1],
                         "role": "admin", "iat": now, "exp": now + 3600}).encode())
signature = hmac.new(os.environ["SHOP__JWT_SECRET"].encode(), f"{header}.{claims}".encode(), hashlib.sha256)
print(f"{header}.{claims}.{b64(signature.digest())}")
EOF
)
fi

failed=()
reports=$root/target/api-check/reports
rm -rf "$reports"
mkdir -p "$reports"

if [ "$only" != schemathesis ]; then
  # The environment names every service's port; pass the ones this run uses.
  env_args=()
  for service in "${services[@]}"; do
    env_args+=(--env-var "${service}Port=${url[$service]##*:}")
  done
  log "newman run postman/shop.postman_collection.json"
  if ! "$tools/newman/node_modules/.bin/newman" run postman/shop.postman_collection.json \
    -e postman/shop.postman_environment.json "${env_args[@]}" \
    --env-var "adminEmail=$admin_email" --env-var "adminPassword=$admin_password" \
    --reporters cli,junit --reporter-junit-export "$reports/newman.xml" \
    --timeout-request 15000 --color off; then
    failed+=(newman)
  fi
fi

if [ "$only" != newman ]; then
  [ "$seed" = random ] && seed=$RANDOM$RANDOM
  # users last: fuzzing its admin routes with the admin's token may change roles (and so revoke it).
  ordered=()
  for service in "${services[@]}"; do [ "$service" = users ] || ordered+=("$service"); done
  for service in "${services[@]}"; do [ "$service" = users ] && ordered+=("$service"); done
  for service in "${ordered[@]}"; do
    for as in anonymous admin; do
      auth=()
      [ "$as" = admin ] && auth=(--header "Authorization: Bearer $token")
      log "schemathesis: $service as $as (${url[$service]}/openapi.json, $max_examples examples per operation, seed $seed)"
      # From the run folder: schemathesis keeps its .hypothesis database in the working directory.
      if ! (cd "$run_dir" && timeout 600 "$tools/venv/bin/schemathesis" --config-file "$root/scripts/schemathesis.toml" \
        run "${url[$service]}/openapi.json" \
        --checks "$checks" \
        --max-examples "$max_examples" --seed "$seed" --request-timeout 15 \
        "${auth[@]}" \
        --report junit --report-junit-path "$reports/schemathesis-$service-$as.xml"); then
        failed+=("schemathesis:$service:$as")
      fi
    done
  done
fi

if [ "${#failed[@]}" -gt 0 ]; then
  die "failed: ${failed[*]} (JUnit reports in $reports)"
fi
log "all passed (reports in $reports)"
