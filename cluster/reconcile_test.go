package cluster

import (
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func voter(id string) raft.Server {
	return raft.Server{ID: raft.ServerID(id), Address: raft.ServerAddress(id + ":8300"), Suffrage: raft.Voter}
}

func nonvoter(id string) raft.Server {
	s := voter(id)
	s.Suffrage = raft.Nonvoter
	return s
}

func member(id string, status MemberStatus, since time.Time) Member {
	return Member{Name: id, RaftAddr: id + ":8300", Status: status, StatusSince: since}
}

func TestPlanReconcile(t *testing.T) {
	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	long := now.Add(-time.Hour)
	recent := now.Add(-time.Second)
	alive := func(ids ...string) []Member {
		var ms []Member
		for _, id := range ids {
			ms = append(ms, member(id, StatusAlive, long))
		}
		return ms
	}
	cases := []struct {
		name        string
		servers     []raft.Server
		members     []Member
		missing     map[string]time.Time
		deadCleanup time.Duration
		minQuorum   int
		leaderIndex uint64
		want        []string // "kind id"
	}{
		{
			name:    "steady state: nothing to do",
			servers: []raft.Server{voter("a"), voter("b"), voter("c")},
			members: alive("a", "b", "c"),
		},
		{
			name:    "new server joins a healthy cluster as voter",
			servers: []raft.Server{voter("a"), voter("b"), voter("c")},
			members: alive("a", "b", "c", "d"),
			want:    []string{"add-voter d"},
		},
		{
			name:    "second server joins a single server: non-voter first",
			servers: []raft.Server{voter("a")},
			members: alive("a", "b"),
			want:    []string{"add-nonvoter b"},
		},
		{
			name:        "caught-up non-voter is promoted",
			servers:     []raft.Server{voter("a"), nonvoter("b")},
			members:     []Member{member("a", StatusAlive, long), {Name: "b", RaftAddr: "b:8300", Status: StatusAlive, applied: 900}},
			leaderIndex: 1000,
			want:        []string{"add-voter b"},
		},
		{
			name:        "lagging non-voter waits",
			servers:     []raft.Server{voter("a"), nonvoter("b")},
			members:     []Member{member("a", StatusAlive, long), {Name: "b", RaftAddr: "b:8300", Status: StatusAlive, applied: 10}},
			leaderIndex: 1000,
		},
		{
			name:    "server that left is removed",
			servers: []raft.Server{voter("a"), voter("b"), voter("c")},
			members: append(alive("a", "b"), member("c", StatusLeft, recent)),
			want:    []string{"remove c"},
		},
		{
			name:        "recently failed server is kept",
			servers:     []raft.Server{voter("a"), voter("b"), voter("c")},
			members:     append(alive("a", "b"), member("c", StatusFailed, recent)),
			deadCleanup: time.Minute,
		},
		{
			name:        "server failed longer than the cleanup time is removed",
			servers:     []raft.Server{voter("a"), voter("b"), voter("c")},
			members:     append(alive("a", "b"), member("c", StatusFailed, long)),
			deadCleanup: time.Minute,
			want:        []string{"remove c"},
		},
		{
			name:        "cleanup disabled",
			servers:     []raft.Server{voter("a"), voter("b"), voter("c")},
			members:     append(alive("a", "b"), member("c", StatusFailed, long)),
			deadCleanup: -1,
		},
		{
			name:        "five servers, two failed: both removed one after the other",
			servers:     []raft.Server{voter("a"), voter("b"), voter("c"), voter("d"), voter("e")},
			members:     append(alive("a", "b", "c"), member("d", StatusFailed, long), member("e", StatusFailed, long)),
			deadCleanup: time.Minute,
			want:        []string{"remove d", "remove e"},
		},
		{
			name:    "five servers, three failed: removing any would leave no healthy quorum",
			servers: []raft.Server{voter("a"), voter("b"), voter("c"), voter("d"), voter("e")},
			members: append(alive("a", "b"), member("c", StatusFailed, long), member("d", StatusFailed, long),
				member("e", StatusFailed, long)),
			deadCleanup: time.Minute,
		},
		{
			name:        "two servers, one failed: planned, though raft can only commit it if the leader still has quorum",
			servers:     []raft.Server{voter("a"), voter("b")},
			members:     append(alive("a"), member("b", StatusFailed, long)),
			deadCleanup: time.Minute,
			want:        []string{"remove b"},
		},
		{
			name:        "server absent from gossip is removed after the cleanup time",
			servers:     []raft.Server{voter("a"), voter("b"), voter("c")},
			members:     alive("a", "b"),
			missing:     map[string]time.Time{"c": long},
			deadCleanup: time.Minute,
			want:        []string{"remove c"},
		},
		{
			name:        "server newly absent from gossip is kept",
			servers:     []raft.Server{voter("a"), voter("b"), voter("c")},
			members:     alive("a", "b"),
			deadCleanup: time.Minute,
		},
		{
			name:    "restarted server with a new raft address is updated",
			servers: []raft.Server{voter("a"), voter("b"), {ID: "c", Address: "c:9999", Suffrage: raft.Voter}},
			members: alive("a", "b", "c"),
			want:    []string{"add-voter c"},
		},
		{
			name:    "renamed server on the address of a failed one replaces it",
			servers: []raft.Server{voter("a"), voter("b"), {ID: "old", Address: "c:8300", Suffrage: raft.Voter}},
			members: append(alive("a", "b", "c"), member("old", StatusFailed, recent)),
			want:    []string{"remove old", "add-voter c"},
		},
		{
			name:        "dead voter replaced: removal first, then the newcomer is a voter",
			servers:     []raft.Server{voter("a"), voter("b"), voter("c")},
			members:     append(alive("a", "b", "d"), member("c", StatusFailed, long)),
			deadCleanup: time.Minute,
			want:        []string{"remove c", "add-voter d"},
		},
		{
			name:      "min quorum: a server that left stays a voter while removing it would go below it",
			servers:   []raft.Server{voter("a"), voter("b"), voter("c")},
			members:   append(alive("a", "b"), member("c", StatusLeft, recent)),
			minQuorum: 3,
		},
		{
			name:        "min quorum: a long-dead server stays while removing it would go below it",
			servers:     []raft.Server{voter("a"), voter("b"), voter("c")},
			members:     append(alive("a", "b"), member("c", StatusFailed, long)),
			deadCleanup: time.Minute,
			minQuorum:   3,
		},
		{
			name:        "min quorum: above it, a dead server of five is removed",
			servers:     []raft.Server{voter("a"), voter("b"), voter("c"), voter("d"), voter("e")},
			members:     append(alive("a", "b", "c", "d"), member("e", StatusFailed, long)),
			deadCleanup: time.Minute,
			minQuorum:   3,
			want:        []string{"remove e"},
		},
		{
			name:        "min quorum: two dead of five, only one removed",
			servers:     []raft.Server{voter("a"), voter("b"), voter("c"), voter("d"), voter("e")},
			members:     append(alive("a", "b", "c"), member("d", StatusFailed, long), member("e", StatusFailed, long)),
			deadCleanup: time.Minute,
			minQuorum:   4,
			want:        []string{"remove d"},
		},
		{
			name:        "newcomer while a voter is failed but not yet removed: non-voter",
			servers:     []raft.Server{voter("a"), voter("b"), voter("c")},
			members:     append(alive("a", "b", "d"), member("c", StatusFailed, recent)),
			deadCleanup: time.Minute,
			want:        []string{"add-nonvoter d"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			missing := tc.missing
			if missing == nil {
				missing = map[string]time.Time{}
			}
			actions := planReconcile(reconcileInput{
				self:         "a",
				servers:      tc.servers,
				members:      tc.members,
				missingSince: missing,
				now:          now,
				deadCleanup:  tc.deadCleanup,
				minQuorum:    tc.minQuorum,
				leaderIndex:  tc.leaderIndex,
			})
			var got []string
			for _, a := range actions {
				got = append(got, a.kind.String()+" "+a.id)
			}
			if strings.Join(got, "; ") != strings.Join(tc.want, "; ") {
				t.Fatalf("actions %v, want %v (%v)", got, tc.want, actions)
			}
		})
	}
}

func TestPlanReconcileTracksMissing(t *testing.T) {
	now := time.Now()
	missing := map[string]time.Time{}
	in := reconcileInput{
		self:         "a",
		servers:      []raft.Server{voter("a"), voter("b"), voter("c")},
		members:      []Member{member("a", StatusAlive, now), member("b", StatusAlive, now)},
		missingSince: missing,
		now:          now,
		deadCleanup:  time.Minute,
	}
	if a := planReconcile(in); len(a) != 0 {
		t.Fatalf("first pass: %v", a)
	}
	if !missing["c"].Equal(now) {
		t.Fatalf("missing = %v", missing)
	}
	in.now = now.Add(2 * time.Minute)
	if a := planReconcile(in); len(a) != 1 || a[0].kind != actionRemove || a[0].id != "c" {
		t.Fatalf("after the cleanup time: %v", a)
	}
	// c comes back: the mark is dropped.
	in.members = append(in.members, member("c", StatusAlive, now))
	planReconcile(in)
	if _, ok := missing["c"]; ok {
		t.Fatal("missing mark kept after the server reappeared")
	}
}

func TestBootstrapCandidates(t *testing.T) {
	m := func(name string, expect int, state bool, status MemberStatus) Member {
		return Member{Name: name, RaftAddr: name + ":8300", BootstrapExpect: expect, HasRaftState: state, Status: status}
	}
	cands, reason := bootstrapCandidates([]Member{m("c", 3, false, StatusAlive), m("a", 3, false, StatusAlive),
		m("j", 0, false, StatusAlive), m("x", 3, false, StatusFailed), m("b", 3, false, StatusAlive)}, 3)
	if reason != "" || len(cands) != 3 || cands[0].Name != "a" || cands[1].Name != "b" || cands[2].Name != "c" {
		t.Fatalf("candidates %v, reason %q", cands, reason)
	}
	if _, reason := bootstrapCandidates([]Member{m("a", 3, false, StatusAlive), m("b", 3, true, StatusAlive)}, 3); !strings.Contains(reason, "b already has raft state") {
		t.Fatalf("reason %q", reason)
	}
	if _, reason := bootstrapCandidates([]Member{m("a", 3, false, StatusAlive), m("b", 5, false, StatusAlive)}, 3); !strings.Contains(reason, "different bootstrap-expect") {
		t.Fatalf("reason %q", reason)
	}
}
