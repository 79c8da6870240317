package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/stacyvm/stacyvm/pkg/client"
)

func (a *app) newSpawnCommand() *cobra.Command {
	var (
		req      client.SpawnRequest
		metadata []string
		env      []string
		output   string
	)
	cmd := &cobra.Command{
		Use:   "spawn",
		Short: "Create a sandbox and print its ID",
		Long: "Create a sandbox and print its ID once it is running.\n" +
			"Flags left out take the server's defaults.",
		Example: "  id=$(stacyvm spawn --ttl 10m --meta job=build)\n" +
			"  stacyvm spawn --provider docker --image python:3.12 --memory 1024 --cpus 2 -o json",
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output, outputJSON); err != nil {
				return err
			}
			var err error
			if req.Metadata, err = parsePairs("--meta", metadata); err != nil {
				return err
			}
			if req.Env, err = parsePairs("--env", env); err != nil {
				return err
			}
			if req.TTL < 0 {
				return usageError(fmt.Errorf("invalid --ttl %s: use a positive duration such as 30m", req.TTL))
			}
			if err := checkResourceFlags(req.MemoryMB, req.VCPUs); err != nil {
				return err
			}

			c, err := a.client(cmd)
			if err != nil {
				return err
			}
			sb, err := c.Spawn(cmd.Context(), req)
			if err != nil {
				return err
			}

			if output == outputJSON {
				return printJSON(a.stdout, sb)
			}
			_, err = fmt.Fprintln(a.stdout, sb.ID)
			return err
		},
	}

	f := cmd.Flags()
	f.StringVar(&req.Image, "image", "", "image reference (default: the provider's default image)")
	f.StringVar(&req.Provider, "provider", "", "provider name, such as docker or mock (default: the server's default)")
	f.StringVar(&req.Runtime, "runtime", "", "runtime variant of the provider, such as runsc")
	f.IntVar(&req.MemoryMB, "memory", 0, "memory limit in MiB")
	f.IntVar(&req.VCPUs, "cpus", 0, "CPU limit in whole CPUs")
	f.DurationVar(&req.TTL, "ttl", 0, "lifetime before the server destroys the sandbox, such as 30m or 2h")
	f.StringVar(&req.OwnerID, "owner", "", "owner ID, for filtering and per-owner limits")
	f.BoolVar(&req.Network, "network", false, "give the sandbox network access")
	f.StringArrayVar(&metadata, "meta", nil, "metadata label KEY=VALUE (repeatable)")
	f.StringArrayVarP(&env, "env", "e", nil, "environment variable KEY=VALUE for every command (repeatable)")
	addOutputFlag(cmd, &output, outputJSON)
	return cmd
}

// parsePairs parses KEY=VALUE arguments of flag into a map. It returns nil
// for no pairs.
func parsePairs(flag string, pairs []string) (map[string]string, error) {
	if len(pairs) == 0 {
		return nil, nil
	}
	m := make(map[string]string, len(pairs))
	for _, p := range pairs {
		key, value, ok := strings.Cut(p, "=")
		if !ok || key == "" {
			return nil, usageError(fmt.Errorf("invalid %s %q: use KEY=VALUE", flag, p))
		}
		m[key] = value
	}
	return m, nil
}

// checkResourceFlags rejects a negative --memory or --cpus, which the server
// would reject too. 0, the flags' default, means the server's or the
// template's value.
func checkResourceFlags(memoryMB, vcpus int) error {
	if memoryMB < 0 {
		return usageError(fmt.Errorf("invalid --memory %d: use a positive size in MiB, or leave the flag out for the default", memoryMB))
	}
	if vcpus < 0 {
		return usageError(fmt.Errorf("invalid --cpus %d: use a positive number of CPUs, or leave the flag out for the default", vcpus))
	}
	return nil
}
