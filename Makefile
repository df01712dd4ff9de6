# registry-up: `make demo` brings up a verified registry offline; `make test` runs every test.
# Both work on a fresh Debian 12 machine as root (they install what they need with apt-get).

SHELL := /bin/bash
CARGO ?= cargo
# Podman settings these machines need (runc; no default ulimits), kept out of /etc.
export CONTAINERS_CONF ?= $(CURDIR)/tests/fixtures/containers.conf

DEB_PACKAGES := podman runc skopeo nginx docker-registry openssl catatonit uidmap iproute2 curl systemd tar ca-certificates time python3 slirp4netns fuse-overlayfs debootstrap systemd-container nftables lintian binutils dpkg-dev containerd
# Tools built with cargo (packaging), cached outside target/ so `cargo clean` keeps them.
export REGISTRY_UP_TOOLS ?= $(HOME)/.cache/registry-up-tools
CARGO_DEB_VERSION := 3.8.0
# Garage, the S3 object store the replica tests run (issue 14): ~9 min to build once per machine.
GARAGE_VERSION := 2.5.0
IMAGES := target/test-images/registry.tar target/test-images/registry-2x.tar target/test-images/nginx.tar
# A second build with another tag: the "new version" for upgrade tests.
IMAGES_V2 := target/test-images/v2/registry.tar target/test-images/v2/registry-2x.tar target/test-images/v2/nginx.tar

DEMO_PORT ?= 8443
DEMO_DIR := $(CURDIR)/target/demo
DEMO_ARGS := --domain localhost --san 127.0.0.1 --port $(DEMO_PORT) \
	--config-dir $(DEMO_DIR)/config --data-dir $(DEMO_DIR)/data --pod-name registry-up-demo \
	--registry-image localhost/registry-up-test/registry:latest \
	--nginx-image localhost/registry-up-test/nginx:latest

.PHONY: packages deps test-images guests build package demo demo-down test lint bench

# Debian packages and every crate: what `make demo` needs; after this, builds need no network.
packages:
	@if ! dpkg -s $(DEB_PACKAGES) >/dev/null 2>&1; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(DEB_PACKAGES) >/dev/null; \
	fi
	$(CARGO) fetch --locked -q

# Everything the tests need as well: cargo-deb (packaging) and Garage (the S3 tests), built once per
# machine into $(REGISTRY_UP_TOOLS).
deps: packages
	@if [ "$$($(REGISTRY_UP_TOOLS)/bin/cargo-deb --version 2>/dev/null)" != "cargo-deb $(CARGO_DEB_VERSION)" ]; then \
		$(CARGO) install -q cargo-deb --version $(CARGO_DEB_VERSION) --locked --root $(REGISTRY_UP_TOOLS); \
	fi
	@# `garage --version` says "garage cargo:2.5.0 [features: …]" for a cargo-installed build.
	@if ! $(REGISTRY_UP_TOOLS)/bin/garage --version 2>/dev/null | grep -qE "(:|v)$(GARAGE_VERSION)( |$$)"; then \
		echo "building Garage $(GARAGE_VERSION) into $(REGISTRY_UP_TOOLS) (once per machine, ~10 min)"; \
		$(CARGO) install -q garage --version $(GARAGE_VERSION) --locked --root $(REGISTRY_UP_TOOLS); \
	fi

# Offline stand-ins for the registry image (3.x and 2.x layouts) and nginx:alpine, built from Debian
# packages (tests/images/build.sh).
test-images: $(IMAGES) $(IMAGES_V2)
$(IMAGES) &: tests/images/build.sh
	tests/images/build.sh target/test-images
$(IMAGES_V2) &: tests/images/build.sh
	tests/images/build.sh target/test-images/v2 v2

# Debian guests that boot their own systemd under systemd-nspawn (bookworm: Podman 4.3; trixie: Podman 5).
GUESTS := target/guests/bookworm/.complete target/guests/trixie/.complete
guests: $(GUESTS)
target/guests/%/.complete: tests/guests/build.sh
	tests/guests/build.sh $* target/guests/$*

build:
	$(CARGO) build --release --locked

# The .deb (target/debian/) and a tarball with its checksum (target/package/): packaging/build.sh.
package: deps
	CARGO="$(CARGO)" packaging/build.sh

demo: packages test-images build
	target/release/registry-up $(DEMO_ARGS) \
		--image-archive target/test-images/registry.tar --image-archive target/test-images/nginx.tar
	@echo
	@echo "Push to it (the CA is $(DEMO_DIR)/config/ca.crt):"
	@echo "  skopeo copy --dest-cert-dir $(DEMO_DIR)/config oci-archive:target/test-images/nginx.tar docker://localhost:$(DEMO_PORT)/demo/nginx:1"
	@echo "  skopeo inspect --cert-dir $(DEMO_DIR)/config docker://localhost:$(DEMO_PORT)/demo/nginx:1"
	@echo "Stop it with: make demo-down"

demo-down:
	-podman play kube --down $(DEMO_DIR)/config/registry-pod.yaml
	rm -rf $(DEMO_DIR)

test: deps test-images guests package
	REGISTRY_UP_E2E=require $(CARGO) test --locked

# Figures against the baselines users would otherwise use (a few minutes; not part of `make test`).
bench: deps test-images build
	python3 bench/bench.py

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets --locked -- -D warnings
