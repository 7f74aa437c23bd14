package main

import (
	"slices"
	"strings"
	"testing"
)

func TestTaskUserPolicy(t *testing.T) {
	for _, tc := range []struct {
		name      string
		o         serverOptions
		addr      string
		want      []string // nil: any user
		wantError string
	}{
		{name: "server default: the framework user", o: serverOptions{mesosUser: "berth"}, addr: "127.0.0.1:7070", want: []string{"berth"}},
		{name: "dev on loopback: any", o: serverOptions{mesosUser: "berth", anyTaskUserOnLoopback: true}, addr: "127.0.0.1:7070"},
		{name: "dev on IPv6 loopback: any", o: serverOptions{mesosUser: "berth", anyTaskUserOnLoopback: true}, addr: "[::1]:7070"},
		{name: "dev on all interfaces: the framework user", o: serverOptions{mesosUser: "berth", anyTaskUserOnLoopback: true}, addr: "0.0.0.0:7070", want: []string{"berth"}},
		{name: "explicit list", o: serverOptions{mesosUser: "berth", taskUsers: []string{"nobody", " postgres"}, anyTaskUserOnLoopback: true}, addr: "127.0.0.1:7070", want: []string{"nobody", "postgres"}},
		{name: "star", o: serverOptions{taskUsers: []string{"*"}}, addr: "10.0.0.1:7070"},
		{name: "star with names", o: serverOptions{taskUsers: []string{"*", "root"}}, wantError: "--task-users"},
		{name: "empty name", o: serverOptions{taskUsers: []string{"nobody", " "}}, wantError: "empty user name"},
	} {
		got, fw, err := tc.o.taskUserPolicy(tc.addr)
		if tc.wantError != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantError) {
				t.Errorf("%s: err = %v, want it to mention %q", tc.name, err, tc.wantError)
			}
			continue
		}
		if err != nil || (got == nil) != (tc.want == nil) || !slices.Equal(got, tc.want) {
			t.Errorf("%s: allowed = %q, %v; want %q", tc.name, got, err, tc.want)
		}
		if tc.o.mesosUser != "" && fw != tc.o.mesosUser {
			t.Errorf("%s: framework user = %q, want --mesos-user %q", tc.name, fw, tc.o.mesosUser)
		}
		if fw == "" {
			t.Errorf("%s: no framework user", tc.name)
		}
	}
}
