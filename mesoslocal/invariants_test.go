package mesoslocal

import (
	"fmt"
	"sync"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
)

// installChecks makes every allocation round of c verify, under the master
// lock, that
//   - each agent's ledger lists exactly the free resources (in order) that
//     total − tasks − executors − offers gives (agents whose ledger did not
//     change since they were last checked are skipped; all are checked at
//     the end), and
//   - every agent the round did not leave queued has nothing any framework
//     could be offered now, so skipping it in the next round changes no
//     offer (the dirty-set allocator makes the offers of a full scan).
//
// The first violation fails the test at cleanup.
func installChecks(t testing.TB, c *Cluster) {
	var mu sync.Mutex
	var first error
	checked := map[*agent]uint64{} // ledger version last checked
	c.afterAllocate = func(now time.Time, fws []*framework) {
		err := c.checkLedgers(checked)
		if err == nil {
			err = c.checkNothingOfferable(now, fws)
		}
		if err != nil {
			mu.Lock()
			if first == nil {
				first = err
			}
			mu.Unlock()
		}
	}
	t.Cleanup(func() {
		c.mu.Lock()
		err := c.checkLedgers(nil)
		c.mu.Unlock()
		mu.Lock()
		defer mu.Unlock()
		if first != nil {
			t.Errorf("mesos-local invariant broken: %v", first)
		}
		if err != nil {
			t.Errorf("mesos-local invariant broken at the end: %v", err)
		}
	})
}

// checkLedgers compares agents' ledgers with a recomputation: all of them,
// or with checked those whose ledger changed since it was last checked.
func (c *Cluster) checkLedgers(checked map[*agent]uint64) error {
	for _, a := range c.agentList {
		if checked != nil {
			if v, ok := checked[a]; ok && v == a.res.version {
				continue
			}
			checked[a] = a.res.version
		}
		want, got := a.recomputeAvailable(), a.res.free()
		if err := sameList(want, got); err != nil {
			return fmt.Errorf("agent %s: free resources {%s}, recomputed {%s}: %v", a.id, got, want, err)
		}
		if err := sameList(a.res.totalSet(), a.res.totalSet().plus()); err != nil {
			return fmt.Errorf("agent %s: total {%s} is not canonical: %v", a.id, a.res.totalSet(), err)
		}
	}
	return nil
}

func sameList(want, got rset) error {
	if len(want) != len(got) {
		return fmt.Errorf("%d resources, want %d", len(got), len(want))
	}
	for i := range want {
		if resKey(&want[i]) != resKey(&got[i]) || !sameValue(&want[i], &got[i]) {
			return fmt.Errorf("resource %d is %s, want %s", i, formatRes(got[i]), formatRes(want[i]))
		}
	}
	return nil
}

// checkNothingOfferable verifies that no agent outside the dirty set has
// resources that one of fws could be offered at now.
func (c *Cluster) checkNothingOfferable(now time.Time, fws []*framework) error {
	if c.allDirty {
		return nil
	}
	for _, a := range c.agentList {
		if a.dirty || !a.active || a.gone || a.deactivated || !a.res.hasFree() {
			continue
		}
		if !a.wakeAt.IsZero() && !now.Before(a.wakeAt) {
			continue // woken by the next round
		}
		free := a.res.free()
		for _, fw := range fws {
			for _, role := range fw.roles {
				if fw.suppressed[role] {
					continue
				}
				cand := free.filter(func(r *mesos.Resource) bool {
					return allocatableTo(r, role) && (fw.refinement || len(r.Reservations) <= 1) && r.Revocable == nil
				})
				if cand.empty() || !minAllocatable(cand) {
					continue
				}
				var last time.Time // when the last filter refusing cand ends
				for _, f := range fw.filters[a.id] {
					if !now.After(f.until) && f.role == role && f.res.contains(cand) && f.until.After(last) {
						last = f.until
					}
				}
				switch {
				case last.IsZero():
					return fmt.Errorf("agent %s is not queued but {%s} could be offered to %s (role %s)", a.id, cand, fw.id, role)
				case a.wakeAt.IsZero() || a.wakeAt.After(last):
					return fmt.Errorf("agent %s: {%s} is refused to %s (role %s) until %v, but the agent is woken only at %v", a.id, cand, fw.id, role, last, a.wakeAt)
				}
			}
		}
	}
	return nil
}
