package mesoslocal

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/gogo/protobuf/proto"
	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler/calls"
)

// TestTaskEndReportedAfterItsHealthCheck: a killed task's terminal update
// comes only once its health check's process is gone too. The scheduler
// gives the task's resources and persistent volume to the next task as
// soon as it reads that update (Berth launches a backup's copy task on the
// berth just killed), so no process of the task may still run then: a
// Mesos agent reports an executor's end after its container is destroyed.
// Each round's health check is in flight (a long command) when the task is
// killed.
func TestTaskEndReportedAfterItsHealthCheck(t *testing.T) {
	c := startCluster(t, nil)
	s := subscribe(t, c, frameworkInfo("*"))
	for round := range 10 {
		o := s.awaitOffer(fmt.Sprintf("round %d", round), nil)
		id := fmt.Sprintf("checked-%d", round)
		task := smallTask(id, o, "sleep 1000")
		task.HealthCheck = &mesos.HealthCheck{Type: mesos.HealthCheck_COMMAND,
			Command:      &mesos.CommandInfo{Value: proto.String("echo $$ > check.pid; exec sleep 60")},
			DelaySeconds: proto.Float64(0), IntervalSeconds: proto.Float64(0.05), GracePeriodSeconds: proto.Float64(0),
			TimeoutSeconds: proto.Float64(120)}
		launch(s, o, task)
		s.awaitUpdate(id, mesos.TASK_RUNNING)
		sandbox := c.taskSandbox(t, s.fwID, id)
		var check int
		eventually(t, "the health check running", func() bool {
			b, err := os.ReadFile(filepath.Join(sandbox, "check.pid"))
			check, _ = strconv.Atoi(strings.TrimSpace(string(b)))
			return err == nil && processAlive(check)
		})
		s.mustCall(calls.Kill(id, o.AgentID.Value))
		s.awaitUpdate(id, mesos.TASK_KILLED)
		if processAlive(check) {
			t.Fatalf("round %d: the health check (pid %d) of task %s still runs after its TASK_KILLED", round, check, id)
		}
	}
}
