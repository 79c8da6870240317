package mock

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

// consoleFile is the name of the sandbox's console log.
const consoleFile = "console.log"

// logf appends one line to the sandbox's console log, prefixed with the
// time in RFC 3339 with milliseconds. Errors are ignored, because the log
// must never fail the operation it describes.
func (sb *sandbox) logf(format string, args ...any) {
	line := time.Now().UTC().Format("2006-01-02T15:04:05.000Z07:00") + " " + fmt.Sprintf(format, args...)
	line = strings.ReplaceAll(line, "\n", `\n`) + "\n"

	sb.logMu.Lock()
	defer sb.logMu.Unlock()
	f, err := os.OpenFile(filepath.Join(sb.dir, consoleFile), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return
	}
	_, _ = f.WriteString(line)
	_ = f.Close()
}

// Logs returns up to the last lines lines of the sandbox's console log; lines
// <= 0 returns all of it.
func (p *Provider) Logs(ctx context.Context, id string, lines int) ([]string, error) {
	sb, err := p.lookup(id)
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
		return nil, fmt.Errorf("mock: read console log of %s: %w", id, err)
	}

	all := strings.Split(string(bytes.TrimSuffix(data, []byte("\n"))), "\n")
	if len(data) == 0 {
		all = []string{}
	}
	if lines > 0 && len(all) > lines {
		all = all[len(all)-lines:]
	}
	return all, nil
}
