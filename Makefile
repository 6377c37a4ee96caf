# The README's commands. `make test` is what CI runs (.ci/run).
GO ?= go

.PHONY: dev test check build image e2e-docker fuzz bench-bulk bench-scans bench-bundle diff-sm2 bench-audit

# make dev HOST=127.0.0.2 DIR=/tmp/fed: hcx dev's --host and --dir (its defaults here).
HOST ?= 127.0.0.1
DIR ?= hcx-data

dev:
	$(GO) run ./cmd/hcx dev --host $(HOST) --dir $(DIR)

test: check
	$(GO) test -race -count=1 -timeout 25m ./...

check:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt: these files need 'gofmt -w':"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o hcx ./cmd/hcx

# Issue 14: a FROM scratch image around the static binary, hcx:<git short rev> and hcx:latest.
image:
	GO=$(GO) scripts/image.sh

# Issue 14: the compose federation under faults (docker and docker-compose 1.29 needed; minutes).
e2e-docker: image
	HCX_E2E_DOCKER=1 $(GO) test ./e2e -count=1 -v -timeout 20m

# Every native fuzz target beyond its seed corpus, FUZZTIME each (CI: a short budget; a campaign: 10m).
FUZZTIME ?= 10s
fuzz:
	scripts/fuzz.sh $(FUZZTIME)

# Issue 10's bulk benchmarks (minutes; not part of make test): bulk ingest against badger's raw
# synced rate, and the registration of BULK_RESIDENTS residents (docs/benchmarks.md).
BULK_RESIDENTS ?= 1000000
bench-bulk:
	$(GO) test ./node -run '^$$' -bench BulkIngest -benchtime 200000x -count 3
	HCX_BENCH_RESIDENTS=$(BULK_RESIDENTS) $(GO) test ./node -run '^$$' -bench RegisterMillion -benchtime 1x -timeout 60m

# Issue 12's offline verification bundle (minutes; not part of make test):
# build, size, loopback sync and offline lookup for BUNDLE_SUBJECTS
# non-green subjects (default 10 M; the benchmark's own default is 1 M).
BUNDLE_SUBJECTS ?= 10000000
bench-bundle:
	HCX_BENCH_BUNDLE=$(BUNDLE_SUBJECTS) $(GO) test ./node -run '^$$' -bench VerificationBundle -benchtime 20000x -timeout 60m

# Issue 11's exposure matching (minutes; not part of make test): one venue-window, 1,000 exposed
# residents, against 10 M stored scans (docs/benchmarks.md).
bench-scans:
	HCX_BENCH_SCANS=10000000 $(GO) test ./node -run '^$$' -bench ExposureMatch -benchtime 20x -timeout 60m

# Issue 12's fixed-key SM2 verification against gmsm's generic one, SM2_DIFF cases of each kind
# (random, bit-flipped, other key, random r/s: 5 signatures a case; minutes per million).
SM2_DIFF ?= 1000000
diff-sm2:
	HCX_SM2_DIFF=$(SM2_DIFF) $(GO) test ./certs -run 'TestFixedKeyVerifyMatchesGeneric|TestFieldArithmeticMatchesBigInt|TestFixedTableScalarMultMatchesCurve' -v -timeout 3h

# Issue 13's auditor (not part of make test): a cold audit of 1,000,000 attestations and a resume
# after the last 10,000, against the raw SM3 + SM2 cost of the same leaves (docs/benchmarks.md).
bench-audit:
	HCX_BENCH_AUDIT_ATTS=1000000 $(GO) test ./audit -run '^$$' -bench Audit -benchtime 1x -timeout 30m
