package e2e

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
	"github.com/berth-dev/berth/proto/berth/v1/berthv1connect"
)

// voters returns the ids of the Raft voters as server s reports them, or nil
// if it cannot answer.
func voters(t *testing.T, s *server) []string {
	r := cli(t, s.api, "-o", "json", "cluster", "raft", "list-peers")
	if r.err != nil {
		return nil
	}
	var out struct {
		Peers []struct{ ID, Suffrage string }
	}
	if err := jsonUnmarshal(r.stdout, &out); err != nil {
		return nil
	}
	var ids []string
	for _, p := range out.Peers {
		if p.Suffrage == "voter" {
			ids = append(ids, p.ID)
		}
	}
	return ids
}

// TestRollingRestartKeepsVoters restarts each of three servers in turn
// (SIGTERM, as systemctl restart does) under continuous writes. A stopping
// server once left the Raft configuration, so two restarts in a row left a
// single voter acknowledging writes on its disk alone. Now the cluster keeps
// three voters throughout and loses no acknowledged write.
func TestRollingRestartKeepsVoters(t *testing.T) {
	c := startCluster(t, 3)
	c.waitLeader(c.servers)

	var (
		mu    sync.Mutex
		acked []string
	)
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	hc := &http.Client{Transport: &http.Transport{}}
	for w, s := range c.servers {
		apps := berthv1connect.NewAppServiceClient(hc, "http://"+s.api)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				id := fmt.Sprintf("/roll-%d-%d", w, i)
				cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				_, err := apps.CreateApp(cctx, connect.NewRequest(&v1.CreateAppRequest{
					App: &v1.App{Id: id, Cmd: ptr("sleep 1000"), Instances: ptr(int32(0))}, RequestId: id}))
				cancel()
				if err == nil {
					mu.Lock()
					acked = append(acked, id)
					mu.Unlock()
					continue
				}
				select { // this client's server is down: pace the retries
				case <-ctx.Done():
				case <-time.After(200 * time.Millisecond):
				}
			}
		}()
	}
	defer func() { stop(); wg.Wait() }()
	ackedCount := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(acked)
	}
	progress := func(n int, what string) {
		base := ackedCount()
		eventually(t, 2*time.Minute, what, func() bool { return ackedCount() >= base+n })
	}

	progress(20, "writes before the first restart")
	for _, s := range c.servers {
		s.p.stop(syscall.SIGTERM, 30*time.Second)
		rest := c.others(s)
		c.waitLeader(rest)
		progress(10, "writes while "+s.name+" is down")
		for _, o := range rest {
			if v := voters(t, o); len(v) != 3 {
				t.Fatalf("with %s stopped, %s reports voters %v; want all three", s.name, o.name, v)
			}
		}
		s.p.restart()
		waitAPI(t, s.api)
		c.waitLeader(c.servers)
		progress(10, "writes after "+s.name+" restarted")
	}
	stop()
	wg.Wait()

	for _, s := range c.servers {
		if v := voters(t, s); len(v) != 3 {
			t.Fatalf("after the rolling restart %s reports voters %v", s.name, v)
		}
	}
	// Every acknowledged write is there, read through the leader.
	list, err := berthv1connect.NewAppServiceClient(hc, "http://"+c.servers[0].api).ListApps(context.Background(),
		connect.NewRequest(&v1.ListAppsRequest{Consistency: v1.ReadConsistency_READ_CONSISTENCY_CONSISTENT}))
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, a := range list.Msg.Apps {
		have[a.GetId()] = true
	}
	for _, id := range acked {
		if !have[id] {
			t.Errorf("acknowledged app %s lost", id)
		}
	}
	t.Logf("%d acknowledged writes across three restarts", len(acked))
}

func ptr[T any](v T) *T { return &v }
