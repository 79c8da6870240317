package version

import "testing"

func TestString(t *testing.T) {
	oldVersion, oldCommit := Version, Commit
	t.Cleanup(func() { Version, Commit = oldVersion, oldCommit })

	Version, Commit = "v1.2.3", ""
	if got := String(); got != "v1.2.3" {
		t.Errorf("without commit: got %q, want %q", got, "v1.2.3")
	}

	Commit = "abc123"
	if got := String(); got != "v1.2.3 (commit abc123)" {
		t.Errorf("with commit: got %q, want %q", got, "v1.2.3 (commit abc123)")
	}
}
