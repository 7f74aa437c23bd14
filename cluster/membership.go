package cluster

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// MemberStatus is a server's state as seen through gossip.
type MemberStatus string

// Member statuses.
const (
	StatusAlive  MemberStatus = "alive"
	StatusFailed MemberStatus = "failed" // stopped answering gossip probes
	StatusLeft   MemberStatus = "left"   // left gracefully
)

// Member is one Berth server known through gossip.
type Member struct {
	Name       string
	RaftAddr   string
	APIAddr    string
	GossipAddr string
	Version    string
	Status     MemberStatus
	// Leader is true for the current Raft leader as this server knows it.
	Leader bool
	// Voter is true when the server is a voter in this server's copy of
	// the Raft configuration.
	Voter bool
	// BootstrapExpect is the server's configured BootstrapExpect.
	BootstrapExpect int
	// HasRaftState is true once the server has Raft state (it bootstrapped
	// or was added to a cluster).
	HasRaftState bool
	// StatusSince is when this server last saw the status change.
	StatusSince time.Time
	// DiskError says why the server's Raft log or stable store cannot be
	// written, if so.
	DiskError string

	applied uint64 // gossiped applied index while not a voter
}

// metaRole marks gossip members that are Berth servers.
const metaRole = "berth-server"

// nodeMeta is gossiped as memberlist node metadata (at most 512 bytes).
type nodeMeta struct {
	Role     string `json:"role"`
	Raft     string `json:"raft"`
	API      string `json:"api,omitempty"`
	Version  string `json:"ver,omitempty"`
	Expect   int    `json:"expect,omitempty"`
	HasState bool   `json:"state,omitempty"`
	// Applied is the last applied Raft index, gossiped only while the
	// server is not a voter so that the leader can tell when it caught up.
	Applied uint64 `json:"applied,omitempty"`
	// Leaving is set by a server that leaves gracefully, just before its
	// memberlist leave: memberlist itself does not tell event delegates
	// whether a node left or died.
	Leaving bool `json:"leaving,omitempty"`
	// Disk is why this server's Raft log cannot be written (shortened to
	// fit the metadata), "" while it can.
	Disk string `json:"disk,omitempty"`
}

func (m nodeMeta) encode() ([]byte, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	if len(b) > memberlist.MetaMaxSize {
		return nil, fmt.Errorf("gossip metadata is %d bytes, the limit is %d (shorten the addresses or version)", len(b), memberlist.MetaMaxSize)
	}
	return b, nil
}

func decodeMeta(b []byte) (nodeMeta, error) {
	var m nodeMeta
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("decode gossip metadata: %w", err)
	}
	if m.Role != metaRole {
		return m, fmt.Errorf("gossip member is not a Berth server (role %q)", m.Role)
	}
	return m, nil
}

// memberTable is this server's view of the gossip membership. memberlist
// calls the delegate methods with its own locks held, so they only update
// the table and poke the changed channel; they never call back into it.
type memberTable struct {
	log     *slog.Logger
	mu      sync.Mutex
	members map[string]*Member
	changed chan struct{} // capacity 1
	// localMeta produces this server's metadata.
	localMeta func() nodeMeta
}

func newMemberTable(log *slog.Logger, localMeta func() nodeMeta) *memberTable {
	return &memberTable{
		log:       log,
		members:   make(map[string]*Member),
		changed:   make(chan struct{}, 1),
		localMeta: localMeta,
	}
}

func (t *memberTable) poke() {
	select {
	case t.changed <- struct{}{}:
	default:
	}
}

func (t *memberTable) upsert(n *memberlist.Node, status MemberStatus) {
	meta, err := decodeMeta(n.Meta)
	if err != nil {
		t.log.Warn("ignoring gossip member", "member", n.Name, "addr", n.Address(), "err", err)
		return
	}
	if meta.Leaving {
		status = StatusLeft
	}
	now := time.Now()
	t.mu.Lock()
	m, ok := t.members[n.Name]
	if !ok {
		m = &Member{Name: n.Name, StatusSince: now}
		t.members[n.Name] = m
	}
	if m.Status != status {
		m.StatusSince = now
		if ok {
			t.log.Info("server status changed", "member", n.Name, "from", m.Status, "to", status)
		} else {
			t.log.Info("server discovered", "member", n.Name, "status", status, "raft_addr", meta.Raft, "api_addr", meta.API)
		}
	}
	m.Status = status
	m.GossipAddr = n.Address()
	m.RaftAddr = meta.Raft
	m.APIAddr = meta.API
	m.Version = meta.Version
	m.BootstrapExpect = meta.Expect
	m.HasRaftState = meta.HasState
	m.applied = meta.Applied
	m.DiskError = meta.Disk
	t.mu.Unlock()
	t.poke()
}

// NodeMeta implements memberlist.Delegate.
func (t *memberTable) NodeMeta(limit int) []byte {
	b, err := t.localMeta().encode()
	if err != nil || len(b) > limit {
		// Checked at start-up, so this cannot happen with a valid config.
		t.log.Error("cannot encode gossip metadata", "err", err)
		return nil
	}
	return b
}

// NotifyMsg implements memberlist.Delegate (no user messages are used).
func (t *memberTable) NotifyMsg([]byte) {}

// GetBroadcasts implements memberlist.Delegate.
func (t *memberTable) GetBroadcasts(int, int) [][]byte { return nil }

// LocalState implements memberlist.Delegate.
func (t *memberTable) LocalState(bool) []byte { return nil }

// MergeRemoteState implements memberlist.Delegate.
func (t *memberTable) MergeRemoteState([]byte, bool) {}

// NotifyJoin implements memberlist.EventDelegate.
func (t *memberTable) NotifyJoin(n *memberlist.Node) { t.upsert(n, StatusAlive) }

// NotifyUpdate implements memberlist.EventDelegate.
func (t *memberTable) NotifyUpdate(n *memberlist.Node) { t.upsert(n, StatusAlive) }

// NotifyLeave implements memberlist.EventDelegate. A node that announced
// its departure (Leaving in its metadata) left; any other died.
func (t *memberTable) NotifyLeave(n *memberlist.Node) { t.upsert(n, StatusFailed) }

// NotifyConflict implements memberlist.ConflictDelegate.
func (t *memberTable) NotifyConflict(existing, other *memberlist.Node) {
	t.log.Error("two servers use the same node name; node names must be unique",
		"name", existing.Name, "existing_addr", existing.Address(), "other_addr", other.Address())
}

// snapshot returns copies of all members sorted by name.
func (t *memberTable) snapshot() []Member {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]Member, 0, len(t.members))
	for _, m := range t.members {
		out = append(out, *m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (t *memberTable) get(name string) (Member, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	m, ok := t.members[name]
	if !ok {
		return Member{}, false
	}
	return *m, true
}

// setLocalStatus records this server's own status (memberlist does not
// notify a node about its own leave).
func (t *memberTable) setLocalStatus(name string, status MemberStatus) {
	t.mu.Lock()
	if m, ok := t.members[name]; ok && m.Status != status {
		m.Status = status
		m.StatusSince = time.Now()
	}
	t.mu.Unlock()
	t.poke()
}

// reap forgets failed and left members whose status is older than ttl.
func (t *memberTable) reap(ttl time.Duration, self string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for name, m := range t.members {
		if name != self && m.Status != StatusAlive && time.Since(m.StatusSince) > ttl {
			t.log.Info("forgetting server", "member", name, "status", m.Status)
			delete(t.members, name)
		}
	}
}
