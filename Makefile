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

clean:
	rm -rf $(BIN)
