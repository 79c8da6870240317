package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

// Output formats accepted by -o/--output.
const (
	outputDefault = ""
	outputJSON    = "json"
	outputWide    = "wide"
)

// addOutputFlag registers -o/--output with the formats a command supports
// besides its default.
func addOutputFlag(cmd *cobra.Command, target *string, formats ...string) {
	cmd.Flags().StringVarP(target, "output", "o", outputDefault,
		"output format: "+strings.Join(formats, " or ")+" (default: human-readable)")
}

// checkOutput rejects an -o value the command does not support.
func checkOutput(value string, formats ...string) error {
	if value == outputDefault {
		return nil
	}
	for _, f := range formats {
		if value == f {
			return nil
		}
	}
	return usageError(fmt.Errorf("invalid --output %q: use %s", value, strings.Join(formats, " or ")))
}

// printJSON writes v as indented JSON followed by a newline.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// newTable returns a writer that aligns tab-separated columns. The caller
// calls Flush.
func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
}

// humanDuration formats d compactly for tables, with more precision for
// short durations: "45s", "3m20s", "42m", "5h10m", "20h", "3d4h", "12d".
func humanDuration(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	seconds := int64(d / time.Second)
	minutes := seconds / 60
	hours := minutes / 60
	days := hours / 24

	switch {
	case seconds < 60:
		return fmt.Sprintf("%ds", seconds)
	case minutes < 10:
		return fmt.Sprintf("%dm%ds", minutes, seconds%60)
	case hours < 1:
		return fmt.Sprintf("%dm", minutes)
	case hours < 10:
		return fmt.Sprintf("%dh%dm", hours, minutes%60)
	case days < 1:
		return fmt.Sprintf("%dh", hours)
	case days < 7:
		return fmt.Sprintf("%dd%dh", days, hours%24)
	}
	return fmt.Sprintf("%dd", days)
}

// orDash returns s, or "-" when s is empty, so table columns stay aligned.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
