package mesoslocal

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/gogo/protobuf/proto"
	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"pgregory.net/rapid"
)

// The reference implementations below are mesos-local's resource
// arithmetic before the indexed sets: a quoted string key recomputed for
// every comparison and linear scans. The fast versions must agree with
// them exactly, order included.

func refResKey(r *mesos.Resource) string {
	var b strings.Builder
	b.WriteString(r.Name)
	b.WriteByte('|')
	b.WriteString(strconv.Itoa(int(r.GetType())))
	for _, ri := range r.Reservations {
		b.WriteString("|R")
		b.WriteString(strconv.Itoa(int(ri.GetType())))
		b.WriteByte(',')
		b.WriteString(strconv.Quote(ri.GetRole()))
		b.WriteByte(',')
		b.WriteString(strconv.Quote(ri.GetPrincipal()))
		for _, l := range ri.GetLabels().GetLabels() {
			b.WriteString(",L")
			b.WriteString(strconv.Quote(l.Key))
			b.WriteByte('=')
			if l.Value != nil {
				b.WriteString(strconv.Quote(*l.Value))
			}
		}
	}
	if d := r.Disk; d != nil {
		if p := d.Persistence; p != nil {
			b.WriteString("|P")
			b.WriteString(strconv.Quote(p.ID))
		}
		if s := d.Source; s != nil {
			b.WriteString("|S")
			b.WriteString(s.GetType().String())
			b.WriteString(strconv.Quote(s.GetPath().GetRoot()))
			b.WriteString(strconv.Quote(s.GetMount().GetRoot()))
			b.WriteString(strconv.Quote(s.GetID()))
			b.WriteString(strconv.Quote(s.GetProfile()))
		}
	}
	if r.Revocable != nil {
		b.WriteString("|rev")
	}
	if r.Shared != nil {
		b.WriteString("|shared")
	}
	if r.ProviderID != nil {
		b.WriteString("|prov" + strconv.Quote(r.ProviderID.Value))
	}
	return b.String()
}

func refPlus(s rset, others ...mesos.Resource) rset {
	out := append(rset(nil), s...)
	for _, o := range others {
		if isEmptyRes(&o) {
			continue
		}
		k := refResKey(&o)
		merged := false
		for i := range out {
			if refResKey(&out[i]) == k {
				out[i] = addValue(out[i], o)
				merged = true
				break
			}
		}
		if !merged {
			out = append(out, o)
		}
	}
	return out
}

func refMinus(s rset, others ...mesos.Resource) rset {
	out := append(rset(nil), s...)
	for _, o := range others {
		k := refResKey(&o)
		for i := range out {
			if refResKey(&out[i]) == k {
				out[i] = subValue(out[i], o)
				if isEmptyRes(&out[i]) {
					out = append(out[:i], out[i+1:]...)
				}
				break
			}
		}
	}
	return out
}

func refContains(s, o rset) bool {
	for _, r := range refPlus(nil, o...) {
		k := refResKey(&r)
		found := false
		for i := range s {
			if refResKey(&s[i]) == k {
				found = containsValue(s[i], r)
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// genResource draws resources from a small universe, so that identities
// collide often.
func genResource(t *rapid.T, label string) mesos.Resource {
	kind := rapid.IntRange(0, 4).Draw(t, label+"kind")
	var r mesos.Resource
	switch kind {
	case 0, 1, 2:
		r = mesos.Resource{Name: []string{"cpus", "mem", "disk"}[kind], Type: mesos.SCALAR.Enum(),
			Scalar: &mesos.Value_Scalar{Value: float64(rapid.IntRange(0, 3000).Draw(t, label+"milli")) / 1000}}
	case 3:
		var rs []mesos.Value_Range
		for i, n := 0, rapid.IntRange(0, 3).Draw(t, label+"nranges"); i < n; i++ {
			b := uint64(rapid.IntRange(0, 40).Draw(t, label+"begin"))
			rs = append(rs, mesos.Value_Range{Begin: b, End: b + uint64(rapid.IntRange(0, 6).Draw(t, label+"len"))})
		}
		r = mesos.Resource{Name: "ports", Type: mesos.RANGES.Enum(), Ranges: &mesos.Value_Ranges{Range: normRanges(rs)}}
	case 4:
		items := rapid.SliceOfDistinct(rapid.SampledFrom([]string{"x", "y", "z"}), func(s string) string { return s }).Draw(t, label+"items")
		r = mesos.Resource{Name: "zones", Type: mesos.SET.Enum(), Set: &mesos.Value_Set{Item: sortedKeys(setItems(items))}}
	}
	for i, n := 0, rapid.IntRange(0, 2).Draw(t, label+"nres"); i < n; i++ {
		ri := mesos.Resource_ReservationInfo{Type: mesos.Resource_ReservationInfo_DYNAMIC.Enum(), Role: proto.String([]string{"a", "a/b"}[i])}
		if i == 0 && rapid.Bool().Draw(t, label+"static") {
			ri.Type = mesos.Resource_ReservationInfo_STATIC.Enum()
		}
		if rapid.Bool().Draw(t, label+"principal") {
			ri.Principal = proto.String("p")
		}
		switch rapid.IntRange(0, 3).Draw(t, label+"label") {
		case 1:
			ri.Labels = &mesos.Labels{Labels: []mesos.Label{{Key: "i", Value: proto.String(rapid.SampledFrom([]string{"1", "2", ""}).Draw(t, label+"lv"))}}}
		case 2:
			ri.Labels = &mesos.Labels{Labels: []mesos.Label{{Key: "i"}}}
		}
		r.Reservations = append(r.Reservations, ri)
	}
	if r.Name == "disk" && len(r.Reservations) > 0 && rapid.Bool().Draw(t, label+"volume") {
		r.Disk = &mesos.Resource_DiskInfo{
			Persistence: &mesos.Resource_DiskInfo_Persistence{ID: rapid.SampledFrom([]string{"v1", "v2"}).Draw(t, label+"pid")},
			Volume:      &mesos.Volume{ContainerPath: rapid.SampledFrom([]string{"data", "other"}).Draw(t, label+"cp"), Mode: mesos.RW.Enum()},
		}
		if rapid.Bool().Draw(t, label+"shared") {
			r.Shared = &mesos.Resource_SharedInfo{}
		}
	}
	if rapid.IntRange(0, 9).Draw(t, label+"revocable") == 0 {
		r.Revocable = &mesos.Resource_RevocableInfo{}
	}
	return r
}

func genSet(t *rapid.T, label string, max int) rset {
	var s rset
	for i, n := 0, rapid.IntRange(0, max).Draw(t, label+"n"); i < n; i++ {
		s = append(s, genResource(t, label))
	}
	return s
}

// sameSet compares two sets element by element: identity, value and
// volume use.
func sameSet(want, got rset) error {
	if len(want) != len(got) {
		return fmt.Errorf("got {%s}, want {%s}", got, want)
	}
	for i := range want {
		if refResKey(&want[i]) != refResKey(&got[i]) || !sameValue(&want[i], &got[i]) ||
			!proto.Equal(want[i].GetDisk().GetVolume(), got[i].GetDisk().GetVolume()) {
			return fmt.Errorf("element %d: got {%s}, want {%s}", i, got, want)
		}
	}
	return nil
}

func TestResKeyMatchesReference(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a, b := genResource(t, "a"), genResource(t, "b")
		if (resKey(&a) == resKey(&b)) != (refResKey(&a) == refResKey(&b)) {
			t.Fatalf("keys disagree for %s and %s", formatRes(a), formatRes(b))
		}
	})
}

func TestResKeyDistinguishesLabelsAndSources(t *testing.T) {
	base := func() mesos.Resource {
		return mesos.Resource{Name: "disk", Type: mesos.SCALAR.Enum(), Scalar: &mesos.Value_Scalar{Value: 1},
			Reservations: []mesos.Resource_ReservationInfo{{Type: mesos.Resource_ReservationInfo_DYNAMIC.Enum(), Role: proto.String("r")}}}
	}
	variants := map[string]func(*mesos.Resource){
		"plain":     func(*mesos.Resource) {},
		"label nil": func(r *mesos.Resource) { r.Reservations[0].Labels = &mesos.Labels{Labels: []mesos.Label{{Key: "k"}}} },
		"label empty": func(r *mesos.Resource) {
			r.Reservations[0].Labels = &mesos.Labels{Labels: []mesos.Label{{Key: "k", Value: proto.String("")}}}
		},
		"label ab|c": func(r *mesos.Resource) {
			r.Reservations[0].Labels = &mesos.Labels{Labels: []mesos.Label{{Key: "ab", Value: proto.String("c")}}}
		},
		"label a|bc": func(r *mesos.Resource) {
			r.Reservations[0].Labels = &mesos.Labels{Labels: []mesos.Label{{Key: "a", Value: proto.String("bc")}}}
		},
		"principal": func(r *mesos.Resource) { r.Reservations[0].Principal = proto.String("p") },
		"role rp":   func(r *mesos.Resource) { r.Reservations[0].Role = proto.String("rp") },
		"source": func(r *mesos.Resource) {
			r.Disk = &mesos.Resource_DiskInfo{Source: &mesos.Resource_DiskInfo_Source{Type: mesos.Resource_DiskInfo_Source_PATH}}
		},
		"persistence": func(r *mesos.Resource) {
			r.Disk = &mesos.Resource_DiskInfo{Persistence: &mesos.Resource_DiskInfo_Persistence{ID: "v"}}
		},
		"provider":     func(r *mesos.Resource) { r.ProviderID = &mesos.ResourceProviderID{Value: "x"} },
		"revocable":    func(r *mesos.Resource) { r.Revocable = &mesos.Resource_RevocableInfo{} },
		"two reserves": func(r *mesos.Resource) { r.Reservations = append(r.Reservations, r.Reservations[0]) },
	}
	seen := map[string]string{}
	for name, mod := range variants {
		r := base()
		mod(&r)
		k := resKey(&r)
		if other, dup := seen[k]; dup {
			t.Errorf("%q and %q share a key", name, other)
		}
		seen[k] = name
	}
	// The volume's use does not change the identity.
	a, b := base(), base()
	a.Disk = &mesos.Resource_DiskInfo{Persistence: &mesos.Resource_DiskInfo_Persistence{ID: "v"}, Volume: &mesos.Volume{ContainerPath: "a"}}
	b.Disk = &mesos.Resource_DiskInfo{Persistence: &mesos.Resource_DiskInfo_Persistence{ID: "v"}, Volume: &mesos.Volume{ContainerPath: "b"}}
	if resKey(&a) != resKey(&b) {
		t.Error("container path changes the key")
	}
}

func TestRsetArithmeticMatchesReference(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		// s may hold duplicates and empty resources, as task resources can.
		s, o := genSet(t, "s", 24), genSet(t, "o", 12)
		if err := sameSet(refPlus(s, o...), s.plus(o...)); err != nil {
			t.Fatalf("plus: %v", err)
		}
		if err := sameSet(refMinus(s, o...), s.minus(o...)); err != nil {
			t.Fatalf("minus: %v", err)
		}
		if want, got := refContains(s, o), s.contains(o); want != got {
			t.Fatalf("{%s}.contains({%s}) = %v, want %v", s, o, got, want)
		}
		sum := refPlus(nil, s...)
		if !sum.contains(sum) || !sum.plus(o...).contains(o) {
			t.Fatalf("a set must contain itself and what was added")
		}
	})
}

func TestRindexMatchesReference(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		init := genSet(t, "init", 10)
		want := refPlus(nil, init...)
		x := newRindex(init)
		for step, n := 0, rapid.IntRange(1, 60).Draw(t, "steps"); step < n; step++ {
			rs := genSet(t, "op", 3)
			switch rapid.IntRange(0, 3).Draw(t, "kind") {
			case 0:
				want = refPlus(want, rs...)
				x.add(rs...)
			case 1:
				want = refMinus(want, rs...)
				x.sub(rs...)
			case 2:
				// Take something that is in the set away entirely.
				if len(want) > 0 {
					r := want[rapid.IntRange(0, len(want)-1).Draw(t, "pick")]
					want = refMinus(want, r)
					x.sub(r)
				}
			case 3:
				if got := x.contains(rs); got != refContains(want, rs) {
					t.Fatalf("contains({%s}) = %v on {%s}", rs, got, want)
				}
				if got := x.clone(); sameSet(want, got.slice()) != nil {
					t.Fatalf("clone {%s}, want {%s}", got, want)
				}
			}
			if err := sameSet(want, x.slice()); err != nil {
				t.Fatalf("step %d: %v", step, err)
			}
			if x.len() != len(want) || x.empty() != (len(want) == 0) {
				t.Fatalf("len %d, want %d", x.len(), len(want))
			}
		}
	})
}

// TestLedgerMatchesRecomputation drives a ledger as the master does (tasks
// and offers take free resources and give them back; operations convert
// free resources) and compares it with total − used after every step.
func TestLedgerMatchesRecomputation(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		total := refPlus(nil, genSet(t, "total", 8)...)
		l := newLedger(total)
		var holds []rset // resources held by tasks and offers
		for step, n := 0, rapid.IntRange(1, 50).Draw(t, "steps"); step < n; step++ {
			free := l.free()
			l.beginJournal()
			before := append(rset(nil), total...)
			switch rapid.IntRange(0, 3).Draw(t, "kind") {
			case 0: // a task or offer takes part of (or all) the free resources
				var take rset
				for _, r := range free {
					switch rapid.IntRange(0, 2).Draw(t, "take") {
					case 1:
						take = append(take, r)
					case 2:
						if r.GetType() == mesos.SCALAR {
							r.Scalar = &mesos.Value_Scalar{Value: fromMilli(milli(r.GetScalar().GetValue()) / 2)}
							take = append(take, r)
						}
					}
				}
				l.use(take...)
				holds = append(holds, take)
			case 1: // one gives its resources back
				if len(holds) > 0 {
					i := rapid.IntRange(0, len(holds)-1).Draw(t, "release")
					l.release(holds[i]...)
					holds = append(holds[:i], holds[i+1:]...)
				}
			case 2: // an operation converts free resources: reserve them under a label
				if len(free) > 0 {
					r := free[rapid.IntRange(0, len(free)-1).Draw(t, "convert")]
					conv := r
					conv.Reservations = append(append([]mesos.Resource_ReservationInfo(nil), r.Reservations...),
						mesos.Resource_ReservationInfo{Type: mesos.Resource_ReservationInfo_DYNAMIC.Enum(), Role: proto.String("c"),
							Labels: &mesos.Labels{Labels: []mesos.Label{{Key: "step", Value: proto.String(strconv.Itoa(step))}}}})
					total = refPlus(refMinus(total, r), conv)
					l.subTotal(r)
					l.addTotal(conv)
				}
			case 3: // and back (UNRESERVE), or the same resource out and in again
				if len(free) > 0 {
					r := free[rapid.IntRange(0, len(free)-1).Draw(t, "cycle")]
					total = refPlus(refMinus(total, r), r)
					l.subTotal(r)
					l.addTotal(r)
				}
			}
			changed := l.endJournal()
			if want := !(refContains(before, total) && refContains(total, before)); changed != want {
				t.Fatalf("step %d: journal says changed=%v, want %v ({%s} → {%s})", step, changed, want, before, total)
			}
			if err := sameSet(total, l.totalSet()); err != nil {
				t.Fatalf("step %d: total: %v", step, err)
			}
			var used rset
			for _, h := range holds {
				used = append(used, h...)
			}
			if err := sameSet(refMinus(total, used...), l.free()); err != nil {
				t.Fatalf("step %d: free: %v", step, err)
			}
			if l.hasFree() != (len(l.free()) > 0) {
				t.Fatalf("step %d: hasFree %v with free {%s}", step, l.hasFree(), l.free())
			}
		}
	})
}

func TestDeepCopy(t *testing.T) {
	in := newResidentInstance("x", 31000)
	ti := shellTask("x", mesos.Offer{AgentID: mesos.AgentID{Value: "a"}}, "sleep 1", []mesos.Resource{in.cpus, in.port, in.vol})
	cp := deepCopy(&ti)
	if !proto.Equal(&ti, &cp) {
		t.Fatalf("copy differs: %v vs %v", &cp, &ti)
	}
	orig := *proto.Clone(&ti).(*mesos.TaskInfo)
	cp.Resources[0].Scalar.Value = 7
	cp.Resources[2].Disk.Persistence.ID = "changed"
	cp.Resources[1].Reservations[0].Labels.Labels[0].Key = "changed"
	if !proto.Equal(&ti, &orig) {
		t.Fatal("the copy shares memory with the original")
	}
	// A message missing a required field (possible from JSON) is copied too.
	bad := mesos.Resource{Name: "cpus", Scalar: &mesos.Value_Scalar{Value: 1}}
	if c := deepCopy(&bad); !proto.Equal(&bad, &c) || c.Scalar == bad.Scalar {
		t.Fatalf("copy of a resource without a type: %v", &c)
	}
}
