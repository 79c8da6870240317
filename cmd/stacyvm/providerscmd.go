package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/stacyvm/stacyvm/pkg/client"
)

// providerCapabilities is the capabilities object of a provider in the
// server's /health report.
type providerCapabilities struct {
	Isolation   string   `json:"isolation"`
	Isolated    bool     `json:"isolated"`
	Network     bool     `json:"network"`
	Runtimes    []string `json:"runtimes"`
	Inventory   bool     `json:"inventory"`
	Stats       bool     `json:"stats"`
	Logs        bool     `json:"logs"`
	Description string   `json:"description"`
}

// providerRow is one provider as the providers command prints it.
type providerRow struct {
	Name         string               `json:"name"`
	Default      bool                 `json:"default"`
	Healthy      bool                 `json:"healthy"`
	Error        string               `json:"error,omitempty"`
	Capabilities providerCapabilities `json:"capabilities"`
}

func (a *app) newProvidersCommand() *cobra.Command {
	var output string
	list := func(cmd *cobra.Command, args []string) error {
		if err := checkOutput(output, outputJSON); err != nil {
			return err
		}
		return a.listProviders(cmd, output)
	}

	cmd := &cobra.Command{
		Use:     "providers",
		Aliases: []string{"provider"},
		Short:   "List the server's providers",
		Long: "List the providers registered in the server at --server: whether each is\n" +
			"healthy, what it isolates, its capabilities, and which is the default\n" +
			"(marked *). The data comes from GET /api/v1/health.",
		Args: exactArgs(0),
		RunE: list,
	}
	addOutputFlag(cmd, &output, outputJSON)

	// "providers list" is the same command, for people who expect a verb.
	listCmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the server's providers",
		Args:    exactArgs(0),
		RunE:    list,
	}
	addOutputFlag(listCmd, &output, outputJSON)
	cmd.AddCommand(listCmd)
	return cmd
}

func (a *app) listProviders(cmd *cobra.Command, output string) error {
	c, err := a.client(cmd)
	if err != nil {
		return err
	}
	health, err := c.Health(cmd.Context())
	if err != nil {
		return err
	}
	rows, err := providerRows(health)
	if err != nil {
		return err
	}

	if output == outputJSON {
		return printJSON(a.stdout, rows)
	}
	return printProviderTable(a.stdout, rows)
}

// providerRows converts the providers of a health report into rows sorted
// by name.
func providerRows(health client.Health) ([]providerRow, error) {
	rows := make([]providerRow, 0, len(health.Providers))
	for name, ph := range health.Providers {
		row := providerRow{Name: name, Default: name == health.DefaultProvider, Healthy: ph.Healthy, Error: ph.Error}
		if len(ph.Capabilities) > 0 {
			if err := json.Unmarshal(ph.Capabilities, &row.Capabilities); err != nil {
				return nil, fmt.Errorf("decode the capabilities of provider %s: %w", name, err)
			}
		}
		if row.Capabilities.Runtimes == nil {
			row.Capabilities.Runtimes = []string{}
		}
		rows = append(rows, row)
	}
	slices.SortFunc(rows, func(x, y providerRow) int { return strings.Compare(x.Name, y.Name) })
	return rows, nil
}

// printProviderTable prints one row per provider. The error column is the
// reason of an unhealthy provider.
func printProviderTable(w io.Writer, rows []providerRow) error {
	t := newTable(w)
	fmt.Fprintln(t, "NAME\tDEFAULT\tHEALTHY\tISOLATION\tRUNTIMES\tCAPABILITIES\tERROR")
	for _, r := range rows {
		def := ""
		if r.Default {
			def = "*"
		}
		fmt.Fprintf(t, "%s\t%s\t%t\t%s\t%s\t%s\t%s\n",
			r.Name, orDash(def), r.Healthy, orDash(r.Capabilities.Isolation),
			orDash(strings.Join(r.Capabilities.Runtimes, ",")), orDash(capabilityList(r.Capabilities)), orDash(r.Error))
	}
	return t.Flush()
}

// capabilityList names the capabilities that are true, comma-separated.
func capabilityList(c providerCapabilities) string {
	var names []string
	for _, flag := range []struct {
		name string
		set  bool
	}{
		{"isolated", c.Isolated},
		{"network", c.Network},
		{"inventory", c.Inventory},
		{"stats", c.Stats},
		{"logs", c.Logs},
	} {
		if flag.set {
			names = append(names, flag.name)
		}
	}
	return strings.Join(names, ",")
}
