// Package version reports the build's version. Release builds set the
// variables with the linker:
//
//	go build -ldflags "-X github.com/stacyvm/stacyvm/internal/version.Version=v0.1.0 \
//	    -X github.com/stacyvm/stacyvm/internal/version.Commit=$(git rev-parse --short HEAD)"
package version

import "runtime/debug"

// Version is the release version, such as "v0.1.0", or "dev" for a build
// without -ldflags.
var Version = "dev"

// Commit is the source revision. When the linker does not set it, it is
// taken from the VCS stamp that go build embeds, and stays empty for builds
// made with -buildvcs=false.
var Commit = ""

func init() {
	if Commit != "" {
		return
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return
	}
	for _, s := range info.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			Commit = s.Value[:12]
		}
	}
}

// String returns the version with the commit when known, such as
// "v0.1.0 (commit 1a2b3c4d5e6f)".
func String() string {
	if Commit == "" {
		return Version
	}
	return Version + " (commit " + Commit + ")"
}
