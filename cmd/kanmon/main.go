// Command kanmon is a mail server that cannot be turned against anyone.
// All the work is in internal/cli and the packages it calls.
package main

import (
	"os"

	"kanmon/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], cli.Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}))
}
