# SPDX-License-Identifier: Apache-2.0
#
# weft's developer entry points. `make` alone lists them: every target with a
# `## ` comment is documented by `make help`.
#
# The development and CI machines are root on a real Linux kernel, so
# `make test` runs every test tier the machine allows (see docs/development.md).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-builtin-rules

MODULE := github.com/weft-mesh/weft
BIN := $(CURDIR)/bin

# Go from the official tarball, when it is not on PATH already.
export PATH := $(PATH):/usr/local/go/bin
GO ?= go
# go.mod and go.sum change only through a deliberate `go get`/`go mod tidy`.
export GOFLAGS := $(strip $(GOFLAGS) -mod=readonly)
export DEBIAN_FRONTEND := noninteractive

# Debian packages the build and the tests need; `make deps` installs the
# missing ones. Go itself comes from /usr/local/go. protobuf-compiler,
# clang-14, llvm-14, libbpf-dev and bpftool pin the generators of
# `make generate` (CI regenerates and diffs); iproute2 and curl drive the
# datapath and end-to-end tests; systemd (systemd-analyze verify) and
# shellcheck check deploy/ (test/deploy). Planned: etcd-server (HA store tests),
# prometheus. (nginx and haproxy: BENCH_APT_PACKAGES, installed by `make bench`.)
APT_PACKAGES ?= git ca-certificates protobuf-compiler clang-14 llvm-14 libbpf-dev bpftool iproute2 curl systemd shellcheck
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X $(MODULE)/pkg/version.Version=$(VERSION)

GOLANGCI_LINT_VERSION ?= v2.15.0
GOLANGCI_LINT := $(BIN)/golangci-lint
GOLANGCI_LINT_STAMP := $(BIN)/.golangci-lint-$(GOLANGCI_LINT_VERSION)

# Test knobs. WEFT_REQUIRE_PRIVILEGED=1 turns skips of privileged tests into
# failures (.ci/run sets it).
export WEFT_REQUIRE_PRIVILEGED ?=
TEST_TAGS ?= e2e
TEST_FLAGS ?= -race -count=1 -p 2
FUZZTIME ?= 20s
ARGS ?=

# Every "dir:FuzzName" of the module, found in *_test.go files.
# (Braces, not parentheses: the patterns hold unbalanced parentheses.)
FUZZ_TARGETS = ${shell grep -rEo --include='*_test.go' --exclude-dir=bin --exclude-dir=testdata --exclude-dir='.?*' \
	'^func Fuzz[A-Za-z0-9_]*\(' . 2>/dev/null | sed -E 's|^\./||; s|/[^/]*_test\.go:func |:|; s|\($$||' | sort -u}
# Directories that hold //go:generate directives.
GENERATE_DIRS = $(shell grep -rl --include='*.go' --exclude-dir=bin --exclude-dir='.?*' '^//go:generate ' . 2>/dev/null | xargs -r -n1 dirname | sort -u)
# Packages whose tests touch the kernel.
PRIV_PKGS = $(foreach d,agent test/testutil test/deploy,$(if $(wildcard $(d)),./$(d)/...))

# Test recipes run `go test -json ... | $(TESTSUM)`: a compact report that
# shows failures and skip reasons and ends in "tests: N passed, N failed, N skipped".
TESTSUM := $(BIN)/testsum
BUILD_TESTSUM = $(GO) build -o $(TESTSUM) ./test/testsum

.PHONY: help
help: ## Show this help
	@echo "Usage: make <target> [VAR=value]"
	@awk 'BEGIN {FS = ":.*## "} /^##@ / {printf "\n%s\n", substr($$0, 5)} /^[a-zA-Z0-9_-]+:.*## / {printf "  %-15s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo "Variables: FUZZTIME=$(FUZZTIME) TEST_FLAGS='$(TEST_FLAGS)' WEFT_REQUIRE_PRIVILEGED=1 ARGS='...' (demo)"

##@ Setup

.PHONY: deps
deps: ## Install missing Debian packages (APT_PACKAGES) and download Go modules
	@missing=(); \
	for p in $(APT_PACKAGES); do \
		dpkg -s "$$p" 2>/dev/null | grep -q '^Status: install ok installed' || missing+=("$$p"); \
	done; \
	if (( $${#missing[@]} )); then \
		echo "deps: installing $${missing[*]}"; \
		$(SUDO) apt-get update -q; \
		$(SUDO) apt-get install -y -q --no-install-recommends "$${missing[@]}"; \
	fi
	@$(GO) mod download

##@ Build

.PHONY: build
build: ## Build every command in cmd/ into bin/, stamped with the git version
	@if compgen -G 'cmd/*/*.go' >/dev/null; then \
		mkdir -p $(BIN); \
		$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/...; \
		echo "built $(VERSION):" $$(cd cmd && ls -d */ | tr -d /); \
	else \
		echo "build: cmd/ has no commands yet"; \
	fi

.PHONY: generate
generate: ## Regenerate code (protobufs, bpf2go objects and bindings) with go generate
	@if [ -n "$(GENERATE_DIRS)" ]; then \
		$(GO) build -o $(BIN)/protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go; \
		$(GO) build -o $(BIN)/protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc; \
		$(GO) generate ./...; \
	else \
		echo "generate: no //go:generate directives yet (bpf/ has no sources)"; \
	fi

.PHONY: check-generate
check-generate: ## Fail if `make generate` changes the work tree (generated files are committed)
	@if [ -z "$(GENERATE_DIRS)" ]; then \
		echo "check-generate: nothing to check, no //go:generate directives yet (bpf/ has no sources)"; \
		exit 0; \
	fi; \
	state() { \
		git ls-files -z --modified --others --exclude-standard | sort -zu | \
		while IFS= read -r -d '' f; do \
			if [ -e "$$f" ]; then sha256sum "$$f"; else echo "deleted $$f"; fi; \
		done; \
	}; \
	before=$$(mktemp); trap 'rm -f "$$before"' EXIT; \
	state >"$$before"; \
	$(MAKE) --no-print-directory generate; \
	if ! changes=$$(diff "$$before" <(state)); then \
		echo "check-generate: go generate changed these files; run 'make generate' and commit the result:"; \
		grep '^[<>]' <<<"$$changes" | awk '{print "  " $$NF}' | sort -u; \
		exit 1; \
	fi; \
	echo "check-generate: generated files are up to date"

.PHONY: format
format: $(GOLANGCI_LINT_STAMP) ## Format Go (gofmt, gofumpt, goimports) and BPF C (clang-format)
	@gofmt -w $$(git ls-files --cached --others --exclude-standard '*.go')
	@$(GOLANGCI_LINT) fmt ./...
	@if compgen -G 'bpf/*/*.[ch]' >/dev/null && command -v clang-format >/dev/null; then \
		clang-format -i bpf/*/*.[ch]; \
	fi

.PHONY: lint
lint: $(GOLANGCI_LINT_STAMP) ## Run golangci-lint (.golangci.yml)
	$(GOLANGCI_LINT) run ./...

$(GOLANGCI_LINT_STAMP):
	@mkdir -p $(BIN)
	@rm -f $(BIN)/.golangci-lint-*
	GOBIN=$(BIN) $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
	@touch $@

##@ Test

.PHONY: test
test: deps ## Run all tiers the machine allows (unit, privileged, e2e), then fuzz every target for FUZZTIME
	@$(BUILD_TESTSUM)
	@rc=0; { \
		$(GO) test -json $(TEST_FLAGS) -tags '$(TEST_TAGS)' ./... 2>&1 || rc=1; \
		for t in $(FUZZ_TARGETS); do \
			$(GO) test -json -run='^$$' -fuzz="^$${t#*:}\$$" -fuzztime=$(FUZZTIME) "./$${t%%:*}" 2>&1 || rc=1; \
		done; \
		exit $$rc; \
	} | $(TESTSUM)

.PHONY: test-unit
test-unit: ## Run unit tests only (go test -short: no root, no kernel)
	@$(BUILD_TESTSUM)
	@$(GO) test -json $(TEST_FLAGS) -short ./... 2>&1 | $(TESTSUM)

.PHONY: test-priv
test-priv: ## Run the packages with kernel-touching tests, failing on any skip (sudo when not root)
	@if [ -z "$(PRIV_PKGS)" ]; then echo "test-priv: no packages with privileged tests"; exit 0; fi
	@$(BUILD_TESTSUM)
	@WEFT_REQUIRE_PRIVILEGED=1 $(GO) test -json $(TEST_FLAGS) $(if $(SUDO),-exec 'sudo -E') $(PRIV_PKGS) 2>&1 | $(TESTSUM)

.PHONY: e2e
e2e: ## Run the end-to-end tests (test/e2e, build tag e2e)
	@if [ ! -d test/e2e ]; then echo "e2e: no end-to-end tests yet (test/e2e)"; exit 0; fi
	@$(BUILD_TESTSUM)
	@$(GO) test -json $(TEST_FLAGS) -tags e2e ./test/e2e/... 2>&1 | $(TESTSUM)

.PHONY: fuzz
fuzz: ## Fuzz every Fuzz target for FUZZTIME each (default 20s)
	@if [ -z "$(FUZZ_TARGETS)" ]; then echo "fuzz: no fuzz targets yet"; exit 0; fi; \
	for t in $(FUZZ_TARGETS); do \
		echo "fuzz: $${t%%:*} $${t#*:} for $(FUZZTIME)"; \
		$(GO) test -run='^$$' -fuzz="^$${t#*:}\$$" -fuzztime=$(FUZZTIME) "./$${t%%:*}"; \
	done

# `make bench` only: nginx and HAProxy stand in weft-proxy's place. They are
# installed by the bench target, so `make test` never needs them.
BENCH_APT_PACKAGES ?= nginx haproxy
# Options of weft-bench, e.g. BENCH_ARGS='-runs 3 -duration 1s' for a quicker
# run (docs/performance.md).
BENCH_ARGS ?=

.PHONY: bench
bench: deps ## Benchmarks (never part of test, root, ~12 min): direct, L4 eBPF, weft-proxy, nginx, HAProxy, control plane; then the Go benchmarks
	@missing=(); \
	for p in $(BENCH_APT_PACKAGES); do \
		dpkg -s "$$p" 2>/dev/null | grep -q '^Status: install ok installed' || missing+=("$$p"); \
	done; \
	if (( $${#missing[@]} )); then \
		echo "bench: installing $${missing[*]}"; \
		$(SUDO) apt-get update -q; \
		$(SUDO) apt-get install -y -q --no-install-recommends "$${missing[@]}"; \
	fi
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/weft-agent ./cmd/weft-proxy
	$(GO) build -o $(BIN)/weft-bench ./test/bench
	$(SUDO) $(BIN)/weft-bench -bin-dir $(BIN) -out bench-results $(BENCH_ARGS)
	$(GO) test -run='^$$' -bench=. -benchmem ./...

.PHONY: check
check: check-generate lint test ## What CI checks: check-generate, lint, test

##@ Run

.PHONY: demo
demo: deps ## Run the demo: the mesh on two simulated nodes, a guided tour (ARGS=--once: tour, then exit)
	$(GO) build -o $(BIN)/weft-demo ./test/demo
	$(BIN)/weft-demo $(ARGS)

.PHONY: vm-up
vm-up: ## Start the Vagrant VM (Debian 12) with the repo synced to ~/weft
	vagrant up dev

.PHONY: vm-test
vm-test: ## Run make test inside the Vagrant VM (as root)
	vagrant ssh dev -c 'cd /home/vagrant/weft && sudo make test'

# The architecture of the Vagrant mesh's machines (debian/bookworm64).
VAGRANT_GOARCH ?= amd64

.PHONY: vagrant-mesh
vagrant-mesh: ## Bring up a controller and two nodes in Vagrant, installed by deploy/install.sh (see deploy/README.md)
	mkdir -p $(BIN)/vagrant .vagrant-mesh
	GOOS=linux GOARCH=$(VAGRANT_GOARCH) $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/vagrant/ ./cmd/...
	test -s .vagrant-mesh/token || (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >.vagrant-mesh/token && echo >>.vagrant-mesh/token)
	vagrant up controller node1 node2

.PHONY: clean
clean: ## Remove bin/ and the test cache
	rm -rf $(BIN) coverage*
	$(GO) clean -testcache
