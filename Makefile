# roamtun — build, demo and test. Both entry points set up what they need on a
# fresh Debian/Ubuntu machine (as root): `sudo make demo`, `sudo make test`.
GO        ?= go
PKGS      := $(shell cat .ci/packages)
BIN       := bin/roamtun
TESTFLAGS ?= -race -count=1 -timeout 25m

.PHONY: all build deps demo test check fmt vet bench fuzz clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/roamtun

# deps installs the Debian packages the tests and the demo drive for real
# (sshd, pppd in user-mode-linux, NetworkManager, dnsmasq, dbus-daemon ...).
# Installing must not start services on the host: policy-rc.d says no.
deps:
	@missing=$$(for p in $(PKGS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		[ -e /usr/sbin/policy-rc.d ] || { printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; }; \
		DEBIAN_FRONTEND=noninteractive apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi
	@[ -d /run/sshd ] || install -d -m 755 /run/sshd

demo: deps build
	$(BIN) demo

# test is what CI runs: static checks, then every test, privileged ones included
# (ROAMTUN_REQUIRE_PRIVILEGED=1 turns a skipped privileged test into a failure).
test: deps check
	ROAMTUN_REQUIRE_PRIVILEGED=1 $(GO) test $(TESTFLAGS) ./...

check: fmt vet

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

bench:
	$(GO) test -run=NONE -bench=. -benchmem ./...

# fuzz runs every fuzz target for FUZZTIME each (the checked-in corpora run in `make test`).
FUZZTIME ?= 30s
fuzz:
	@for pkg in $$($(GO) list ./...); do \
		for f in $$($(GO) test -list 'Fuzz.*' $$pkg | grep ^Fuzz); do \
			echo "== $$pkg $$f"; $(GO) test -run=NONE -fuzz="^$$f$$" -fuzztime=$(FUZZTIME) $$pkg || exit 1; \
		done; \
	done

clean:
	rm -rf bin
