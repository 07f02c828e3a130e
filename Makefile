# logd — build, test and benchmark targets. Only Go is needed.
GO ?= go
PKGS := ./...
BENCH ?= .
BENCHCOUNT ?= 3

.PHONY: all build test test-short vet fmt bench bench-log fuzz clean

all: build

build:
	$(GO) build -o bin/ ./...

vet:
	$(GO) vet $(PKGS)
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || \
		{ echo "gofmt needed:"; gofmt -l .; exit 1; }

test: vet
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

test-short:
	$(GO) test -short -count=1 $(PKGS)

# Storage benchmarks; each carries its own baseline (BenchmarkRawAppend).
bench: bench-log

bench-log:
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchmem -count $(BENCHCOUNT) ./internal/log/

# Fuzz the record decoder and the recovery of arbitrary files for a while.
FUZZTIME ?= 30s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeFrame$$' -fuzztime $(FUZZTIME) ./internal/log/
	$(GO) test -run '^$$' -fuzz '^FuzzOpen$$' -fuzztime $(FUZZTIME) ./internal/log/

clean:
	rm -rf bin
