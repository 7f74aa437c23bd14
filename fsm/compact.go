package fsm

import (
	"sync"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// compactInstance makes an instance the store keeps (a fresh copy, not yet
// shared) hold fewer strings: the copies of its id inside its berth share
// the instance's, and the values that many instances repeat (app id and
// version, agent, host, role, task state, volume path) are interned. The
// decoder allocates every string apart; at 100,000 instances the copies
// were about a sixth of the store's memory. The content is unchanged.
func compactInstance(inst *v1.Instance) {
	id := inst.GetId()
	inst.AppId = intern(inst.AppId)
	inst.AppVersion = intern(inst.AppVersion)
	if r := inst.GetReservation(); r != nil {
		if r.InstanceId == id {
			r.InstanceId = id
		}
		r.AgentId, r.Hostname = intern(r.AgentId), intern(r.Hostname)
		r.Role, r.Principal = intern(r.Role), intern(r.Principal)
		for _, v := range r.GetVolumes() {
			if v.InstanceId == id {
				v.InstanceId = id
			}
			v.AgentId, v.ContainerPath = intern(v.AgentId), intern(v.ContainerPath)
		}
	}
	if t := inst.GetTask(); t != nil {
		t.AgentId, t.Hostname = intern(t.AgentId), intern(t.Hostname)
		t.State, t.AppVersion = intern(t.State), intern(t.AppVersion)
	}
}

// internLimit bounds the intern table: past it the table starts afresh
// (strings already shared stay shared), so values that come and go (app
// versions) cannot grow it without end.
const internLimit = 1 << 14

// interned is the intern table. A plain map under a lock: the unique
// package's weak handles cost a restore of 100,000 instances more CPU
// than the decoding.
var interned = struct {
	sync.Mutex
	m map[string]string
}{m: map[string]string{}}

// intern returns the copy of s that the strings interned before it share.
func intern(s string) string {
	if s == "" {
		return ""
	}
	interned.Lock()
	defer interned.Unlock()
	if v, ok := interned.m[s]; ok {
		return v
	}
	if len(interned.m) >= internLimit {
		clear(interned.m)
	}
	interned.m[s] = s
	return s
}
