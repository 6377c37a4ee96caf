# The README's commands. `make test` is what CI runs (.ci/run).
GO ?= go

.PHONY: dev test check build image

dev:
	$(GO) run ./cmd/hcx dev

test: check
	$(GO) test -race -count=1 -timeout 25m ./...

check:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt: these files need 'gofmt -w':"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o hcx ./cmd/hcx
