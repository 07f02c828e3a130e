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

.PHONY: all build run test test-short vet proto gencert certs revoke crl bench bench-log bench-e2e fuzz clean

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
	rm -f $(CONFIG_DIR)/*.csr $(CONFIG_DIR)/crl.pem $(CONFIG_DIR)/revoked-serials.txt
	chmod 600 $(CONFIG_DIR)/*-key.pem

# Revoke client CN's certificate: add its serial number to
# $(CONFIG_DIR)/revoked-serials.txt and sign a new CRL. A running logd
# that uses $(CONFIG_DIR)/crl.pem picks it up on its own.
revoke:
	@test -n "$(CN)" || { echo "usage: make revoke CN=name" >&2; exit 2; }
	@set -e; \
	serial=$$($(GO) tool cfssl certinfo -loglevel 3 -cert $(CONFIG_DIR)/$(CN)-client.pem \
		| sed -n 's/^ *"serial_number": "\([0-9]*\)",*$$/\1/p'); \
	test -n "$$serial" || { echo "revoke: no serial number in $(CONFIG_DIR)/$(CN)-client.pem" >&2; exit 1; }; \
	touch $(CONFIG_DIR)/revoked-serials.txt; \
	grep -qx "$$serial" $(CONFIG_DIR)/revoked-serials.txt || echo "$$serial" >> $(CONFIG_DIR)/revoked-serials.txt; \
	echo "revoked $(CN) (serial $$serial)"
	@$(MAKE) --no-print-directory crl

# Sign $(CONFIG_DIR)/crl.pem anew from revoked-serials.txt with the CA,
# valid for CRL_EXPIRY seconds (logd keeps enforcing an expired CRL but
# warns): run it again before then. cfssl prints the CRL as base64 DER;
# it is wrapped as PEM and renamed into place, so logd never reads half
# a file.
CRL_EXPIRY ?= 31536000
crl:
	@set -e; \
	touch $(CONFIG_DIR)/revoked-serials.txt; \
	$(GO) tool cfssl gencrl -loglevel 3 $(CONFIG_DIR)/revoked-serials.txt $(CONFIG_DIR)/ca.pem $(CONFIG_DIR)/ca-key.pem $(CRL_EXPIRY) \
		> $(CONFIG_DIR)/crl.b64.tmp; \
	{ echo "-----BEGIN X509 CRL-----"; fold -w 64 $(CONFIG_DIR)/crl.b64.tmp; echo "-----END X509 CRL-----"; } > $(CONFIG_DIR)/crl.pem.tmp; \
	rm $(CONFIG_DIR)/crl.b64.tmp; \
	mv $(CONFIG_DIR)/crl.pem.tmp $(CONFIG_DIR)/crl.pem; \
	echo "wrote $(CONFIG_DIR)/crl.pem ($$(grep -c . $(CONFIG_DIR)/revoked-serials.txt) revoked)"

# Storage benchmarks (each carries its own baseline, BenchmarkRawAppend),
# then logd end to end against the ceiling server (test/bench).
# One after the other, even under make -j: they would skew each other.
BENCHFLAGS ?=
bench:
	$(MAKE) --no-print-directory bench-log
	$(MAKE) --no-print-directory bench-e2e

bench-log:
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchmem -count $(BENCHCOUNT) ./internal/log/

# logd and the ceiling as processes, workload by workload: a Markdown
# table of records/s, latency and peak RSS against issue 7's targets.
# BENCHFLAGS='-trial 5s' (or LOGD_BENCH_TRIAL=5s) for longer trials; see
# go run ./test/bench -h.
bench-e2e:
	$(GO) run ./test/bench $(BENCHFLAGS)

# Fuzz the record decoder and the recovery of arbitrary files.
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeFrame$$' -fuzztime $(FUZZTIME) ./internal/log/
	$(GO) test -run '^$$' -fuzz '^FuzzOpen$$' -fuzztime $(FUZZTIME) ./internal/log/

clean:
	rm -rf bin
