# The README's commands. `make test` is what CI runs (.ci/run).
GO ?= go

.PHONY: dev test check build image fuzz

dev:
	$(GO) run ./cmd/hcx dev

test: check
	$(GO) test -race -count=1 -timeout 25m ./...

check:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt: these files need 'gofmt -w':"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o hcx ./cmd/hcx

# Every native fuzz target beyond its seed corpus, FUZZTIME each (CI: a short budget; a campaign: 10m).
FUZZTIME ?= 10s
fuzz:
	scripts/fuzz.sh $(FUZZTIME)
