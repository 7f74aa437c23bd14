package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

func init() {
	rootCmd.Version = version
	rootCmd.SetVersionTemplate("{{.Name}} " + versionLine(readBuildInfo()) + "\n")
	rootCmd.AddCommand(&cobra.Command{
		Use:   "version",
		Short: "Print the version, the commit it was built from and the Go version",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			_, err := fmt.Fprintln(c.OutOrStdout(), "berth "+versionLine(readBuildInfo()))
			return err
		},
	})
}

func readBuildInfo() *debug.BuildInfo {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return nil
	}
	return bi
}

// versionLine is e.g. "0.1.0-dev (commit 0123abcd…-dirty, go1.26.0)": the
// commit is the VCS revision the Go toolchain stamped into the binary
// (`go build` in a checkout; `go run` stamps none, then it is "unknown"),
// with "-dirty" when the checkout had uncommitted changes.
func versionLine(bi *debug.BuildInfo) string {
	commit, dirty := "unknown", false
	goVersion := runtime.Version()
	if bi != nil {
		if bi.GoVersion != "" {
			goVersion = bi.GoVersion
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				commit = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
	}
	if dirty {
		commit += "-dirty"
	}
	return fmt.Sprintf("%s (commit %s, %s)", version, commit, goVersion)
}
