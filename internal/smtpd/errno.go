package smtpd

import "syscall"

// syscallEMFILE is "too many open files": accept should back off, not exit.
var syscallEMFILE = syscall.EMFILE
