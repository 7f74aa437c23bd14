// Package acl decides who may call what: ACL tokens (their secrets, hashed
// for storage), the one table of method → permission that every API call
// is checked against (invariant 6), app-prefix scoping and the redaction of
// env values for read-only tokens. It does no I/O: the rpc package looks
// tokens up in the replicated state and calls Authorize.
package acl

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"path"
	"strings"

	"connectrpc.com/connect"

	"github.com/berth-dev/berth/appmodel"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// TokenHeader is the header that carries a token's secret besides
// "Authorization: Bearer <secret>".
const TokenHeader = "X-Berth-Token"

// Anonymous is the audit name of a caller without token or certificate.
const Anonymous = "anonymous"

// NewSecret returns a fresh token secret (128 random bits, written in the
// 8-4-4-4-12 form of Nomad's and Consul's secret ids) and its hash.
func NewSecret() (secret, hash string) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		// crypto/rand does not fail on supported platforms.
		panic("acl: read random bytes: " + err.Error())
	}
	h := hex.EncodeToString(b[:])
	secret = h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
	return secret, HashSecret(secret)
}

// HashSecret is the form in which a secret is stored and looked up: hex
// SHA-256. Secrets carry 128 random bits, so a plain hash suffices (no
// password stretching is needed against guessing).
func HashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// SecretFromHeader returns the token secret of a request: the bearer
// token of Authorization, else X-Berth-Token; "" when there is none.
func SecretFromHeader(h http.Header) string {
	if a := h.Get("Authorization"); a != "" {
		if scheme, secret, ok := strings.Cut(a, " "); ok && strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(secret)
		}
	}
	return strings.TrimSpace(h.Get(TokenHeader))
}

// ParsePolicy reads a policy name: read, write, operator or management.
func ParsePolicy(s string) (v1.ACLPolicy, error) {
	switch strings.ToLower(s) {
	case "read":
		return v1.ACLPolicy_ACL_POLICY_READ, nil
	case "write":
		return v1.ACLPolicy_ACL_POLICY_WRITE, nil
	case "operator":
		return v1.ACLPolicy_ACL_POLICY_OPERATOR, nil
	case "management":
		return v1.ACLPolicy_ACL_POLICY_MANAGEMENT, nil
	}
	return 0, fmt.Errorf("unknown policy %q (want read, write, operator or management)", s)
}

// PolicyName is the short name of a policy (read, write, ...).
func PolicyName(p v1.ACLPolicy) string {
	return strings.ToLower(strings.TrimPrefix(p.String(), "ACL_POLICY_"))
}

// CheckAppPrefix validates an app prefix for a new token: empty, or an
// absolute app path ending in "/".
func CheckAppPrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	if !strings.HasPrefix(prefix, "/") || !strings.HasSuffix(prefix, "/") || path.Clean(prefix)+"/" != prefix || prefix == "//" {
		return fmt.Errorf("app_prefix %q: must be an app path that starts and ends with / (e.g. /team-a/)", prefix)
	}
	return nil
}

// InPrefix reports whether the app id lies under the token's app prefix
// (always, for a token without one). The id is normalized as the API
// normalizes app ids; an id with . or .. segments is never inside.
func InPrefix(tok *v1.ACLToken, appID string) bool {
	prefix := tok.GetAppPrefix()
	if prefix == "" {
		return true
	}
	id := appmodel.NormalizeID(appID)
	return path.Clean(id) == id && strings.HasPrefix(id, prefix)
}

// Errors of Authorize.
var (
	// ErrNoToken: ACLs are on and the request carries no token.
	ErrNoToken = errors.New("an ACL token is required (Authorization: Bearer <secret>, X-Berth-Token, or the CLI's --token / BERTH_TOKEN)")
	// ErrUnknownToken: the secret matches no token.
	ErrUnknownToken = errors.New("ACL token not found")
)

// Authorize decides whether tok may call a method with the given rule on
// the given apps (the request's apps, resolved by the caller as the rule
// says; empty when the rule names none). tok is nil for a request that
// presented no token. It returns nil, or a Connect error: Unauthenticated
// without a token, PermissionDenied when the policy is too weak or an app
// lies outside the token's prefix.
func Authorize(tok *v1.ACLToken, procedure string, rule Rule, apps []string) error {
	if rule.Permission == PermAnonymous {
		return nil
	}
	if tok == nil {
		return connect.NewError(connect.CodeUnauthenticated, ErrNoToken)
	}
	if rule.Permission == PermToken {
		return nil
	}
	if tok.GetPolicy() < rule.Permission.policy() {
		return connect.NewError(connect.CodePermissionDenied, fmt.Errorf("%s needs a %s token; token %s has policy %s",
			procedure, PolicyName(rule.Permission.policy()), tok.GetAccessorId(), PolicyName(tok.GetPolicy())))
	}
	if tok.GetAppPrefix() == "" {
		return nil
	}
	if !rule.appScoped() && rule.Permission > PermRead {
		return connect.NewError(connect.CodePermissionDenied, fmt.Errorf("%s acts on the whole cluster; token %s is limited to apps under %s",
			procedure, tok.GetAccessorId(), tok.GetAppPrefix()))
	}
	for _, id := range apps {
		if !InPrefix(tok, id) {
			return connect.NewError(connect.CodePermissionDenied, fmt.Errorf("app %s is outside %s, the app prefix of token %s",
				id, tok.GetAppPrefix(), tok.GetAccessorId()))
		}
	}
	return nil
}

// SeesEnv reports whether tok may see env values: ACLs off (nil token and
// enabled false), or a write token or stronger.
func SeesEnv(enabled bool, tok *v1.ACLToken) bool {
	return !enabled || tok.GetPolicy() >= v1.ACLPolicy_ACL_POLICY_WRITE
}
