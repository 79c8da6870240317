package proot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// consoleFile is the name of the sandbox's console log. The provider
// appends one line per lifecycle step and per exec, and the agent and
// PRoot write their own messages to it.
const consoleFile = "console.log"

// logf appends one line to the sandbox's console log, prefixed with the
// time in RFC 3339 with milliseconds. Write errors are ignored, so that
// the log cannot fail the operation it describes.
func (sb *sandbox) logf(format string, args ...any) {
	line := time.Now().UTC().Format("2006-01-02T15:04:05.000Z07:00") + " " + fmt.Sprintf(format, args...)
	line = strings.ReplaceAll(line, "\n", `\n`) + "\n"

	sb.logMu.Lock()
	defer sb.logMu.Unlock()
	f, err := openConsole(sb.dir)
	if err != nil {
		return
	}
	_, _ = f.WriteString(line)
	_ = f.Close()
}

// openConsole opens the console log of the sandbox in dir for appending.
func openConsole(dir string) (*os.File, error) {
	return os.OpenFile(filepath.Join(dir, consoleFile), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
}

// Logs returns up to the last lines lines of the sandbox's console log; lines
// <= 0 returns all of it.
func (p *Provider) Logs(ctx context.Context, id string, lines int) ([]string, error) {
	sb, err := p.lookup(ctx, id)
	if err != nil {
		return nil, err
	}
	sb.logMu.Lock()
	data, err := os.ReadFile(filepath.Join(sb.dir, consoleFile))
	sb.logMu.Unlock()
	if errors.Is(err, os.ErrNotExist) {
		return []string{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("proot: read console log of %s: %w", id, err)
	}
	return lastLines(data, lines), nil
}

// lastLines splits data into lines and returns the last n of them, or all
// when n <= 0.
func lastLines(data []byte, n int) []string {
	if len(data) == 0 {
		return []string{}
	}
	all := strings.Split(string(bytes.TrimSuffix(data, []byte("\n"))), "\n")
	if n > 0 && len(all) > n {
		all = all[len(all)-n:]
	}
	return all
}
