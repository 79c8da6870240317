package native

import (
	"fmt"
	"runtime"
	"slices"
	"unsafe"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"golang.org/x/sys/unix"
)

// deniedSyscalls fail with EPERM inside a sandbox. They change the mount
// table or namespaces, load kernel code, reach kernel facilities shared
// with the host (keyrings, BPF, performance counters, swap, the clock), or
// inspect other processes. Most of them already need a capability that
// sandboxes lack; the filter is a second wall.
var deniedSyscalls = []string{
	// Mounts, including the file descriptor based mount API.
	"mount", "umount2", "pivot_root", "move_mount", "open_tree", "fsopen",
	"fsconfig", "fsmount", "fspick", "mount_setattr",
	// Namespaces. clone with a namespace flag is denied below.
	"unshare", "setns",
	// Kernel modules and kexec.
	"init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load",
	// Kernel facilities shared with the host.
	"bpf", "perf_event_open", "add_key", "request_key", "keyctl", "swapon",
	"swapoff", "reboot", "acct", "quotactl", "lookup_dcookie", "syslog",
	"settimeofday", "clock_settime", "clock_adjtime", "userfaultfd",
	"iopl", "ioperm", "uselib", "vhangup",
	// Other processes and file handles.
	"ptrace", "process_vm_readv", "process_vm_writev", "kcmp",
	"open_by_handle_at", "name_to_handle_at",
}

// namespaceCloneFlags are the clone flags that create namespaces; clone
// with any of them fails with EPERM.
var namespaceCloneFlags = []uint64{
	unix.CLONE_NEWNS, unix.CLONE_NEWUTS, unix.CLONE_NEWIPC, unix.CLONE_NEWUSER,
	unix.CLONE_NEWPID, unix.CLONE_NEWNET, unix.CLONE_NEWCGROUP,
}

// sandboxPolicy returns the seccomp policy of sandboxed processes: allow
// everything except deniedSyscalls and namespace-creating clone calls.
func sandboxPolicy() seccomp.Policy {
	var cloneConditions []seccomp.NameWithConditions
	for _, flag := range namespaceCloneFlags {
		cloneConditions = append(cloneConditions, seccomp.NameWithConditions{
			Name:       "clone",
			Conditions: seccomp.ArgumentConditions{{Argument: 0, Operation: seccomp.BitsSet, Value: flag}},
		})
	}
	return seccomp.Policy{
		DefaultAction: seccomp.ActionAllow,
		Syscalls: []seccomp.SyscallGroup{
			{Action: seccomp.ActionErrno, Names: deniedSyscalls},
			{Action: seccomp.ActionErrno, NamesWithCondtions: cloneConditions},
		},
	}
}

// installSeccomp sets no_new_privs and loads the sandbox filters into the
// calling thread, which must be the one that then execs the agent. The
// filters are inherited by every process of the sandbox and cannot be
// removed.
func installSeccomp() error {
	if err := loadArchFilter(); err != nil {
		return err
	}
	return seccomp.LoadFilter(seccomp.Filter{NoNewPrivs: true, Policy: sandboxPolicy()})
}

// auditArch is the seccomp architecture value of native system calls.
var auditArch = map[string]uint32{
	"amd64":   unix.AUDIT_ARCH_X86_64,
	"arm64":   unix.AUDIT_ARCH_AARCH64,
	"ppc64le": unix.AUDIT_ARCH_PPC64LE,
	"s390x":   unix.AUDIT_ARCH_S390X,
	"riscv64": unix.AUDIT_ARCH_RISCV64,
}

// loadArchFilter loads a filter that returns EPERM for system calls made
// through another architecture's entry point (such as int 0x80 on x86-64),
// because the policy above names native system call numbers only. It
// returns ENOSYS for clone3, whose flags a filter cannot read, so that libc
// falls back to clone, which the policy checks.
func loadArchFilter() error {
	arch, ok := auditArch[runtime.GOARCH]
	if !ok {
		return fmt.Errorf("seccomp: architecture %s is not supported", runtime.GOARCH)
	}
	const (
		archOffset = 4 // offsetof(struct seccomp_data, arch)
		nrOffset   = 0 // offsetof(struct seccomp_data, nr)
	)
	filter := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: archOffset},
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 1, K: arch},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)},
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: nrOffset},
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jf: 1, K: unix.SYS_CLONE3},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},
	}
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("seccomp: set no_new_privs: %w", err)
	}
	_, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, 0, uintptr(unsafe.Pointer(&prog)))
	runtime.KeepAlive(filter)
	if errno != 0 {
		return fmt.Errorf("seccomp: load architecture filter: %w", errno)
	}
	return nil
}

// keptCapabilities are the capabilities that sandbox processes keep. They
// let root inside a sandbox own and change its files, switch users and
// signal its own processes. Every capability that reaches beyond the
// sandbox, such as CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_SYS_MODULE,
// CAP_SYS_PTRACE, CAP_MKNOD and CAP_DAC_READ_SEARCH, is dropped.
var keptCapabilities = []uintptr{
	unix.CAP_CHOWN, unix.CAP_DAC_OVERRIDE, unix.CAP_FOWNER, unix.CAP_FSETID,
	unix.CAP_KILL, unix.CAP_SETGID, unix.CAP_SETUID, unix.CAP_SETPCAP,
	unix.CAP_NET_BIND_SERVICE, unix.CAP_NET_RAW, unix.CAP_SYS_CHROOT,
	unix.CAP_AUDIT_WRITE, unix.CAP_SETFCAP,
}

// dropCapabilities removes every capability not in keptCapabilities from
// the calling thread's bounding set and inheritable set. A process run by
// root gets its bounding set as its permitted set at execve, so the agent
// and every command start with keptCapabilities at most.
func dropCapabilities() error {
	// Capabilities up to 63 are tried, so that ones newer than this
	// package's constants are dropped too; unknown ones give EINVAL.
	for c := uintptr(0); c < 64; c++ {
		if slices.Contains(keptCapabilities, c) {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, c, 0, 0, 0); err != nil && err != unix.EINVAL {
			return fmt.Errorf("drop capability %d from the bounding set: %w", c, err)
		}
	}

	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capget: %w", err)
	}

	var keep [2]uint32
	for _, c := range keptCapabilities {
		keep[c/32] |= 1 << (c % 32)
	}
	for i := range data {
		data[i].Inheritable &= keep[i]
	}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capset: %w", err)
	}

	// Ambient capabilities are cleared too, so none reaches a command
	// through execve.
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil && err != unix.EINVAL {
		return fmt.Errorf("clear ambient capabilities: %w", err)
	}
	return nil
}
