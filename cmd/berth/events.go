package main

import (
	"fmt"
	"strconv"
	"strings"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
	"github.com/berth-dev/berth/rpc"
)

func init() {
	var req v1.StreamEventsRequest
	c := &cobra.Command{
		Use:   "events",
		Short: "Stream status, health and deployment events until interrupted",
		Args:  usageArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := newClients()
			if err != nil {
				return err
			}
			stream, err := cl.events.StreamEvents(c.Context(), connect.NewRequest(&req))
			if err != nil {
				return err
			}
			defer stream.Close()
			out := c.OutOrStdout()
			for stream.Receive() {
				ev := stream.Msg()
				if flagOutput == "json" {
					b, err := protojson.Marshal(ev)
					if err != nil {
						return err
					}
					fmt.Fprintln(out, string(b))
					continue
				}
				fmt.Fprintln(out, describeEvent(ev))
			}
			if err := stream.Err(); err != nil {
				return err
			}
			if err := c.Context().Err(); err != nil {
				return err
			}
			// The stream never ends while the server runs: the
			// server went away (shut down, restarted or lost).
			return fmt.Errorf("the event stream from %s ended: the server closed it (shutting down or restarting?)", flagAddr)
		},
	}
	c.Flags().StringSliceVar(&req.Types, "type", nil, "only events of these types (repeatable): "+strings.Join(rpc.EventTypes, ", "))
	c.Flags().StringVar(&req.AppId, "app", "", "only events of this app")
	rootCmd.AddCommand(clientCommand(c))
}

// describeEvent renders an event as one line.
func describeEvent(ev *v1.Event) string {
	line := ev.GetTimestamp() + " " + ev.GetType()
	add := func(k, v string) {
		if v != "" {
			line += " " + k + "=" + v
		}
	}
	add("app", ev.GetAppId())
	add("instance", ev.GetInstanceId())
	add("task", ev.GetTaskId())
	add("state", ev.GetTaskState())
	if ev.Healthy != nil {
		add("healthy", strconv.FormatBool(ev.GetHealthy()))
	}
	add("host", ev.GetHost())
	if d := ev.GetDeployment(); d != nil {
		add("deployment", d.GetId())
		add("status", statusName(d.GetStatus()))
	}
	if ev.GetMessage() != "" {
		line += fmt.Sprintf(" message=%q", ev.GetMessage())
	}
	return line
}
