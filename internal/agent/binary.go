package agent

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// EnvBinary names the environment variable that overrides where providers
// find the agent binary.
const EnvBinary = "STACYVM_AGENT_BIN"

// ErrBinaryNotFound is returned by BinaryPath when no agent binary was found.
var ErrBinaryNotFound = errors.New("agent binary not found")

// BinaryPath locates the stacyvm-agent binary that providers copy or mount
// into sandboxes. It searches, in order: the file named by $STACYVM_AGENT_BIN
// (which, when set, must exist), stacyvm-agent next to the running
// executable, and stacyvm-agent in PATH. The error matches
// ErrBinaryNotFound, lists the places searched and gives the build command.
func BinaryPath() (string, error) {
	if path := os.Getenv(EnvBinary); path != "" {
		if err := checkExecutable(path); err != nil {
			return "", fmt.Errorf("%w: %s=%s: %w; %s", ErrBinaryNotFound, EnvBinary, path, err, buildHint)
		}
		return path, nil
	}

	var searched []string
	if self, err := os.Executable(); err == nil {
		path := filepath.Join(filepath.Dir(self), BinaryName)
		if checkExecutable(path) == nil {
			return path, nil
		}
		searched = append(searched, path)
	}
	if path, err := exec.LookPath(BinaryName); err == nil {
		return path, nil
	}
	searched = append(searched, BinaryName+" in PATH")
	return "", fmt.Errorf("%w: searched $%s (unset), %s; %s",
		ErrBinaryNotFound, EnvBinary, strings.Join(searched, ", "), buildHint)
}

// buildHint is the build instruction appended to ErrBinaryNotFound errors.
const buildHint = "build it with `make build`, or with `CGO_ENABLED=0 go build -o bin/stacyvm-agent ./cmd/stacyvm-agent` " +
	"and place it next to the stacyvm binary or set " + EnvBinary

// checkExecutable returns an error unless path is an executable regular
// file.
func checkExecutable(path string) error {
	info, err := os.Stat(path)
	switch {
	case err != nil:
		return err
	case !info.Mode().IsRegular():
		return fmt.Errorf("%s is not a regular file", path)
	case info.Mode().Perm()&0o111 == 0:
		return fmt.Errorf("%s is not executable", path)
	}
	return nil
}
