package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestWaitingInsufficientMemory: on `berth dev`, an app that asks for more
// memory than any agent has waits, and says why, as Marathon's /v2/queue
// processedOffersSummary does: `berth app show` and `berth task list`
// name InsufficientMemory, `berth app list` shows it WAITING, and /v2/queue
// counts the declined offers under InsufficientMemory.
func TestWaitingInsufficientMemory(t *testing.T) {
	api, mesosAddr := freePort(t), freePort(t)
	startProc(t, "dev", "dev", "--data-dir", t.TempDir(), "--api-addr", api, "--mesos-listen", mesosAddr, "--agents", "2")
	waitAPI(t, api)
	added := mustCLI(t, api, "app", "add", writeFile(t, "huge.json", `{"id":"/huge","cmd":"sleep 1000","cpus":0.01,"mem":1000000}`))
	depID := strings.TrimSuffix(strings.TrimSpace(added[strings.LastIndex(added, "(deployment ")+len("(deployment "):]), ")")
	// The progress line of --wait (deployment watch) says the instance
	// waits, and why.
	watch := startProc(t, "watch", "--addr", api, "deployment", "watch", depID)
	mustCLI(t, api, "app", "add", writeFile(t, "small.json", `{"id":"/small","cmd":"sleep 1000","cpus":0.01,"mem":8}`), "--wait")

	var show string
	eventually(t, 2*time.Minute, "app show to say why /huge waits", func() bool {
		show = mustCLI(t, api, "app", "show", "/huge")
		return strings.Contains(show, "WAITING") && strings.Contains(show, "offers declined: InsufficientMemory")
	})
	eventually(t, time.Minute, "the progress line to say why /huge waits", func() bool {
		out := watch.out.String()
		return strings.Contains(out, "/huge: 1 pending; waiting: ") && strings.Contains(out, "InsufficientMemory")
	})
	if strings.Contains(show, "UnfulfilledConstraint") {
		t.Errorf("app show names a reason that does not apply:\n%s", show)
	}
	if out := mustCLI(t, api, "task", "list", "--app", "/huge"); !strings.Contains(out, "waiting:") || !strings.Contains(out, "InsufficientMemory") {
		t.Errorf("task list:\n%s", out)
	}
	list := mustCLI(t, api, "app", "list")
	for _, line := range strings.Split(list, "\n") {
		fields := strings.Fields(line)
		if len(fields) < 7 {
			continue
		}
		switch fields[0] {
		case "/huge":
			if fields[6] != "true" || fields[3] != "0/1" {
				t.Errorf("app list row of /huge: %q", line)
			}
		case "/small":
			if fields[6] != "false" || fields[3] != "1/1" {
				t.Errorf("app list row of /small: %q", line)
			}
		}
	}

	resp, err := http.Get("http://" + api + "/v2/queue?embed=lastUnusedOffers")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var queue struct {
		Queue []struct {
			App struct {
				ID string `json:"id"`
			} `json:"app"`
			ProcessedOffersSummary struct {
				ProcessedOffersCount       int `json:"processedOffersCount"`
				UnusedOffersCount          int `json:"unusedOffersCount"`
				RejectSummaryLaunchAttempt []struct {
					Reason   string `json:"reason"`
					Declined int    `json:"declined"`
				} `json:"rejectSummaryLaunchAttempt"`
			} `json:"processedOffersSummary"`
			LastUnusedOffers []struct {
				Reason []string `json:"reason"`
			} `json:"lastUnusedOffers"`
		} `json:"queue"`
	}
	if err := json.Unmarshal(body, &queue); err != nil {
		t.Fatalf("/v2/queue: %v: %s", err, body)
	}
	if len(queue.Queue) != 1 || queue.Queue[0].App.ID != "/huge" {
		t.Fatalf("/v2/queue: %s", body)
	}
	s := queue.Queue[0].ProcessedOffersSummary
	declined := map[string]int{}
	for _, r := range s.RejectSummaryLaunchAttempt {
		declined[r.Reason] = r.Declined
	}
	if s.ProcessedOffersCount == 0 || s.UnusedOffersCount != s.ProcessedOffersCount || declined["InsufficientMemory"] != s.UnusedOffersCount ||
		len(queue.Queue[0].LastUnusedOffers) == 0 || queue.Queue[0].LastUnusedOffers[0].Reason[0] != "InsufficientMemory" {
		t.Errorf("/v2/queue summary: %s", body)
	}
}
