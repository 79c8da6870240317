package proot

import (
	"fmt"
	"os/exec"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// unsupportedSyscalls fail with ENOSYS under PRoot. PRoot 5.1.0, the
// version Debian and Ubuntu ship, predates them and passes their path
// arguments to the kernel untranslated, so they would act on host paths:
// `ls -l` would show "?" for every file, because coreutils calls statx. On
// ENOSYS the C library and Go fall back to the older calls, which PRoot
// translates: statx to fstatat, faccessat2 to faccessat, fchmodat2 to
// fchmodat, execveat to execve of /proc/self/fd/N, and clone3 to clone.
// openat2 has no fallback, so a program that calls it gets the error.
var unsupportedSyscalls = []uint32{
	unix.SYS_STATX,
	unix.SYS_FACCESSAT2,
	unix.SYS_FCHMODAT2,
	unix.SYS_OPENAT2,
	unix.SYS_EXECVEAT,
	unix.SYS_CLONE3,
}

// auditArch is the seccomp architecture value of native system calls on
// the architectures the filter is built for. Elsewhere no filter is
// installed.
var auditArch = map[string]uint32{
	"amd64": unix.AUDIT_ARCH_X86_64,
	"arm64": unix.AUDIT_ARCH_AARCH64,
}

// Offsets in struct seccomp_data.
const (
	seccompDataNr   = 0
	seccompDataArch = 4
)

// startFiltered starts cmd from a thread that has the filter of
// unsupportedSyscalls installed, so that the child inherits it while the
// server itself is not affected. The thread stays locked to its goroutine
// until that ends, which makes the Go runtime terminate it.
func startFiltered(cmd *exec.Cmd) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := installFilter(); err != nil {
			errc <- fmt.Errorf("install seccomp filter: %w", err)
			return
		}
		errc <- cmd.Start()
	}()
	return <-errc
}

// installFilter sets no_new_privs and loads the filter into the calling
// thread only.
func installFilter() error {
	arch, ok := auditArch[runtime.GOARCH]
	if !ok {
		return nil
	}
	program := filterProgram(arch, unsupportedSyscalls)
	prog := unix.SockFprog{Len: uint16(len(program)), Filter: &program[0]}

	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("set no_new_privs: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_SECCOMP, unix.SECCOMP_MODE_FILTER, uintptr(unsafe.Pointer(&prog)), 0, 0); err != nil {
		return fmt.Errorf("load filter: %w", err)
	}
	return nil
}

// filterProgram returns a classic BPF program that makes the system calls
// nrs of architecture arch return ENOSYS and allows everything else,
// including every call of another architecture.
func filterProgram(arch uint32, nrs []uint32) []unix.SockFilter {
	n := len(nrs)
	program := []unix.SockFilter{
		stmt(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, seccompDataArch),
		// Another architecture jumps over the number checks to allow.
		jump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, arch, 0, uint8(n+1)),
		stmt(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, seccompDataNr),
	}
	for i, nr := range nrs {
		// A match jumps to the last instruction, which returns ENOSYS.
		program = append(program, jump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, nr, uint8(n-i), 0))
	}
	return append(program,
		stmt(unix.BPF_RET|unix.BPF_K, unix.SECCOMP_RET_ALLOW),
		stmt(unix.BPF_RET|unix.BPF_K, unix.SECCOMP_RET_ERRNO|uint32(unix.ENOSYS)),
	)
}

func stmt(code uint16, k uint32) unix.SockFilter {
	return unix.SockFilter{Code: code, K: k}
}

func jump(code uint16, k uint32, jt, jf uint8) unix.SockFilter {
	return unix.SockFilter{Code: code, Jt: jt, Jf: jf, K: k}
}
