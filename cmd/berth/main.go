// Command berth is the Berth server, the embedded Mesos stand-in and the
// cluster admin CLI in one binary.
package main

import (
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
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
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes the command line args and returns the process exit code.
func run(args []string, stdout, stderr io.Writer) int {
	rootCmd.SetArgs(positionalNegatives(rootCmd, args))
	rootCmd.SetOut(stdout)
	rootCmd.SetErr(stderr)
	if err := rootCmd.Execute(); err != nil {
		fmt.Fprintln(stderr, "Error:", describeError(err))
		return 1
	}
	return 0
}

// negativeNumber is an argument such as -1 or -0.5.
var negativeNumber = regexp.MustCompile(`^-[0-9]+(\.[0-9]+)?$`)

// positionalNegatives lets negative numbers through as positional
// arguments (`berth app scale /db -1` reaches the server's validator instead
// of failing as an unknown shorthand flag '1'). pflag reads every "-x" as a
// flag, so from the first negative number on, the remaining positional
// arguments are moved behind a "--", and the flags among them (with their
// values) in front of it. No flag has a digit as its shorthand, so nothing
// else changes meaning.
func positionalNegatives(root *cobra.Command, args []string) []string {
	if !slices.ContainsFunc(args, negativeNumber.MatchString) {
		return args
	}
	cmd, _, err := root.Find(args)
	if err != nil {
		return args
	}
	flags := pflag.NewFlagSet(cmd.Name(), pflag.ContinueOnError)
	flags.AddFlagSet(cmd.Flags())
	flags.AddFlagSet(cmd.InheritedFlags())
	// isFlag reports whether arg is a flag and whether the next argument
	// is its value.
	isFlag := func(arg string) (flag, takesValue bool) {
		if arg == "-" || !strings.HasPrefix(arg, "-") || negativeNumber.MatchString(arg) {
			return false, false
		}
		if strings.Contains(arg, "=") {
			return true, false
		}
		var f *pflag.Flag
		if name, ok := strings.CutPrefix(arg, "--"); ok {
			f = flags.Lookup(name)
		} else if len(arg) == 2 {
			f = flags.ShorthandLookup(arg[1:])
		}
		return true, f != nil && f.NoOptDefVal == ""
	}
	var out, positional []string
	moving := false
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			if !moving {
				return args
			}
			positional = append(positional, args[i+1:]...)
			break
		}
		flag, takesValue := isFlag(a)
		switch {
		case flag:
			out = append(out, a)
			if takesValue && i+1 < len(args) {
				out = append(out, args[i+1])
				i++
			}
		case moving || negativeNumber.MatchString(a):
			moving = true
			positional = append(positional, a)
		default:
			out = append(out, a)
		}
	}
	if !moving {
		return args
	}
	out = append(out, "--")
	return append(out, positional...)
}
