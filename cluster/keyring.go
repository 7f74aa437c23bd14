package cluster

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/hashicorp/memberlist"
)

// ErrGossipNotEncrypted: the server runs without a gossip keyring, so there
// is nothing to list or rotate. Encryption cannot be switched on live.
var ErrGossipNotEncrypted = errors.New("gossip encryption is not enabled on this server (start it with --gossip-key-file)")

// keyringFile is where the gossip keyring is kept, primary key first, so
// that a restart keeps keys rotated on the live cluster.
const keyringFile = "gossip/keyring"

// GenerateGossipKey returns a new random 32-byte gossip key (AES-256),
// base64-encoded, as `berth cluster keygen` prints it.
func GenerateGossipKey() (string, error) {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		return "", fmt.Errorf("generate gossip key: %w", err)
	}
	return base64.StdEncoding.EncodeToString(k), nil
}

// DecodeGossipKey decodes a base64 gossip key of 16, 24 or 32 bytes
// (surrounding white space is ignored, so a key file may end in a newline).
func DecodeGossipKey(s string) ([]byte, error) {
	k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("gossip key is not base64: %w", err)
	}
	if err := memberlist.ValidateKey(k); err != nil {
		return nil, fmt.Errorf("gossip key: %w (got %d bytes; `berth cluster keygen` makes one)", err, len(k))
	}
	return k, nil
}

func encodeKey(k []byte) string { return base64.StdEncoding.EncodeToString(k) }

// openKeyring returns the keyring gossip starts with: the persisted one if
// the data dir holds it (keys rotated live win over the configured key, as
// in Consul), else one holding GossipKey (persisted at once); nil when
// gossip is not encrypted.
func (n *Node) openKeyring() (*memberlist.Keyring, error) {
	var keys [][]byte
	path := ""
	if !n.cfg.InMemory {
		path = filepath.Join(n.cfg.DataDir, keyringFile)
		data, err := os.ReadFile(path)
		switch {
		case err == nil:
			var encoded []string
			if err := json.Unmarshal(data, &encoded); err != nil {
				return nil, fmt.Errorf("gossip keyring %s: %w", path, err)
			}
			for i, e := range encoded {
				k, err := DecodeGossipKey(e)
				if err != nil {
					return nil, fmt.Errorf("gossip keyring %s, key %d: %w", path, i, err)
				}
				keys = append(keys, k)
			}
			if len(keys) == 0 {
				return nil, fmt.Errorf("gossip keyring %s holds no key", path)
			}
			if n.cfg.GossipKey != nil && !containsKey(keys, n.cfg.GossipKey) {
				n.log.Warn("the configured gossip key is not in the keyring kept in the data dir; using the kept keyring (keys were rotated)", "keyring", path)
			}
		case !errors.Is(err, os.ErrNotExist):
			return nil, fmt.Errorf("gossip keyring: %w", err)
		}
	}
	if keys == nil {
		if n.cfg.GossipKey == nil {
			return nil, nil
		}
		keys = [][]byte{n.cfg.GossipKey}
	}
	kr, err := memberlist.NewKeyring(keys, keys[0])
	if err != nil {
		return nil, fmt.Errorf("gossip keyring: %w", err)
	}
	n.keyringPath = path
	if err := n.saveKeyring(kr); err != nil {
		return nil, err
	}
	return kr, nil
}

func containsKey(keys [][]byte, k []byte) bool {
	for _, x := range keys {
		if bytes.Equal(x, k) {
			return true
		}
	}
	return false
}

// saveKeyring writes the keyring (primary first) atomically.
func (n *Node) saveKeyring(kr *memberlist.Keyring) error {
	if n.keyringPath == "" {
		return nil
	}
	keys := kr.GetKeys() // primary first
	encoded := make([]string, len(keys))
	for i, k := range keys {
		encoded[i] = encodeKey(k)
	}
	data, err := json.Marshal(encoded)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(n.keyringPath), 0o700); err != nil {
		return fmt.Errorf("save gossip keyring: %w", err)
	}
	tmp := n.keyringPath + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("save gossip keyring: %w", err)
	}
	if err := os.Rename(tmp, n.keyringPath); err != nil {
		return fmt.Errorf("save gossip keyring: %w", err)
	}
	return nil
}

// GossipKeys lists this server's gossip keys (base64) and its primary key,
// the one it encrypts with.
func (n *Node) GossipKeys() (keys []string, primary string, err error) {
	kr, err := n.keyring()
	if err != nil {
		return nil, "", err
	}
	for _, k := range kr.GetKeys() {
		keys = append(keys, encodeKey(k))
	}
	return keys, encodeKey(kr.GetPrimaryKey()), nil
}

// KeyringOp is a change to the gossip keyring.
type KeyringOp string

// Keyring operations, as `consul keyring -install|-use|-remove`.
const (
	// KeyringInstall adds a key, used to decrypt but not yet to encrypt.
	KeyringInstall KeyringOp = "install"
	// KeyringUse makes an installed key the primary (encrypting) key.
	KeyringUse KeyringOp = "use"
	// KeyringRemove drops a key that is not the primary.
	KeyringRemove KeyringOp = "remove"
)

// ChangeGossipKeyring applies op with the base64 key to this server's
// keyring and persists the result in the data dir.
func (n *Node) ChangeGossipKeyring(op KeyringOp, key string) error {
	kr, err := n.keyring()
	if err != nil {
		return err
	}
	k, err := DecodeGossipKey(key)
	if err != nil {
		return err
	}
	n.keyringMu.Lock()
	defer n.keyringMu.Unlock()
	switch op {
	case KeyringInstall:
		err = kr.AddKey(k)
	case KeyringUse:
		err = kr.UseKey(k)
	case KeyringRemove:
		if !containsKey(kr.GetKeys(), k) {
			return errors.New("remove gossip key: the key is not in the keyring")
		}
		err = kr.RemoveKey(k)
	default:
		return fmt.Errorf("keyring operation %q: want install, use or remove", op)
	}
	if err != nil {
		return fmt.Errorf("%s gossip key: %w", op, err)
	}
	if err := n.saveKeyring(kr); err != nil {
		return err
	}
	n.log.Info("gossip keyring changed", "op", string(op), "keys", len(kr.GetKeys()))
	return nil
}

func (n *Node) keyring() (*memberlist.Keyring, error) {
	if err := n.running(); err != nil {
		return nil, err
	}
	if n.gossipKeyring == nil {
		return nil, ErrGossipNotEncrypted
	}
	return n.gossipKeyring, nil
}
