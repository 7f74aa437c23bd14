package e2e

import (
	"context"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"sync"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"

	"github.com/berth-dev/berth/appmodel"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// The nemesis suite's PostgreSQL: where the machine has PostgreSQL, a
// postgres user and root, the suite also runs deploy/examples/postgres.json
// (one instance, never scaled by the client) and a writer that commits
// rows throughout; after every round each committed row must be there.

const nemesisPG = "/nemesis/postgres"

// havePostgres reports whether PostgreSQL can run as a task here (see
// requirePostgres).
func havePostgres() bool {
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	_, err := user.Lookup("postgres")
	return len(matches) > 0 && err == nil && os.Geteuid() == 0
}

// pgWriter commits rows to the suite's PostgreSQL and remembers which
// commits were acknowledged.
type pgWriter struct {
	n *nemesis

	mu        sync.Mutex
	committed []int
	failed    int
}

// pgApp is the PostgreSQL example under the suite's id.
func (n *nemesis) pgApp() *v1.App {
	n.t.Helper()
	b, err := os.ReadFile("../deploy/examples/postgres.json")
	if err != nil {
		n.t.Fatal(err)
	}
	app, err := appmodel.Parse(b)
	if err != nil {
		n.t.Fatalf("deploy/examples/postgres.json: %v", err)
	}
	app.Id = nemesisPG
	return app
}

// pgPort is the port of the running PostgreSQL task as any server lists
// it (0 if none is running).
func (n *nemesis) pgPort() uint32 {
	for _, s := range n.servers {
		for _, tk := range n.listTasks(s, nemesisPG) {
			if tk.GetState() == "TASK_RUNNING" && len(tk.GetPorts()) > 0 {
				return tk.GetPorts()[0]
			}
		}
	}
	return 0
}

func pgOpen(ctx context.Context, port uint32) (*pgx.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return pgx.Connect(ctx, fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port))
}

// run inserts one row at a time until ctx ends, reconnecting (to wherever
// the task runs) after any error.
func (w *pgWriter) run(ctx context.Context) {
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	for id := 1; ctx.Err() == nil; {
		if conn == nil {
			port := w.n.pgPort()
			c, err := pgOpen(ctx, port)
			if port == 0 || err != nil {
				linSleep(ctx, time.Second)
				continue
			}
			conn = c
			if _, err := conn.Exec(ctx, "CREATE TABLE IF NOT EXISTS nemesis_rows (id integer PRIMARY KEY)"); err != nil {
				conn.Close(context.Background())
				conn = nil
				continue
			}
		}
		ectx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := conn.Exec(ectx, "INSERT INTO nemesis_rows (id) VALUES ($1) ON CONFLICT DO NOTHING", id)
		cancel()
		w.mu.Lock()
		if err == nil {
			w.committed = append(w.committed, id)
		} else {
			w.failed++
		}
		w.mu.Unlock()
		id++ // an insert of unknown outcome is not retried under its id
		if err != nil {
			conn.Close(context.Background())
			conn = nil
			continue
		}
		linSleep(ctx, 100*time.Millisecond)
	}
}

// awaitRows waits until the writer has committed n rows.
func (w *pgWriter) awaitRows(n int) {
	w.n.t.Helper()
	eventually(w.n.t, 4*time.Minute, fmt.Sprintf("%d rows committed to PostgreSQL", n), func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return len(w.committed) >= n
	})
}

// check fails the test unless every acknowledged row is in the database.
func (w *pgWriter) check(round int) {
	t := w.n.t
	t.Helper()
	w.mu.Lock()
	want := append([]int(nil), w.committed...)
	failed := w.failed
	w.mu.Unlock()
	var have map[int]bool
	eventually(t, 2*time.Minute, fmt.Sprintf("round %d: PostgreSQL to answer", round), func() bool {
		port := w.n.pgPort()
		if port == 0 {
			return false
		}
		conn, err := pgOpen(context.Background(), port)
		if err != nil {
			return false
		}
		defer conn.Close(context.Background())
		rows, err := conn.Query(context.Background(), "SELECT id FROM nemesis_rows")
		if err != nil {
			return false
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
		if err != nil {
			return false
		}
		have = map[int]bool{}
		for _, id := range ids {
			have[int(id)] = true
		}
		return true
	})
	missing := 0
	for _, id := range want {
		if !have[id] {
			missing++
		}
	}
	if missing > 0 {
		t.Errorf("round %d: %d of %d acknowledged PostgreSQL rows are missing", round, missing, len(want))
	}
	t.Logf("round %d: PostgreSQL holds all %d acknowledged rows (%d inserts failed or unknown)", round, len(want), failed)
}

// startPostgres creates the PostgreSQL app and starts its writer; the
// returned func stops the writer.
func (n *nemesis) startPostgres() (*pgWriter, func()) {
	t := n.t
	t.Helper()
	app := n.pgApp()
	eventually(t, 2*time.Minute, "create "+nemesisPG, func() bool {
		return n.write(context.Background(), n.servers[0], func(ctx context.Context, reqID string) error {
			_, err := n.servers[0].apps.CreateApp(ctx, connect.NewRequest(&v1.CreateAppRequest{App: app, RequestId: "create-" + nemesisPG}))
			if connect.CodeOf(err) == connect.CodeAlreadyExists {
				return nil
			}
			return err
		})
	})
	n.mu.Lock()
	n.want[nemesisPG] = 1
	n.mu.Unlock()
	w := &pgWriter{n: n}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		w.run(ctx)
	}()
	return w, func() { cancel(); wg.Wait() }
}
