// Command kanmon is a mail server that cannot be turned against anyone.
// All the work is in internal/cli and the packages it calls.
package main

import (
	"os"

	"kanmon/internal/cli"
)

func main() {
	args := os.Args[1:]
	if cli.IsSendmailName(os.Args[0]) {
		// Installed as /usr/sbin/sendmail: the classic command line.
		args = append([]string{"sendmail"}, args...)
	}
	os.Exit(cli.Main(args, cli.Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}))
}
