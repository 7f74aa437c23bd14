package e2e

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
	"github.com/berth-dev/berth/proto/berth/v1/berthv1connect"
)

// A migration whose leader is killed (kill -9) three times on the way
// (issue 16: "resumable after a leader failover at any step"): during the
// live copy, which runs as a nested container inside the app's task (the
// next leader launches the same container id again, which the agent takes
// as a repeat, and waits for it); during the stop copy, which runs as a
// copy task on the old berth; and during the restore, a task on the new
// berth (the next leader reconciles each task and waits for its end).
// Five servers; the first one killed is restarted, so that three kills
// leave a quorum.
// The move must go on under each new leader and end as one without
// failovers: the instance runs once, on the other agent, at berth epoch 2,
// with the same data; the old berth is destroyed and the staging copy
// deleted; sampled throughout, the instance never has two live tasks; and
// after the app's removal nothing is left.
func TestLeaderKillDuringMigration(t *testing.T) {
	if testing.Short() {
		t.Skip("five servers and a 256 MiB volume moved")
	}
	target := t.TempDir()
	c := startCluster(t, 5, "--migration-target", "file://"+target)
	lead := c.stableLeader()
	api := c.others(lead)[0].api
	agents := agentsByID(t, api)
	eventually(t, time.Minute, "two agents", func() bool {
		agents = agentsByID(t, api)
		return len(agents) == 2
	})

	const app = "/blob"
	mustCLI(t, api, "app", "add", "--wait", writeFile(t, "blob.json", blobApp(app, partitionMoveMB)))
	first := onlyTask(t, api, app, func(tk moveTaskJSON) bool { return tk.Healthy != nil && *tk.Healthy })
	oldVolume := clusterVolumeDir(c, first.agentTaskJSON)
	sum := fileSHA256(t, filepath.Join(oldVolume, "blob"))
	var to string
	for id := range agents {
		if id != first.AgentID {
			to = id
		}
	}

	stopSampling := onlyOneLive(t, c.mesosAddr, c.mesos.owner, first.InstanceID)
	defer stopSampling()
	// The final copy takes the files unchanged since the live copy from
	// it unread (docs/MIGRATION.md) and could be over before a kill:
	// keepTouching makes it read the blob whole again.
	stopTouching := keepTouching(filepath.Join(oldVolume, "blob"))
	defer stopTouching()

	start := time.Now()
	mustCLI(t, api, "instance", "migrate", first.InstanceID, "--to-agent", to)
	alive := c.servers
	moveEnded := func(step string) {
		t.Helper()
		m := movesByInstance(t, api, app)[first.InstanceID]
		if m.Move.Step == stepFailedE2E || m.Move.Step == stepDoneE2E {
			t.Fatalf("the move ended (%s: %s) before its %s step was seen: make the volume bigger", m.Move.Step, m.Move.Error, step)
		}
	}
	taskRunning := func(taskMarker string) bool {
		l, ok := masterTaskState(c.mesosAddr)
		for _, tk := range l.Tasks {
			if ok && strings.HasPrefix(tk.TaskID.Value, first.InstanceID+taskMarker) && tk.State == "TASK_RUNNING" {
				return true
			}
		}
		return false
	}
	killAt := func(step, kind, taskMarker string) *server {
		t.Helper()
		// The leader is found first, over the API rather than with the
		// CLI (a process per question, seconds at load): the kill must
		// follow the step's start at once.
		lead := agreedLeaderFast(t, alive)
		if taskMarker == "" {
			eventually(t, 3*time.Minute, "the move's "+step+" step running", func() bool {
				moveEnded(step)
				m := movesByInstance(t, api, app)[first.InstanceID]
				return m.Move.Step == step && recordState(t, api, app, kind) == "BACKUP_STATE_RUNNING"
			})
		} else {
			// The step's own task RUNNING on the master is the step
			// running. The master is asked every 50 ms and the CLI only
			// every 2 s: at load a CLI round trip takes seconds, and a
			// step such as the restore of the volume can be over within
			// a few (the test once missed it so).
			asked := time.Now()
			waitUntilEvery(t, 3*time.Minute, 50*time.Millisecond, "the move's "+step+" task running", func() bool {
				if taskRunning(taskMarker) {
					return true
				}
				if time.Since(asked) > 2*time.Second {
					moveEnded(step)
					asked = time.Now()
				}
				return false
			})
		}
		if leaderSeenBy(lead) != lead.name {
			lead = agreedLeaderFast(t, alive) // leadership moved meanwhile
		}
		lead.p.kill9()
		var survivors []*server
		for _, s := range alive {
			if s != lead {
				survivors = append(survivors, s)
			}
		}
		alive = survivors
		next := agreedLeaderFast(t, alive)
		for _, s := range alive {
			if s != next {
				api = s.api
			}
		}
		t.Logf("leader %s killed at step %q, %s after the migrate request; %s leads", lead.name, step, time.Since(start).Round(100*time.Millisecond), next.name)
		return lead
	}
	// The live copy: its record RUNNING (committed with the nested
	// container's id before the launch is sent).
	firstKilled := killAt("live copy", "BACKUP_KIND_BACKUP", "")
	firstKilled.p.restart()
	// Back in the count at once: it may be the next leader (a leader
	// looked for among the others only would never be found), and with
	// it killing the third leader leaves a quorum of three.
	alive = append(alive, firstKilled)
	// The stop copy: the copy task running on the old berth.
	killAt(stepCopyE2E, "BACKUP_KIND_BACKUP", "._backup.")
	stopTouching()
	// The restore: the restore task running on the new berth.
	killAt(stepRestoreE2E, "BACKUP_KIND_RESTORE", "._restore.")

	waitMoveDone(t, api, app, first.InstanceID, "after three leader kills")
	now := checkMovedOnce(t, api, app, first, to, sum, func(tk agentTaskJSON) string { return clusterVolumeDir(c, tk) }, oldVolume, target)
	t.Logf("moved to %s in %s, downtime %s ms", now.AgentID, time.Since(start).Round(100*time.Millisecond), now.Move.DowntimeMs)

	mustCLI(t, api, "app", "remove", app, "--wait")
	eventually(t, 2*time.Minute, "every reservation, volume and task process gone", func() bool {
		vols, _ := filepath.Glob(filepath.Join(c.mesosDir, "agents", "*", "volumes", "roles", "berth", "*"))
		return len(reservedResources(t, c.mesosAddr)) == 0 && len(vols) == 0 && len(taskProcessesOf(c.mesos.owner)) == 0
	})
	if v := stopSampling(); len(v) > 0 {
		t.Fatalf("the instance had two live tasks %d time(s): %s", len(v), strings.Join(v, "\n"))
	}
}

// clusterVolumeDir is where the cluster's mesos-local keeps a berth's
// volume.
func clusterVolumeDir(c *testCluster, tk agentTaskJSON) string {
	return mesosVolumeDir(c.mesosDir, tk)
}

// leaderSeenBy is the leader s names over the API ("" if it names none or
// does not answer within 2 s).
func leaderSeenBy(s *server) string {
	return leaderNamedBy(berthv1connect.NewClusterServiceClient(http.DefaultClient, "http://"+s.api))
}

// leaderNamedBy is the leader's name as the server behind c reports it
// ("" if it names none or does not answer within 2 s).
func leaderNamedBy(c berthv1connect.ClusterServiceClient) string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	res, err := c.Leader(ctx, connect.NewRequest(&v1.LeaderRequest{}))
	if err != nil {
		return ""
	}
	return res.Msg.GetId()
}

// agreedLeaderFast is waitLeader over the API: the leader every server
// of among names, asked every 50 ms.
func agreedLeaderFast(t *testing.T, among []*server) *server {
	t.Helper()
	var lead *server
	waitUntilEvery(t, 2*time.Minute, 50*time.Millisecond, "an agreed leader", func() bool {
		var ok bool
		lead, ok = agreedAmong(among, func(s *server) string { return s.name }, leaderSeenBy)
		return ok
	})
	return lead
}
