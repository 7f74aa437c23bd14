// Package backuptest holds test helpers for backup targets.
package backuptest

import (
	"net/http/httptest"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

// NewTestS3 starts an in-process S3-compatible server holding one empty
// bucket and returns a target URL for prefix in it. It sets the AWS
// credential variables for the test, and stops the server when the test
// ends.
func NewTestS3(t testing.TB, bucket, prefix string) string {
	t.Helper()
	be := s3mem.New()
	if err := be.CreateBucket(bucket); err != nil {
		t.Fatalf("create bucket: %v", err)
	}
	srv := httptest.NewServer(gofakes3.New(be, gofakes3.WithLogger(gofakes3.DiscardLog())).Server())
	t.Cleanup(srv.Close)
	t.Setenv("AWS_ACCESS_KEY_ID", "test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	return "s3://" + bucket + "/" + prefix + "?endpoint=" + srv.URL + "&region=us-east-1"
}
