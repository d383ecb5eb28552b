#!/usr/bin/env bash
# Browser check of the pages a person opens (`make browser-check`; CI runs it): headless Chromium,
# driven by Selenium (scripts/browser-check.py), against a fresh `shop all` on free ports:
#   1. catalog's /ops shows its breakers live; forcing one open through the API
#      (POST /ops/breakers/{name}/force-open, admin token) shows on the page within seconds; the
#      page's own reset button (admin token typed into it) closes it again; no CSP violation;
#   2. catalog's /docs renders Swagger UI with its operations under its CSP.
# Writes target/browser-check/ops.png (and docs.png); exits non-zero on any failure.
#
# Needs Debian's `chromium` and `chromium-driver` (installed with apt-get when missing and root) and
# python3 with venv; Selenium is installed, pinned, into target/browser-check/venv.
# Knobs: BROWSER_CHECK_PROFILE=debug|release (default debug), BROWSER_CHECK_SERVICE (default catalog).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

selenium_version=4.38.0
out=$root/target/browser-check
profile=${BROWSER_CHECK_PROFILE:-debug}
service=${BROWSER_CHECK_SERVICE:-catalog}
target_dir=${CARGO_TARGET_DIR:-$root/target}
export NO_COLOR=1

log() { printf '== browser-check: %s\n' "$*"; }
die() { printf 'browser-check: %s\n' "$*" >&2; exit 1; }

apt_install() {
  if ! command -v apt-get >/dev/null 2>&1 || [ "$(id -u)" != 0 ]; then
    die "install $* (Debian: apt-get install $*)"
  fi
  log "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1 \
    || { DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null; }
}

chromium=$(command -v chromium || command -v chromium-browser || true)
driver=$(command -v chromedriver || true)
if [ -z "$chromium" ] || [ -z "$driver" ]; then
  apt_install chromium chromium-driver
  chromium=$(command -v chromium) driver=$(command -v chromedriver)
fi

mkdir -p "$out"
venv=$out/venv
if ! "$venv/bin/python" -c "import selenium, sys; sys.exit(selenium.__version__ != '$selenium_version')" 2>/dev/null; then
  rm -rf "$venv"
  python3 -m venv "$venv" >/dev/null 2>&1 || { rm -rf "$venv"; apt_install python3-venv; /usr/bin/python3 -m venv "$venv"; }
  log "installing selenium $selenium_version"
  "$venv/bin/pip" install -q --disable-pip-version-check "selenium==$selenium_version"
fi

log "building shop ($profile)"
if [ "$profile" = release ]; then
  "${CARGO:-cargo}" build --quiet --release --bin shop
  shop=$target_dir/release/shop
else
  "${CARGO:-cargo}" build --quiet --bin shop
  shop=$target_dir/debug/shop
fi

mapfile -t services < <("$shop" help | sed -e 's/^usage: shop \[//' -e 's/\]$//' | tr '|' '\n' \
  | sed -e 's/^ *//' -e 's/ *$//' | grep -Ev '^(all|migrate|openapi \[dir\]|keygen)$')
[ "${#services[@]}" -gt 0 ] || die "\`shop help\` lists no service"

run_dir=$(mktemp -d "${TMPDIR:-/tmp}/shop-browser-check.XXXXXX")
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

# Fresh SQLite per service, free ports, a JWT secret of this run, nothing from the caller's settings.
for name in $(env | grep -o '^SHOP__[A-Z0-9_]*' || true); do unset "$name"; done
unset CONFIG_PATH
for s in "${services[@]}"; do
  export "SHOP__${s^^}__DATABASE_URL=sqlite://$run_dir/$s.db?mode=rwc"
  export "SHOP__${s^^}__PORT=0"
done
SHOP__JWT_SECRET=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
export SHOP__JWT_SECRET

log "starting shop all (${services[*]}) in $run_dir"
RUST_LOG=${RUST_LOG:-warn} "$shop" all >"$run_dir/shop.log" 2>&1 &
shop_pid=$!

declare -A url=()
for _ in $(seq 600); do
  kill -0 "$shop_pid" 2>/dev/null || die "shop all exited early (see its log below)"
  while read -r s base; do url[$s]=$base; done < <(
    sed -n 's/^\([a-z]*\) *API \(http:[^ ]*\)\/v1 .*/\1 \2/p' "$run_dir/shop.log")
  [ "${#url[@]}" -eq "${#services[@]}" ] && break
  sleep 0.1
done
base=${url[$service]:-}
users=${url[users]:-}
[ -n "$base" ] || die "shop all printed no URL for $service"
[ -n "$users" ] || die "shop all printed no URL for users (the admin logs in there)"
for b in "$base" "$users"; do
  curl -sf --retry 30 --retry-delay 1 --retry-all-errors -o /dev/null "$b/readyz" || die "$b is not ready"
done

# The users service's bootstrapped dev admin (profile development, loopback).
token=$(curl -sf -X POST "$users/v1/sessions" -H 'Content-Type: application/json' \
  -d '{"email":"admin@palisade.local","password":"palisade-admin-password"}' \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])') \
  || die "cannot log in as the bootstrapped admin"

log "chromium: $service at $base ($("$chromium" --version 2>/dev/null || echo "$chromium"))"
BROWSER_CHECK_TOKEN=$token "$venv/bin/python" scripts/browser-check.py \
  --base "$base" --chromium "$chromium" --driver "$driver" --out "$out"
log "ok: screenshots in $out/ops.png and $out/docs.png"
