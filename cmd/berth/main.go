// Command berth is the Berth server, the embedded Mesos stand-in and the
// cluster admin CLI in one binary.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// rootCmd is the top-level command. Each subcommand lives in its own file and
// registers itself from an init function.
var rootCmd = &cobra.Command{
	Use:           "berth",
	Short:         "Berth runs stateful services on Apache Mesos",
	SilenceUsage:  true,
	SilenceErrors: true,
}

func main() {
	if err := rootCmd.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "Error:", describeError(err))
		os.Exit(1)
	}
}
