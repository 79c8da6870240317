//go:build !linux

package main

import (
	"context"
	"runtime"
)

// platformChecks reports that the Linux host features are not checked:
// the native provider and the kernel features it needs exist only on
// Linux.
func platformChecks() []hostCheck {
	return []hostCheck{{
		name:  "linux",
		needs: []string{"native"},
		run: func(context.Context, *doctorEnv) checkResult {
			return checkFail("run the server on Linux for the native provider",
				"cgroups, namespaces, overlayfs, /dev/kvm and disk space are not checked on %s", runtime.GOOS)
		},
	}}
}
