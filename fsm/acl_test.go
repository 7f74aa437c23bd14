package fsm

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

func aclToken(accessor, hashDigit string, p v1.ACLPolicy, prefix string) *v1.ACLToken {
	return &v1.ACLToken{AccessorId: accessor, SecretHash: strings.Repeat(hashDigit, 64), Policy: p, AppPrefix: prefix}
}

func TestACLBootstrapOnce(t *testing.T) {
	a := newApplier(t)
	mgmt := v1.ACLPolicy_ACL_POLICY_MANAGEMENT
	a.mustApply(v1.CommandType_COMMAND_TYPE_ACL_TOKEN_CREATE, &v1.ACLTokenCreateCommand{Token: aclToken("boot", "a", mgmt, ""), Bootstrap: true})
	snap := a.f.State().Snapshot()
	if ok, err := snap.ACLBootstrapped(); err != nil || !ok {
		t.Fatalf("bootstrapped = %v, %v; want true", ok, err)
	}
	tok, err := snap.ACLTokenBySecretHash(strings.Repeat("a", 64))
	if err != nil || tok.GetAccessorId() != "boot" {
		t.Fatalf("token by hash = %v, %v", tok, err)
	}
	// A second bootstrap is refused, even after the first token is gone.
	a.mustApply(v1.CommandType_COMMAND_TYPE_ACL_TOKEN_DELETE, &v1.ACLTokenDeleteCommand{AccessorId: "boot"})
	res := a.apply(v1.CommandType_COMMAND_TYPE_ACL_TOKEN_CREATE, &v1.ACLTokenCreateCommand{Token: aclToken("again", "b", mgmt, ""), Bootstrap: true})
	if !errors.Is(res.Err, ErrConflict) {
		t.Fatalf("second bootstrap: err = %v, want ErrConflict", res.Err)
	}
	if toks, _ := a.f.State().Snapshot().ACLTokens(); len(toks) != 0 {
		t.Fatalf("tokens after refused bootstrap = %v", toks)
	}
}

func TestACLTokenCreateDelete(t *testing.T) {
	a := newApplier(t)
	write := v1.ACLPolicy_ACL_POLICY_WRITE
	a.mustApply(v1.CommandType_COMMAND_TYPE_ACL_TOKEN_CREATE, &v1.ACLTokenCreateCommand{RequestId: "r1", Token: aclToken("w", "c", write, "/team-a/")})
	// The same request id applies once.
	if res := a.apply(v1.CommandType_COMMAND_TYPE_ACL_TOKEN_CREATE, &v1.ACLTokenCreateCommand{RequestId: "r1", Token: aclToken("w2", "d", write, "")}); res.Err != nil || res.Index != 1 {
		t.Fatalf("retried create = %+v, want the first outcome (index 1)", res)
	}
	for name, tc := range map[string]struct {
		tok  *v1.ACLToken
		want error
	}{
		"same accessor":    {aclToken("w", "e", write, ""), ErrAlreadyExists},
		"same secret":      {aclToken("x", "c", write, ""), ErrAlreadyExists},
		"no accessor":      {aclToken("", "e", write, ""), ErrInvalid},
		"short hash":       {&v1.ACLToken{AccessorId: "x", SecretHash: "abc", Policy: write}, ErrInvalid},
		"not hex":          {aclToken("x", "z", write, ""), ErrInvalid},
		"no policy":        {aclToken("x", "e", v1.ACLPolicy_ACL_POLICY_UNSPECIFIED, ""), ErrInvalid},
		"prefix without /": {aclToken("x", "e", write, "team-a"), ErrInvalid},
		"bootstrap write":  {aclToken("x", "e", write, ""), ErrInvalid},
	} {
		res := a.apply(v1.CommandType_COMMAND_TYPE_ACL_TOKEN_CREATE, &v1.ACLTokenCreateCommand{Token: tc.tok, Bootstrap: name == "bootstrap write"})
		if !errors.Is(res.Err, tc.want) {
			t.Errorf("%s: err = %v, want %v", name, res.Err, tc.want)
		}
	}
	toks, err := a.f.State().Snapshot().ACLTokens()
	if err != nil || len(toks) != 1 || toks[0].GetAppPrefix() != "/team-a/" {
		t.Fatalf("tokens = %v, %v; want only w", toks, err)
	}
	a.mustApply(v1.CommandType_COMMAND_TYPE_ACL_TOKEN_DELETE, &v1.ACLTokenDeleteCommand{AccessorId: "w"})
	if tok, _ := a.f.State().Snapshot().ACLTokenBySecretHash(strings.Repeat("c", 64)); tok != nil {
		t.Fatalf("deleted token still found: %v", tok)
	}
	if res := a.apply(v1.CommandType_COMMAND_TYPE_ACL_TOKEN_DELETE, &v1.ACLTokenDeleteCommand{AccessorId: "w"}); !errors.Is(res.Err, ErrNotFound) {
		t.Fatalf("delete of a missing token: err = %v, want ErrNotFound", res.Err)
	}
}

// TestACLTokensSurviveSnapshot: tokens and the bootstrap mark travel in
// snapshots, so a restored server refuses a second bootstrap too.
func TestACLTokensSurviveSnapshot(t *testing.T) {
	a := newApplier(t)
	a.mustApply(v1.CommandType_COMMAND_TYPE_ACL_TOKEN_CREATE, &v1.ACLTokenCreateCommand{Token: aclToken("boot", "a", v1.ACLPolicy_ACL_POLICY_MANAGEMENT, ""), Bootstrap: true})
	a.mustApply(v1.CommandType_COMMAND_TYPE_ACL_TOKEN_CREATE, &v1.ACLTokenCreateCommand{Token: aclToken("r", "b", v1.ACLPolicy_ACL_POLICY_READ, "/team-a/")})
	snap, err := a.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := snap.Persist(&bufSink{Buffer: &buf}); err != nil {
		t.Fatal(err)
	}
	g := New(nil)
	if err := g.Restore(io.NopCloser(bytes.NewReader(buf.Bytes()))); err != nil {
		t.Fatal(err)
	}
	st := g.State().Snapshot()
	tok, err := st.ACLTokenBySecretHash(strings.Repeat("b", 64))
	if err != nil || tok.GetAccessorId() != "r" || tok.GetAppPrefix() != "/team-a/" {
		t.Fatalf("restored token = %v, %v", tok, err)
	}
	if done, _ := st.ACLBootstrapped(); !done {
		t.Fatal("bootstrap mark lost in the snapshot")
	}
}
