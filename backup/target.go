// Package backup copies a directory (a berth's persistent volume) to a
// blob store and back: content-defined chunks, each compressed and stored
// once per target under its SHA-256, plus one manifest per backup listing
// the files and their chunks. A second backup of the same volume uploads
// only the chunks the target lacks, so "copy this volume to a target" and
// "fill a volume from a backup" are the two steps every data move of Berth
// (backup, restore, migration) is built from.
//
// Layout of a target (every key under the target's prefix):
//
//	config.json              chunker polynomial, format version
//	chunks/<hh>/<sha256>     one chunk, DEFLATE-compressed
//	manifests/<id>.json      one backup's manifest
package backup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/restic/chunker"
	gcaws "gocloud.dev/aws"
	"gocloud.dev/blob"
	"gocloud.dev/blob/fileblob"
	"gocloud.dev/blob/s3blob"
	"gocloud.dev/gcerrors"
)

// FormatVersion is the version of the layout and manifest format written
// by this package. A target written by a newer format is refused.
const FormatVersion = 1

const (
	configKey       = "config.json"
	chunkPrefix     = "chunks/"
	manifestPrefix  = "manifests/"
	manifestSuffix  = ".json"
	compressionName = "deflate"
)

// Target is an opened backup target.
type Target struct {
	url    string
	bucket *blob.Bucket
	pol    chunker.Pol
}

// targetConfig is stored once per target: every backup to it cuts chunks
// with the same polynomial, which is what makes chunks deduplicate across
// backups.
type targetConfig struct {
	Version    int         `json:"version"`
	Polynomial chunker.Pol `json:"polynomial"`
}

// ParseTarget checks a target URL without opening it. Two schemes are
// supported: file:///absolute/path (a filesystem mounted on every agent)
// and s3://bucket[/prefix][?endpoint=URL&region=R&use_path_style=true...].
func ParseTarget(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, errors.New("target: must not be empty")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("target %q: %w", raw, err)
	}
	switch u.Scheme {
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return nil, fmt.Errorf("target %q: file URL must have no host (file:///path)", raw)
		}
		if u.Path == "" || !path.IsAbs(u.Path) {
			return nil, fmt.Errorf("target %q: file URL needs an absolute path (file:///path)", raw)
		}
		if u.RawQuery != "" {
			return nil, fmt.Errorf("target %q: file URL takes no query options", raw)
		}
	case "s3":
		if u.Host == "" {
			return nil, fmt.Errorf("target %q: s3 URL needs a bucket (s3://bucket/prefix)", raw)
		}
		if u.User != nil {
			return nil, fmt.Errorf("target %q: credentials do not belong in the URL; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the backup's env", raw)
		}
		if ep := u.Query().Get("endpoint"); ep != "" {
			e, err := url.Parse(ep)
			if err != nil || (e.Scheme != "http" && e.Scheme != "https") || e.Host == "" {
				return nil, fmt.Errorf("target %q: endpoint %q must be an http(s) URL", raw, ep)
			}
		}
	default:
		return nil, fmt.Errorf("target %q: scheme must be file or s3", raw)
	}
	return u, nil
}

// Open opens a target and reads (or, on first use, writes) its config.
// S3 credentials come from the environment as for any AWS SDK client
// (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN).
func Open(ctx context.Context, raw string) (*Target, error) { return open(ctx, raw, nil, true) }

// OpenExisting opens a target that a backup has written to before: it
// creates nothing (no directory, no config), so that a server reading a
// target does not leave it owned by the server's user before the copy
// tasks (running as the apps' users) write to it; a target never written
// to is ErrNotFound. S3 credentials are taken from env (the plain
// variables of an app's backup policy) when it holds AWS_ACCESS_KEY_ID and
// AWS_SECRET_ACCESS_KEY, else from the process environment.
func OpenExisting(ctx context.Context, raw string, env map[string]string) (*Target, error) {
	return open(ctx, raw, env, false)
}

func open(ctx context.Context, raw string, env map[string]string, create bool) (*Target, error) {
	u, err := ParseTarget(raw)
	if err != nil {
		return nil, err
	}
	var b *blob.Bucket
	switch u.Scheme {
	case "file":
		if !create {
			if _, serr := os.Stat(u.Path); errors.Is(serr, os.ErrNotExist) {
				return nil, fmt.Errorf("target %s: %w (no backup wrote to it yet)", Redact(raw), ErrNotFound)
			}
		}
		b, err = fileblob.OpenBucket(u.Path, &fileblob.Options{CreateDir: create, Metadata: fileblob.MetadataDontWrite, NoTempDir: true})
	case "s3":
		b, err = openS3(ctx, u, env)
	}
	if err != nil {
		return nil, fmt.Errorf("open target %s: %w", Redact(raw), err)
	}
	t := &Target{url: raw, bucket: b}
	if err := t.loadConfig(ctx, create); err != nil {
		b.Close()
		return nil, err
	}
	return t, nil
}

func openS3(ctx context.Context, u *url.URL, env map[string]string) (*blob.Bucket, error) {
	prefix := strings.Trim(u.Path, "/")
	q := u.Query()
	// An explicit endpoint is nearly always an S3-compatible server
	// (MinIO, Ceph, a test server) that wants path-style addressing.
	pathStyle := q.Get("endpoint") != ""
	for _, k := range []string{"use_path_style", "s3ForcePathStyle"} {
		if v := q.Get(k); v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return nil, fmt.Errorf("%s=%q: %w", k, v, err)
			}
			pathStyle = b
			q.Del(k)
		}
	}
	if q.Get("region") == "" {
		q.Set("region", "us-east-1")
	}
	cfg, err := gcaws.V2ConfigFromURLParams(ctx, q)
	if err != nil {
		return nil, err
	}
	if id, secret := env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]; id != "" && secret != "" {
		cfg.Credentials = credentials.NewStaticCredentialsProvider(id, secret, env["AWS_SESSION_TOKEN"])
	}
	client := s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = pathStyle })
	b, err := s3blob.OpenBucket(ctx, client, u.Host, &s3blob.Options{RequestChecksumCalculation: cfg.RequestChecksumCalculation})
	if err != nil {
		return nil, err
	}
	if prefix != "" {
		b = blob.PrefixedBucket(b, prefix+"/")
	}
	return b, nil
}

// Redact returns a target URL fit for logs and errors (no query values,
// which may name endpoints with credentials).
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(invalid URL)"
	}
	u.User = nil
	return u.String()
}

func (t *Target) loadConfig(ctx context.Context, create bool) error {
	data, err := t.bucket.ReadAll(ctx, configKey)
	if gcerrors.Code(err) == gcerrors.NotFound && !create {
		return fmt.Errorf("target %s: %w (no backup wrote to it yet)", Redact(t.url), ErrNotFound)
	}
	if gcerrors.Code(err) == gcerrors.NotFound {
		pol, perr := chunker.RandomPolynomial()
		if perr != nil {
			return fmt.Errorf("target %s: choose chunker polynomial: %w", Redact(t.url), perr)
		}
		cfg, _ := json.Marshal(targetConfig{Version: FormatVersion, Polynomial: pol})
		// Two first backups may race: the first write wins and both read
		// it back, so both cut chunks alike.
		werr := t.bucket.WriteAll(ctx, configKey, cfg, &blob.WriterOptions{ContentType: "application/json", IfNotExist: true})
		if werr != nil && gcerrors.Code(werr) != gcerrors.FailedPrecondition {
			return fmt.Errorf("target %s: write %s: %w", Redact(t.url), configKey, werr)
		}
		data, err = t.bucket.ReadAll(ctx, configKey)
	}
	if err != nil {
		return fmt.Errorf("target %s: read %s: %w", Redact(t.url), configKey, err)
	}
	var cfg targetConfig
	if err := json.Unmarshal(data, &cfg); err != nil {
		return fmt.Errorf("target %s: %s: %w", Redact(t.url), configKey, err)
	}
	if cfg.Version > FormatVersion || cfg.Version < 1 {
		return fmt.Errorf("target %s: format version %d is not supported (this berth knows %d)", Redact(t.url), cfg.Version, FormatVersion)
	}
	if !cfg.Polynomial.Irreducible() {
		return fmt.Errorf("target %s: %s: polynomial %v is not irreducible", Redact(t.url), configKey, cfg.Polynomial)
	}
	t.pol = cfg.Polynomial
	return nil
}

// Close releases the target's connections.
func (t *Target) Close() error { return t.bucket.Close() }

// URL is the target URL the target was opened with.
func (t *Target) URL() string { return t.url }

func chunkKey(hash string) string { return chunkPrefix + hash[:2] + "/" + hash }

// ManifestKey is the key of a backup's manifest, relative to the target.
func ManifestKey(id string) string { return manifestPrefix + id + manifestSuffix }

// chunkSet lists the chunks stored in the target (one listing, so that an
// incremental backup asks the store once instead of once per chunk).
func (t *Target) chunkSet(ctx context.Context) (map[string]int64, error) {
	out := map[string]int64{}
	err := t.eachChunk(ctx, func(hash, _ string, size int64) error {
		out[hash] = size
		return nil
	})
	return out, err
}

// eachChunk calls fn for every chunk object in the target.
func (t *Target) eachChunk(ctx context.Context, fn func(hash, key string, size int64) error) error {
	return t.each(ctx, chunkPrefix, func(key string, size int64) error {
		if h := path.Base(key); validHash(h) {
			return fn(h, key, size)
		}
		return nil
	})
}

// each calls fn for every object whose key starts with prefix.
func (t *Target) each(ctx context.Context, prefix string, fn func(key string, size int64) error) error {
	it := t.bucket.List(&blob.ListOptions{Prefix: prefix})
	for {
		obj, err := it.Next(ctx)
		if isEOF(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("list %s: %w", prefix, err)
		}
		if obj.IsDir {
			continue
		}
		if err := fn(obj.Key, obj.Size); err != nil {
			return err
		}
	}
}

func validHash(h string) bool {
	if len(h) != 64 {
		return false
	}
	for _, c := range h {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func isEOF(err error) bool { return errors.Is(err, io.EOF) }
