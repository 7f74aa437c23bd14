package fsm

import (
	"encoding/hex"
	"strings"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

func init() {
	registerCommand(v1.CommandType_COMMAND_TYPE_ACL_TOKEN_CREATE, "", applyACLTokenCreate)
	registerCommand(v1.CommandType_COMMAND_TYPE_ACL_TOKEN_DELETE, "", applyACLTokenDelete)
}

// metaACLBootstrapped is set by the bootstrap token's create: the cluster
// has been bootstrapped once and refuses a second bootstrap, even after
// that token is deleted (as Nomad does).
const metaACLBootstrapped = "acl_bootstrapped"

func applyACLTokenCreate(tx *txn, _ logEntry, cmd *v1.ACLTokenCreateCommand) (string, error) {
	tok := cmd.GetToken()
	if err := checkToken(tok); err != nil {
		return cmd.GetRequestId(), err
	}
	if cmd.GetBootstrap() {
		done, err := tx.First(tableMeta, "id", metaACLBootstrapped)
		if err != nil {
			return cmd.GetRequestId(), err
		}
		if done != nil {
			return cmd.GetRequestId(), refuse(ErrConflict, "ACLs are already bootstrapped")
		}
		if tok.GetPolicy() != v1.ACLPolicy_ACL_POLICY_MANAGEMENT || tok.GetAppPrefix() != "" {
			return cmd.GetRequestId(), refuse(ErrInvalid, "the bootstrap token must be a management token without app prefix")
		}
	}
	for _, idx := range []struct{ name, value string }{{"id", tok.GetAccessorId()}, {"secret", tok.GetSecretHash()}} {
		existing, err := tx.First(tableACLTokens, idx.name, idx.value)
		if err != nil {
			return cmd.GetRequestId(), err
		}
		if existing != nil {
			return cmd.GetRequestId(), refuse(ErrAlreadyExists, "ACL token %s already exists", existing.(*v1.ACLToken).GetAccessorId())
		}
	}
	if cmd.GetBootstrap() {
		if err := tx.Insert(tableMeta, &v1.MetaRecord{Key: metaACLBootstrapped, Value: tok.GetAccessorId()}); err != nil {
			return cmd.GetRequestId(), err
		}
	}
	return cmd.GetRequestId(), tx.Insert(tableACLTokens, tok)
}

// checkToken refuses a token that no lookup could ever match or that the
// authorizer could not interpret.
func checkToken(tok *v1.ACLToken) error {
	switch {
	case tok.GetAccessorId() == "":
		return refuse(ErrInvalid, "ACL token: accessor_id is empty")
	case len(tok.GetSecretHash()) != 64:
		return refuse(ErrInvalid, "ACL token %s: secret_hash must be 64 hex digits (SHA-256)", tok.GetAccessorId())
	case tok.GetPolicy() < v1.ACLPolicy_ACL_POLICY_READ || tok.GetPolicy() > v1.ACLPolicy_ACL_POLICY_MANAGEMENT:
		return refuse(ErrInvalid, "ACL token %s: unknown policy %s", tok.GetAccessorId(), tok.GetPolicy())
	case tok.GetAppPrefix() != "" && (!strings.HasPrefix(tok.GetAppPrefix(), "/") || !strings.HasSuffix(tok.GetAppPrefix(), "/")):
		return refuse(ErrInvalid, "ACL token %s: app_prefix %q must start and end with /", tok.GetAccessorId(), tok.GetAppPrefix())
	}
	if _, err := hex.DecodeString(tok.GetSecretHash()); err != nil {
		return refuse(ErrInvalid, "ACL token %s: secret_hash must be 64 hex digits (SHA-256)", tok.GetAccessorId())
	}
	return nil
}

func applyACLTokenDelete(tx *txn, _ logEntry, cmd *v1.ACLTokenDeleteCommand) (string, error) {
	raw, err := tx.First(tableACLTokens, "id", cmd.GetAccessorId())
	if err != nil {
		return cmd.GetRequestId(), err
	}
	if raw == nil {
		return cmd.GetRequestId(), refuse(ErrNotFound, "ACL token %s does not exist", cmd.GetAccessorId())
	}
	return cmd.GetRequestId(), tx.Delete(tableACLTokens, raw)
}

// ACLTokenBySecretHash returns the token whose secret hashes to hash (hex
// SHA-256), or nil.
func (s *Snapshot) ACLTokenBySecretHash(hash string) (*v1.ACLToken, error) {
	return first[*v1.ACLToken](s, tableACLTokens, "secret", hash)
}

// ACLToken returns a token by accessor id, or nil.
func (s *Snapshot) ACLToken(accessorID string) (*v1.ACLToken, error) {
	return first[*v1.ACLToken](s, tableACLTokens, "id", accessorID)
}

// ACLTokens returns every token, by accessor id.
func (s *Snapshot) ACLTokens() ([]*v1.ACLToken, error) {
	return all[*v1.ACLToken](s, tableACLTokens, "id")
}

// ACLBootstrapped reports whether the ACL bootstrap token was ever created.
func (s *Snapshot) ACLBootstrapped() (bool, error) {
	m, err := first[*v1.MetaRecord](s, tableMeta, "id", metaACLBootstrapped)
	return m != nil, err
}
