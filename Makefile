# Tally: two commands do everything on a fresh machine.
#   make run   build and start Tally all-in-one on its embedded defaults
#   make test  install what the tests need, check generated code, vet, and run every test
SHELL := /bin/bash
GO ?= go
DATA_DIR ?= $(CURDIR)/.tally
ADDR ?= 127.0.0.1:8080
TEST_TIMEOUT ?= 14m
BENCH_EVENTS ?= 1000000
BENCH_ROWS ?= 1000000
BENCH_OUT ?= $(CURDIR)/bench-results

.PHONY: all build run test test-short test-faults deps check-generated proto lint bench bench-go fuzz clean load

all: build

build:
	$(GO) build -o bin/tally ./cmd/tally

## run: build and start Tally all-in-one (embedded NATS JetStream, local or private PostgreSQL),
## load sample data for tenant "demo" and print where to look.
run: build
	DATA_DIR="$(DATA_DIR)" ADDR="$(ADDR)" bash scripts/run.sh

## test: everything CI runs.
test: deps check-generated lint
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...
	# The 100,000-row FOCUS export round trip skips itself under -race (minutes there): run it here.
	$(GO) test -count=1 -timeout 10m -run '^TestFOCUSRoundTripGenerated$$' ./exports/

test-short:
	$(GO) test -short -count=1 ./...

## test-faults: the full crash and restart suite (kill -9 of tally serve, NATS and PostgreSQL
## restarted under it, a 3-node JetStream cluster losing a node); make test runs a reduced one.
test-faults: deps
	GO="$(GO)" bash scripts/test-faults.sh

## deps: what the tests need that Go does not fetch itself (a PostgreSQL to talk to or to start).
deps:
	@bash scripts/ensure-postgres.sh
	$(GO) build ./...

## check-generated: fail when proto/gen is stale (make proto regenerates it).
check-generated: proto
	@git diff --exit-code --stat -- proto/gen || { echo "proto/gen is stale: run 'make proto' and commit the result"; exit 1; }
	@test -z "$$(git status --porcelain -- proto/gen)" || { echo "proto/gen has untracked files: run 'make proto' and commit the result"; git status --porcelain -- proto/gen; exit 1; }

proto:
	$(GO) tool buf lint
	$(GO) tool buf generate

lint:
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^proto/gen/')); test -z "$$out" || { echo "gofmt would change:"; echo "$$out"; exit 1; }
	$(GO) tool buf lint

## bench: durable append vs the machine's raw JetStream limits, in one run.
## Also: project (ledger fold of BENCH_ROWS ingested events vs raw pgx CopyFrom of the same rows) and rebuild.
## The log runs in a nats-server process of its own (built from the version go.mod pins), as in
## production, so that each stage's peak RSS is Tally's apart from the server's.
bench:
	@mkdir -p "$(BENCH_OUT)/bin"
	$(GO) build -o "$(BENCH_OUT)/bin/nats-server" github.com/nats-io/nats-server/v2
	$(GO) run ./bench/cmd/tally-bench -nats-server "$(BENCH_OUT)/bin/nats-server" -events $(BENCH_EVENTS) -rows $(BENCH_ROWS) -json "$(BENCH_OUT)/bench.json"

## load: bounded loopback load tests (tally-load): 64 clients querying a 1,000,000-line ledger, and
## single-event appends at 500/s through the gateway beside raw JetStream publish. The first run
## builds the ledger in $(BENCH_OUT)/load-data (a few minutes); later runs reuse it.
load:
	@mkdir -p "$(BENCH_OUT)"
	$(GO) run ./bench/cmd/tally-load -data "$(BENCH_OUT)/load-data" -json "$(BENCH_OUT)/load.json"

## bench-go: the Go benchmarks, for benchstat (go tool benchstat old.txt new.txt).
bench-go:
	$(GO) test -run '^$$' -bench . -benchmem -count 6 ./... | tee "$(BENCH_OUT)/go-bench.txt"

## fuzz: every fuzz target for FUZZTIME each (default 30s); plain `make test` replays their corpora.
fuzz:
	bash scripts/fuzz.sh

clean:
	rm -rf bin
