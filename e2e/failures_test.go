package e2e

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestTaskFailureVisible: on `berth dev`, an app whose command writes to
// stderr and exits 3 shows why it fails everywhere a user looks: `task
// list` (STATE and the message), `app show` (lastTaskFailure, table and
// JSON, with the counters inside the app object), `task logs --stderr`
// (the text the task wrote, read through mesos-local's agent files API) and
// exactly one line in the server log. `task logs --follow` of a running
// task sees what it appends and ends when the task ends.
func TestTaskFailureVisible(t *testing.T) {
	api, mesosAddr := freePort(t), freePort(t)
	dev := startProc(t, "dev", "dev", "--data-dir", t.TempDir(), "--api-addr", api, "--mesos-listen", mesosAddr)
	waitAPI(t, api)

	// A long backoff keeps the failed task as the instance's last task.
	mustCLI(t, api, "app", "add", writeFile(t, "crash.json", `{
		"id": "/crash", "instances": 1, "cpus": 0.01, "mem": 8,
		"cmd": "echo starting up; echo \"FATAL: config file /etc/crash.conf is missing\" >&2; exit 3",
		"backoffSeconds": 3600, "maxLaunchDelaySeconds": 3600
	}`))

	var tasks struct {
		Tasks []struct {
			ID, State, Message, Sandbox, AgentURL, Host string
		}
	}
	eventually(t, 2*time.Minute, "the task to fail", func() bool {
		cliJSON(t, api, &tasks, "task", "list", "--app", "/crash")
		return len(tasks.Tasks) == 1 && tasks.Tasks[0].State == "TASK_FAILED"
	})
	failed := tasks.Tasks[0]
	if failed.Message != "Command exited with status 3" || !strings.HasSuffix(failed.Sandbox, "/executors/"+failed.ID+"/runs/latest") ||
		!strings.HasPrefix(failed.AgentURL, "http://") {
		t.Errorf("task JSON of the failed task = %+v", failed)
	}

	// task list (table).
	out := mustCLI(t, api, "task", "list", "--app", "/crash")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "STATE") || !strings.Contains(lines[0], "PORTS") ||
		!strings.Contains(lines[1], "TASK_FAILED") || !strings.Contains(lines[1], "Command exited with status 3") {
		t.Errorf("task list:\n%s", out)
	}

	// app show (table and JSON) and app list JSON.
	out = mustCLI(t, api, "app", "show", "/crash")
	if !regexp.MustCompile(`LAST FAILURE\s+TASK_FAILED at \S+ on 127.0.0.1`).MatchString(out) ||
		!regexp.MustCompile(`LAST FAILURE MESSAGE\s+Command exited with status 3`).MatchString(out) ||
		!strings.Contains(out, failed.ID) {
		t.Errorf("app show:\n%s", out)
	}
	var shown struct {
		ID              string
		TasksRunning    *int
		TasksStaged     *int
		TasksHealthy    *int
		TasksUnhealthy  *int
		LastTaskFailure *struct{ AppID, TaskID, State, Message, Timestamp, Host, Version string }
	}
	cliJSON(t, api, &shown, "app", "show", "/crash")
	f := shown.LastTaskFailure
	if shown.ID != "/crash" || shown.TasksRunning == nil || *shown.TasksRunning != 0 || shown.TasksStaged == nil ||
		shown.TasksHealthy == nil || shown.TasksUnhealthy == nil || f == nil ||
		f.AppID != "/crash" || f.TaskID != failed.ID || f.State != "TASK_FAILED" || f.Message != "Command exited with status 3" ||
		f.Timestamp == "" || f.Host != "127.0.0.1" || f.Version == "" {
		t.Errorf("app show -o json: %+v, lastTaskFailure %+v", shown, f)
	}
	var listed struct{ Apps []map[string]any }
	cliJSON(t, api, &listed, "app", "list")
	if len(listed.Apps) != 1 || listed.Apps[0]["tasksRunning"] == nil || listed.Apps[0]["lastTaskFailure"] == nil {
		t.Errorf("app list -o json apps = %v", listed.Apps)
	}

	// task logs: the stderr text, and stdout.
	if out := mustCLI(t, api, "task", "logs", failed.ID, "--stderr"); out != "FATAL: config file /etc/crash.conf is missing\n" {
		t.Errorf("task logs --stderr = %q", out)
	}
	if out := mustCLI(t, api, "task", "logs", failed.ID); out != "starting up\n" {
		t.Errorf("task logs = %q", out)
	}
	if r := cli(t, api, "task", "logs", "crash.instance-nope._app.1"); r.err == nil || !strings.Contains(r.stderr, "crash.instance-nope._app.1") {
		t.Errorf("task logs of an unknown task: %v %q", r.err, r.stderr)
	}

	// task logs --follow sees appended output, and ends with the task.
	mustCLI(t, api, "app", "add", writeFile(t, "ticker.json", `{
		"id": "/ticker", "instances": 1, "cpus": 0.01, "mem": 8,
		"cmd": "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done"
	}`), "--wait")
	cliJSON(t, api, &tasks, "task", "list", "--app", "/ticker")
	if len(tasks.Tasks) != 1 || tasks.Tasks[0].State != "TASK_RUNNING" {
		t.Fatalf("ticker tasks = %+v", tasks.Tasks)
	}
	ticker := tasks.Tasks[0].ID
	follow := startProc(t, "follow", "--addr", api, "task", "logs", ticker, "--follow", "--lines", "1")
	tickRE := regexp.MustCompile(`tick (\d+)\n`)
	first := -1
	eventually(t, time.Minute, "the followed output to grow by three lines", func() bool {
		ms := tickRE.FindAllStringSubmatch(follow.out.String(), -1)
		if len(ms) == 0 {
			return false
		}
		first, _ = strconv.Atoi(ms[0][1])
		last, _ := strconv.Atoi(ms[len(ms)-1][1])
		return last >= first+3
	})
	if ms := tickRE.FindAllStringSubmatch(follow.out.String(), -1); len(ms) > 0 {
		for i, m := range ms {
			if n, _ := strconv.Atoi(m[1]); n != first+i {
				t.Fatalf("followed output skips or repeats lines:\n%s", follow.out.String())
			}
		}
	}
	select {
	case <-follow.done:
		t.Fatalf("task logs --follow exited while the task runs:\n%s", follow.out.String())
	default:
	}
	mustCLI(t, api, "task", "kill", ticker)
	select {
	case <-follow.done:
		if code := follow.cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("task logs --follow exited %d after the task ended:\n%s", code, follow.out.String())
		}
	case <-time.After(2 * time.Minute):
		t.Fatalf("task logs --follow did not end after the task was killed")
	}

	// A deployment that fails because its tasks keep failing says where
	// to look. (The health check keeps the deployment waiting: a task
	// that is running but not checked yet would count as deployed.)
	r := cli(t, api, "app", "add", writeFile(t, "flap.json", `{
		"id": "/flap", "instances": 1, "cpus": 0.01, "mem": 8, "backoffSeconds": 0,
		"healthChecks": [{"protocol": "TCP", "portIndex": 0, "gracePeriodSeconds": 300}],
		"cmd": "echo \"cannot open /data/flap.db\" >&2; exit 3"
	}`), "--wait")
	if r.err == nil || !strings.Contains(r.stderr, "failed") ||
		!regexp.MustCompile(`last task failure of /flap: TASK_FAILED Command exited with status 3 \(task flap\.instance-\S+ on 127.0.0.1\)\n  its output: berth task logs flap\.instance-\S+ --stderr`).MatchString(r.stdout) {
		t.Errorf("failed deployment of /flap: %v\nstdout:\n%s\nstderr:\n%s", r.err, r.stdout, r.stderr)
	}
	flapTask := regexp.MustCompile(`berth task logs (\S+) --stderr`).FindStringSubmatch(r.stdout)
	if flapTask != nil {
		if out := mustCLI(t, api, "task", "logs", flapTask[1], "--stderr"); out != "cannot open /data/flap.db\n" {
			t.Errorf("task logs of the hinted task = %q", out)
		}
	}

	// The server log: one line per failure, with every field.
	flapLines := map[string]int{}
	var failureLines []string
	for _, l := range strings.Split(dev.out.String(), "\n") {
		if !strings.Contains(l, `msg="task failed"`) {
			continue
		}
		if strings.Contains(l, "app=/crash ") {
			failureLines = append(failureLines, l)
		}
		if m := regexp.MustCompile(`app=/flap .* task=(\S+)`).FindStringSubmatch(l); m != nil {
			flapLines[m[1]]++
		}
	}
	if len(flapLines) < 2 {
		t.Errorf("server log has failure lines for %d /flap tasks, want one per failure (at least 2): %v", len(flapLines), flapLines)
	}
	for task, n := range flapLines {
		if n != 1 {
			t.Errorf("task %s failed once but has %d failure lines", task, n)
		}
	}
	if len(failureLines) != 1 {
		t.Fatalf("%d task failure lines in the server log, want 1:\n%s", len(failureLines), strings.Join(failureLines, "\n"))
	}
	l := failureLines[0]
	for _, want := range []string{"app=/crash", "instance=crash.instance-", "task=" + failed.ID, "state=TASK_FAILED",
		" reason=", `message="Command exited with status 3"`, "sandbox=" + failed.Sandbox} {
		if !strings.Contains(l, want) {
			t.Errorf("server log line %q lacks %q", l, want)
		}
	}
}
