package native

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/stacyvm/stacyvm/internal/provider"
)

// The console log of a sandbox holds the stderr of its setup step and of
// its agent, and one line per spawn and exec written by the provider.

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

// logExec records one exec in the console log.
func (sb *sandbox) logExec(argv []string, res provider.ExecResult, err error) {
	summary := fmt.Sprintf("%q", argv)
	if len(summary) > 200 {
		summary = summary[:200] + "..."
	}
	switch {
	case err != nil:
		sb.logf("exec %s error=%q duration=%s", summary, err.Error(), res.Duration)
	case res.ExitReason != "":
		sb.logf("exec %s exit=%d reason=%s duration=%s", summary, res.ExitCode, res.ExitReason, res.Duration)
	default:
		sb.logf("exec %s exit=%d duration=%s", summary, res.ExitCode, res.Duration)
	}
}

// Logs returns up to the last lines lines of the sandbox's console log;
// lines <= 0 returns all of it.
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
		return nil, fmt.Errorf("native: read console log of %s: %w", id, err)
	}
	return lastLines(data, lines), nil
}

// consoleTail returns the last n lines of the console log in dir as one
// string, for error messages.
func consoleTail(dir string, n int) string {
	data, err := os.ReadFile(filepath.Join(dir, consoleFile))
	if err != nil {
		return ""
	}
	return strings.Join(lastLines(data, n), "\n")
}

func lastLines(data []byte, n int) []string {
	data = bytes.TrimSuffix(data, []byte("\n"))
	if len(data) == 0 {
		return []string{}
	}
	all := strings.Split(string(data), "\n")
	if n > 0 && len(all) > n {
		all = all[len(all)-n:]
	}
	return all
}
