package e2e

import (
	"strings"
	"testing"
	"time"
)

// failureLogLines returns the "task failed" lines of a process's log that
// name the task.
func failureLogLines(p *proc, taskID string) []string {
	var out []string
	for _, l := range strings.Split(p.out.String(), "\n") {
		if strings.Contains(l, `msg="task failed"`) && strings.Contains(l, "task="+taskID+" ") {
			out = append(out, l)
		}
	}
	return out
}

// TestTaskFailureSurvivesFailover: in a three-server cluster, a resident
// task's failure is logged once, by the leader; every server shows it as
// the app's lastTaskFailure and reads the task's stderr from the agent;
// after the leader is killed, the new leader still shows the same failure,
// logs it no second time, and the stderr is still readable.
func TestTaskFailureSurvivesFailover(t *testing.T) {
	c := startCluster(t, 3)
	lead := c.waitLeader(c.servers)
	follower := c.others(lead)[0]

	mustCLI(t, follower.api, "app", "add", writeFile(t, "pgfail.json", `{
		"id": "/pgfail", "instances": 1, "cpus": 0.1, "mem": 32,
		"cmd": "echo \"FATAL: data directory data/pg has invalid permissions\" >&2; exit 3",
		"backoffSeconds": 3600, "maxLaunchDelaySeconds": 3600,
		"container": {"type": "MESOS", "volumes": [{"containerPath": "data", "mode": "RW", "persistent": {"size": 1}}]}
	}`))
	type failure struct{ TaskID, State, Message, Timestamp, Host, Version string }
	var app struct{ LastTaskFailure *failure }
	for _, s := range c.servers {
		eventually(t, 2*time.Minute, "the last task failure on "+s.name, func() bool {
			cliJSON(t, s.api, &app, "app", "show", "/pgfail")
			return app.LastTaskFailure != nil
		})
	}
	before := *app.LastTaskFailure
	if before.State != "TASK_FAILED" || before.Message != "Command exited with status 3" {
		t.Fatalf("last task failure = %+v", before)
	}
	const stderr = "FATAL: data directory data/pg has invalid permissions\n"
	for _, s := range c.servers {
		if out := mustCLI(t, s.api, "task", "logs", before.TaskID, "--stderr"); out != stderr {
			t.Errorf("task logs --stderr via %s = %q", s.name, out)
		}
	}
	for _, s := range c.servers {
		want := 0
		if s == lead {
			want = 1
		}
		if n := len(failureLogLines(s.p, before.TaskID)); n != want {
			t.Errorf("%s logged the failure %d times, want %d", s.name, n, want)
		}
	}

	subsBefore, _ := c.subscriptions()
	reconciled := map[*server]int{}
	for _, s := range c.servers {
		reconciled[s] = strings.Count(s.p.out.String(), "reconciliation complete")
	}
	lead.p.kill9()
	survivors := c.others(lead)
	newLead := c.waitLeader(survivors)
	eventually(t, 2*time.Minute, "the new leader to subscribe and reconcile", func() bool {
		n, _ := c.subscriptions()
		return n > subsBefore && strings.Count(newLead.p.out.String(), "reconciliation complete") > reconciled[newLead]
	})
	var after struct{ LastTaskFailure *failure }
	cliJSON(t, newLead.api, &after, "app", "show", "/pgfail")
	if after.LastTaskFailure == nil || *after.LastTaskFailure != before {
		t.Fatalf("last task failure after failover = %+v, want %+v", after.LastTaskFailure, before)
	}
	if out := mustCLI(t, newLead.api, "task", "logs", before.TaskID, "--stderr"); out != stderr {
		t.Errorf("task logs --stderr via the new leader = %q", out)
	}
	if lines := failureLogLines(newLead.p, before.TaskID); len(lines) != 0 {
		t.Errorf("the new leader logged the old failure again:\n%s", strings.Join(lines, "\n"))
	}
	out := mustCLI(t, newLead.api, "task", "list", "--app", "/pgfail")
	if !strings.Contains(out, "TASK_FAILED") || !strings.Contains(out, "Command exited with status 3") {
		t.Errorf("task list after failover:\n%s", out)
	}
	t.Logf("failure %s survived the failover from %s to %s", before.TaskID, lead.name, newLead.name)
}
