# logd: build, run, test and benchmark. Only Go is needed: cfssl, buf and
# the protoc plugins run as `go tool` (see the tool block in go.mod).
GO ?= go
PKGS := ./...

# Where certificates (and, for `make run`, data) live.
CONFIG_DIR ?= $(or $(LOGD_CONFIG_DIR),$(HOME)/.logd)
CLIENTS := root alice bob nobody
CERTS := $(CONFIG_DIR)/ca.pem $(CONFIG_DIR)/server.pem $(foreach c,$(CLIENTS),$(CONFIG_DIR)/$(c)-client.pem)

BENCH ?= .
BENCHCOUNT ?= 3
FUZZTIME ?= 30s
RUNFLAGS ?=

.PHONY: all build run test test-short vet proto gencert certs bench bench-log fuzz clean

all: build

build:
	$(GO) build -o bin/ ./cmd/...

# Start logd on the defaults: certificates and data under $(CONFIG_DIR).
run: certs
	$(GO) build -o bin/logd ./cmd/logd
	LOGD_CONFIG_DIR=$(CONFIG_DIR) ./bin/logd --log-format console $(RUNFLAGS)

vet:
	$(GO) vet $(PKGS)
	@unformatted="$$(gofmt -l $$(find . -name '*.go' -not -path './.git/*'))"; \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi

test: certs vet
	$(GO) test -race -count=1 -timeout 30m $(PKGS)

test-short:
	$(GO) test -short -count=1 $(PKGS)

# Regenerate api/v1 from log.proto (the generated code is committed).
proto:
	cd api && $(GO) tool buf lint && $(GO) tool buf generate

# Make the certificates if any is missing.
certs: $(CERTS)
$(CERTS):
	$(MAKE) gencert

# A new CA, server certificate and client certificates, with cfssl.
gencert:
	mkdir -p $(CONFIG_DIR)
	$(GO) tool cfssl gencert -loglevel 3 -initca configs/ca-csr.json | $(GO) tool cfssljson -bare $(CONFIG_DIR)/ca
	$(GO) tool cfssl gencert -loglevel 3 -ca=$(CONFIG_DIR)/ca.pem -ca-key=$(CONFIG_DIR)/ca-key.pem \
		-config=configs/ca-config.json -profile=server configs/server-csr.json \
		| $(GO) tool cfssljson -bare $(CONFIG_DIR)/server
	for cn in $(CLIENTS); do \
		$(GO) tool cfssl gencert -loglevel 3 -ca=$(CONFIG_DIR)/ca.pem -ca-key=$(CONFIG_DIR)/ca-key.pem \
			-config=configs/ca-config.json -profile=client -cn=$$cn configs/client-csr.json \
			| $(GO) tool cfssljson -bare $(CONFIG_DIR)/$$cn-client || exit 1; \
	done
	rm -f $(CONFIG_DIR)/*.csr
	chmod 600 $(CONFIG_DIR)/*-key.pem

# Storage benchmarks; each carries its own baseline (BenchmarkRawAppend).
bench: bench-log

bench-log:
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchmem -count $(BENCHCOUNT) ./internal/log/

# Fuzz the record decoder and the recovery of arbitrary files.
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeFrame$$' -fuzztime $(FUZZTIME) ./internal/log/
	$(GO) test -run '^$$' -fuzz '^FuzzOpen$$' -fuzztime $(FUZZTIME) ./internal/log/

clean:
	rm -rf bin
