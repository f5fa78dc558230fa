# roamtun — build, demo and test. Both entry points set up what they need on a
# fresh Debian/Ubuntu machine (as root): `sudo make demo`, `sudo make test`.
GO        ?= go
PKGS      := $(shell cat .ci/packages)
BIN       := bin/roamtun
TESTFLAGS ?= -race -count=1 -timeout 25m

# The version stamped into the binary (`roamtun version`) and the package:
# see dist/version.sh. Evaluated once.
ifeq ($(origin VERSION),undefined)
VERSION := $(shell sh dist/version.sh)
endif
# A static PIE without cgo: no libc dependency, hardened, the same on every
# distribution; stripped (-s -w) as Debian ships binaries.
GOBUILD   = CGO_ENABLED=0 $(GO) build -trimpath -buildmode=pie -buildvcs=auto -ldflags '-s -w -X main.version=$(VERSION)'

# Where `make install` puts things. The configuration is always read from
# /etc/roamtun (the binary's default), whatever PREFIX is.
PREFIX       ?= /usr
DESTDIR      ?=
BINDIR       ?= $(PREFIX)/bin
LIBDIR       ?= $(PREFIX)/lib
UNITDIR      ?= $(LIBDIR)/systemd/system
USERUNITDIR  ?= $(LIBDIR)/systemd/user
TMPFILESDIR  ?= $(LIBDIR)/tmpfiles.d
SYSUSERSDIR  ?= $(LIBDIR)/sysusers.d
DATADIR      ?= $(PREFIX)/share
DOCDIR       ?= $(DATADIR)/doc/roamtun
MANDIR       ?= $(DATADIR)/man
BASHCOMPDIR  ?= $(DATADIR)/bash-completion/completions
ZSHCOMPDIR   ?= $(DATADIR)/zsh/vendor-completions
FISHCOMPDIR  ?= $(DATADIR)/fish/vendor_completions.d
CONFDIR      := /etc/roamtun
AUTOSTARTDIR ?= /etc/xdg/autostart

.PHONY: all build deps demo-deps install-pkgs demo test test-unprivileged check fmt vet tidy lint bench fuzz clean install uninstall deb

all: build

build:
	$(GOBUILD) -o $(BIN) ./cmd/roamtun

# The binary that install copies: built when missing or older than a source,
# so that `make && sudo make install` needs no Go toolchain as root.
GOSRC := $(wildcard $(shell git ls-files '*.go' go.mod go.sum 2>/dev/null || find . -name '*.go'))
$(BIN): $(GOSRC)
	$(GOBUILD) -o $(BIN) ./cmd/roamtun

# deps installs the Debian packages the tests drive for real (sshd, pppd in
# user-mode-linux, NetworkManager, dnsmasq, dbus-daemon ...); demo-deps only
# what the demo needs. Installing must not start services on the host: a
# policy-rc.d says no while apt runs, and is removed after if it was ours.
DEMO_PKGS := openssh-server openssh-client iproute2 iputils-ping nftables libcap2-bin procps passwd util-linux
deps:
	@$(MAKE) --no-print-directory install-pkgs PKGLIST="$(PKGS)"
demo-deps:
	@$(MAKE) --no-print-directory install-pkgs PKGLIST="$(DEMO_PKGS)"
install-pkgs:
	@missing=$$(for p in $(PKGLIST); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		ours=; if [ ! -e /usr/sbin/policy-rc.d ]; then ours=1; printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; fi; \
		DEBIAN_FRONTEND=noninteractive apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; rc=$$?; \
		[ -z "$$ours" ] || rm -f /usr/sbin/policy-rc.d; exit $$rc; \
	fi

demo: demo-deps build
	$(BIN) demo

# test is what CI runs: static checks, then every test, privileged ones included
# (ROAMTUN_REQUIRE_PRIVILEGED=1 turns a skipped privileged test into a failure).
test: deps check test-unprivileged
	ROAMTUN_REQUIRE_PRIVILEGED=1 $(GO) test $(TESTFLAGS) ./...

# test-unprivileged is the fast tier: plain `go test ./...` as a user with no
# privileges (state machine, PPP engine, policy, config, DNS backends on
# fakes; tests that need root skip). As root it runs as nobody on a copy of
# the tree, so that nothing passes only because it ran as root.
test-unprivileged:
	@if [ "$$(id -u)" != 0 ]; then exec $(GO) test -count=1 ./...; fi; \
	d=$$(mktemp -d /tmp/roamtun-unpriv.XXXXXX); trap 'rm -rf "$$d"' EXIT; \
	cp -a . "$$d/src" && chown -R 65534:65534 "$$d" && cd "$$d/src" && \
	setpriv --reuid=65534 --regid=65534 --clear-groups env -i PATH="$$PATH" HOME="$$d" \
		GOCACHE="$$d/cache" GOMODCACHE="$$d/mod" GOFLAGS="$$GOFLAGS" GOPROXY="$$(go env GOPROXY)" \
		$(GO) test -count=1 ./...

check: fmt vet tidy lint

# tidy: go.mod and go.sum say exactly what the code imports.
tidy:
	@$(GO) mod tidy -diff >/dev/null || { echo "go.mod/go.sum are not tidy: run go mod tidy"; $(GO) mod tidy -diff; exit 1; }

# lint: staticcheck, fetched through the module proxy at a pinned version.
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
# The product binary links no test framework (the lab it shares with the
# tests takes an interface, not *testing.T).
lint:
	$(GO) run $(STATICCHECK) ./...
	@if $(GO) list -deps ./cmd/roamtun | grep -qx testing; then echo "cmd/roamtun links package testing"; exit 1; fi

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

# install copies the binary, the units (their paths rewritten to BINDIR),
# tmpfiles, sysusers, the man page and shell completions (which the binary
# prints from its command table), docs and examples. The configuration
# /etc/roamtun/roamtun.toml (no profile yet) is installed only where there is
# none. Installing into the live system (no DESTDIR) also creates the group
# and reloads systemd; it starts nothing.
install: $(BIN)
	install -d -m 0755 $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(USERUNITDIR) \
		$(DESTDIR)$(TMPFILESDIR) $(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(MANDIR)/man1 \
		$(DESTDIR)$(DOCDIR)/examples/networks.d $(DESTDIR)$(DOCDIR)/examples/hooks.d \
		$(DESTDIR)$(CONFDIR)/networks.d $(DESTDIR)$(CONFDIR)/hooks.d $(DESTDIR)$(AUTOSTARTDIR) \
		$(DESTDIR)$(BASHCOMPDIR) $(DESTDIR)$(ZSHCOMPDIR) $(DESTDIR)$(FISHCOMPDIR)
	install -m 0755 $(BIN) $(DESTDIR)$(BINDIR)/roamtun
	sed 's|/usr/bin/roamtun|$(BINDIR)/roamtun|g' dist/systemd/roamtun.service >$(DESTDIR)$(UNITDIR)/roamtun.service
	sed 's|/usr/bin/roamtun|$(BINDIR)/roamtun|g' dist/systemd/roamtun-notify.service >$(DESTDIR)$(USERUNITDIR)/roamtun-notify.service
	sed 's|^Exec=roamtun |Exec=$(BINDIR)/roamtun |' dist/xdg/roamtun-notify.desktop >$(DESTDIR)$(AUTOSTARTDIR)/roamtun-notify.desktop
	chmod 0644 $(DESTDIR)$(UNITDIR)/roamtun.service $(DESTDIR)$(USERUNITDIR)/roamtun-notify.service \
		$(DESTDIR)$(AUTOSTARTDIR)/roamtun-notify.desktop
	install -m 0644 dist/systemd/roamtun.tmpfiles $(DESTDIR)$(TMPFILESDIR)/roamtun.conf
	install -m 0644 dist/systemd/roamtun.sysusers $(DESTDIR)$(SYSUSERSDIR)/roamtun.conf
	$(BIN) man >$(DESTDIR)$(MANDIR)/man1/roamtun.1
	$(BIN) completion bash >$(DESTDIR)$(BASHCOMPDIR)/roamtun
	$(BIN) completion zsh >$(DESTDIR)$(ZSHCOMPDIR)/_roamtun
	$(BIN) completion fish >$(DESTDIR)$(FISHCOMPDIR)/roamtun.fish
	chmod 0644 $(DESTDIR)$(MANDIR)/man1/roamtun.1 $(DESTDIR)$(BASHCOMPDIR)/roamtun \
		$(DESTDIR)$(ZSHCOMPDIR)/_roamtun $(DESTDIR)$(FISHCOMPDIR)/roamtun.fish
	install -m 0644 README.md $(DESTDIR)$(DOCDIR)/README.md
	install -m 0644 dist/etc/roamtun/roamtun.toml $(DESTDIR)$(DOCDIR)/examples/roamtun.toml
	install -m 0644 dist/etc/roamtun/networks.d/10-home.toml $(DESTDIR)$(DOCDIR)/examples/networks.d/10-home.toml
	install -m 0644 dist/etc/roamtun/hooks.d/50-ospf.example $(DESTDIR)$(DOCDIR)/examples/hooks.d/50-ospf.example
	@if [ -e $(DESTDIR)$(CONFDIR)/roamtun.toml ]; then \
		echo "keeping $(DESTDIR)$(CONFDIR)/roamtun.toml"; \
	else \
		install -m 0644 dist/etc/roamtun/default.toml $(DESTDIR)$(CONFDIR)/roamtun.toml; \
	fi
	@if [ -z "$(DESTDIR)" ]; then \
		getent group roamtun >/dev/null || systemd-sysusers $(SYSUSERSDIR)/roamtun.conf 2>/dev/null || addgroup --system roamtun; \
		[ ! -d /run/systemd/system ] || systemctl daemon-reload; \
		echo "installed; add a [profile.NAME] to $(CONFDIR)/roamtun.toml, then: systemctl enable --now roamtun"; \
	fi

# uninstall removes what install put, except /etc/roamtun (the configuration).
uninstall:
	rm -f $(DESTDIR)$(BINDIR)/roamtun $(DESTDIR)$(UNITDIR)/roamtun.service \
		$(DESTDIR)$(USERUNITDIR)/roamtun-notify.service $(DESTDIR)$(TMPFILESDIR)/roamtun.conf \
		$(DESTDIR)$(SYSUSERSDIR)/roamtun.conf $(DESTDIR)$(MANDIR)/man1/roamtun.1 \
		$(DESTDIR)$(AUTOSTARTDIR)/roamtun-notify.desktop $(DESTDIR)$(BASHCOMPDIR)/roamtun \
		$(DESTDIR)$(ZSHCOMPDIR)/_roamtun $(DESTDIR)$(FISHCOMPDIR)/roamtun.fish
	rm -rf $(DESTDIR)$(DOCDIR)

# deb writes $(DEBDIR)/roamtun_VERSION_ARCH.deb (bin/ unless told): `make
# install` into a fresh tree, then dist/debian/build-deb.sh (dpkg-deb; no
# debhelper, nothing downloaded). Then: lintian $(DEBDIR)/roamtun_*.deb
DEBDIR  ?= bin
DEBROOT := $(DEBDIR)/debroot
deb: build
	rm -rf $(DEBROOT) $(DEBDIR)/roamtun_*.deb
	$(MAKE) --no-print-directory install DESTDIR=$(abspath $(DEBROOT)) PREFIX=/usr VERSION='$(VERSION)'
	GO='$(GO)' sh dist/debian/build-deb.sh $(DEBROOT) '$(VERSION)' $(DEBDIR)

clean:
	rm -rf bin
