package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// usageArgs checks a command's positional arguments against its Use line,
// so that the usage and the check cannot disagree: "show APP_ID" takes
// exactly one, "start APP_ID [N]" one or two. A missing argument is named
// ("app show needs APP_ID"), and so is an extra one.
//
// A last argument "NAME..." takes one or more.
func usageArgs(c *cobra.Command, args []string) error {
	var required, optional []string
	variadic := false
	for _, f := range strings.Fields(c.Use)[1:] {
		variadic = strings.HasSuffix(f, "...")
		if strings.HasPrefix(f, "[") {
			optional = append(optional, strings.Trim(f, "[]"))
		} else {
			required = append(required, f)
		}
	}
	name := strings.TrimPrefix(c.CommandPath(), c.Root().Name()+" ")
	if len(args) < len(required) {
		return fmt.Errorf("%s needs %s (usage: %s)", name, strings.Join(required[len(args):], " and "), c.UseLine())
	}
	if max := len(required) + len(optional); !variadic && len(args) > max {
		return fmt.Errorf("%s takes %s, not %q (usage: %s)", name, argCount(max), args[max:], c.UseLine())
	}
	return nil
}

func argCount(n int) string {
	switch n {
	case 0:
		return "no arguments"
	case 1:
		return "one argument"
	}
	return fmt.Sprintf("at most %d arguments", n)
}
