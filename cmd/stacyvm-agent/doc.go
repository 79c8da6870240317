// Command stacyvm-agent runs inside a sandbox as PID 1 and serves the agent
// protocol of package internal/agent on a unix socket: exec with streamed
// output, and the sandbox file API. It reaps orphaned processes, and it is a
// child subreaper so that descendants which called setsid stay its children.
// On SIGTERM or SIGINT it forwards the signal to its running commands and
// waits for them up to --shutdown-grace. Then it kills what is left and
// exits 0.
//
// Usage:
//
//	stacyvm-agent [--listen unix:PATH] [--root DIR] [--shutdown-grace DURATION] [--log-level LEVEL]
//	stacyvm-agent --version
//
// Inside a sandbox the defaults apply: the provider mounts its per-sandbox
// host directory at /run/stacyvm, the agent listens on
// /run/stacyvm/agent.sock, and file paths and working directories are the
// sandbox's own. With --root set to another directory the agent runs on the
// host without a sandbox and resolves every path inside that directory.
// Tests use this mode.
//
// The agent runs only on Linux. On other systems this command builds as a
// stub that exits with status 1, so that the repository builds everywhere.
package main
