package main

import (
	"os"
	"strconv"
	"syscall"
)

// envCrashAfterRecords is the crash test's fault point: a broker started
// with it set to N kills itself (SIGKILL, no cleanup) after producing the
// first N records of a periodic-exchange batch (before its manifest).
// Never set in production.
const envCrashAfterRecords = "CERTLESS_FAULT_EXCHANGE_KILL_AFTER_RECORDS"

// crashAfterRecords is the fault point's N, or -1 when unset.
func crashAfterRecords() int {
	n, err := strconv.Atoi(os.Getenv(envCrashAfterRecords))
	if err != nil || n < 0 {
		return -1
	}
	return n
}

func crashNow() { _ = syscall.Kill(os.Getpid(), syscall.SIGKILL); select {} }
