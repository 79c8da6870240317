# StacyVM build and test entry points. `make test` is the command CI runs.

GO       ?= go
BIN      ?= bin
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X github.com/stacyvm/stacyvm/internal/version.Version=$(VERSION)
GOTEST_FLAGS ?= -race -count=1 -timeout 30m

.PHONY: all build agent server test vet bench images clean

all: build

build: server agent

server:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/stacyvm ./cmd/stacyvm

# The agent runs inside sandboxes, so it is always a static binary; the
# server finds it next to its own executable.
agent:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/stacyvm-agent ./cmd/stacyvm-agent

vet:
	$(GO) vet ./...

test: vet
	$(GO) test $(GOTEST_FLAGS) ./...

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

# Base images stacyvm/minimal and stacyvm/python, built from the Debian
# mirror by scripts/images/build.sh (needs root and debootstrap) as OCI
# layouts and docker-save archives in IMAGE_DIR. The script caches the
# debootstrap result, and the stamp file skips the script entirely until
# the script or mkoci changes. Delete IMAGE_DIR to rebuild from scratch.
#
# When a Docker engine answers, every run also makes sure the engine has
# each image with the ID in its archive, loading only missing or stale ones.
# The ID check compares the config digest, which is the image ID of
# Docker's classic image store. An engine that uses containerd's image
# store reports another ID, so there each run loads the archives again.
IMAGE_DIR    ?= /var/cache/stacyvm-images
IMAGE_NAMES  := minimal python
IMAGE_STAMP  := $(IMAGE_DIR)/images.done
IMAGE_INPUTS := scripts/images/build.sh $(wildcard scripts/images/mkoci/*.go)

images: $(IMAGE_STAMP)
	@if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then \
		for n in $(IMAGE_NAMES); do \
			want=$$(tar -xOf $(IMAGE_DIR)/$$n.tar manifest.json | grep -o '"Config":"[^"]*"' | grep -o 'sha256:[0-9a-f]*'); \
			have=$$(docker image inspect --format '{{.Id}}' stacyvm/$$n:latest 2>/dev/null || true); \
			if [ -n "$$want" ] && [ "$$have" = "$$want" ]; then \
				echo "images: Docker has stacyvm/$$n:latest ($$want)"; \
			else \
				echo "images: docker load -i $(IMAGE_DIR)/$$n.tar"; \
				docker load -i $(IMAGE_DIR)/$$n.tar || exit 1; \
			fi; \
		done; \
	else \
		echo "images: no Docker engine answers; skipped docker load"; \
	fi

$(IMAGE_STAMP): $(IMAGE_INPUTS)
	scripts/images/build.sh $(IMAGE_DIR)
	touch $@

clean:
	rm -rf $(BIN)
