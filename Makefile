# The commands the README names. `make help` lists them.
CARGO ?= cargo

.PHONY: help run test lint fmt bench load load-orders doc api-check browser-check deploy-check

help:
	@echo "make run    - run Palisade Shop (every service, SQLite, default ports)"
	@echo "make test   - run every test (cargo nextest when installed, else cargo test)"
	@echo "make lint   - fmt check, clippy -D warnings, rustdoc -D warnings"
	@echo "make bench  - criterion benchmarks of the palisade layers (results: crates/middleware/BENCHMARKS.md)"
	@echo "make load   - wrk on loopback: catalog vs bare axum baselines (results: docs/performance.md)"
	@echo "make load-orders - wrk on loopback: POST /v1/orders against shop all (results: docs/performance.md)"
	@echo "make api-check - newman (postman/) and schemathesis against a fresh shop all (tools under target/)"
	@echo "make browser-check - headless Chromium on /ops (a breaker forced open shows live) and /docs"
	@echo "make deploy-check - Kubernetes manifests rendered and validated offline, dev overlay run on loopback, promtool on the alerts"

run:
	$(CARGO) run --release --bin shop -- all

test:
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --workspace --all-features --no-fail-fast; \
	else \
		$(CARGO) test --workspace --all-features --no-fail-fast; \
	fi
	$(CARGO) test --workspace --all-features --doc

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --all-features -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --all-features --no-deps

fmt:
	$(CARGO) fmt --all

bench:
	$(CARGO) bench -p palisade-bench

load:
	CARGO="$(CARGO)" scripts/load.sh

load-orders:
	CARGO="$(CARGO)" scripts/load-orders.sh

api-check:
	CARGO="$(CARGO)" bash scripts/api-checks.sh

browser-check:
	CARGO="$(CARGO)" bash scripts/browser-check.sh

deploy-check:
	CARGO="$(CARGO)" bash scripts/deploy-check.sh
