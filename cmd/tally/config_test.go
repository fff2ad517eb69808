package main

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tally-ledger/tally/app"
)

// execute runs the command line against a fake environment, with a serve
// that only records what it was given.
func execute(t *testing.T, env map[string]string, args ...string) (cfg app.Config, stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	c := &cli{
		lookupEnv: func(k string) (string, bool) { v, ok := env[k]; return v, ok },
		stdout:    &out,
		stderr:    &errOut,
		serve: func(_ context.Context, got app.Config, log *slog.Logger) error {
			cfg = got
			log.Debug("serve called")
			return nil
		},
	}
	root := newRootCmd(c)
	root.SetArgs(args)
	err = root.ExecuteContext(t.Context())
	return cfg, out.String(), errOut.String(), err
}

func TestServeConfigPrecedence(t *testing.T) {
	home := map[string]string{"HOME": "/home/ann"}
	with := func(kv ...string) map[string]string {
		m := map[string]string{"HOME": "/home/ann"}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	defaults := func() app.Config {
		c := app.DefaultConfig()
		c.DataDir = "/home/ann/.local/share/tally"
		return c
	}
	tests := []struct {
		name string
		env  map[string]string
		args []string // nil: just serve
		want func(*app.Config)
	}{
		{"defaults", home, nil, func(*app.Config) {}},
		{"XDG_DATA_HOME", with("XDG_DATA_HOME", "/xdg"), nil, func(c *app.Config) { c.DataDir = "/xdg/tally" }},
		{"relative XDG_DATA_HOME is ignored", with("XDG_DATA_HOME", "rel"), nil, func(*app.Config) {}},
		{
			"every setting from TALLY_*",
			with("TALLY_DATA_DIR", "/srv/tally", "TALLY_ADDR", "0.0.0.0:9000", "TALLY_NATS_LISTEN", "127.0.0.1:4222",
				"TALLY_NO_SYNC_ALWAYS", "true", "TALLY_DATABASE_URL", "postgres://db/t", "TALLY_ROLES", "projector",
				"TALLY_LOG_LEVEL", "debug", "TALLY_LOG_FORMAT", "JSON"),
			nil,
			func(c *app.Config) {
				c.DataDir, c.Addr, c.NATSListen, c.NoSyncAlways, c.DatabaseURL = "/srv/tally", "0.0.0.0:9000", "127.0.0.1:4222", true, "postgres://db/t"
				c.Roles, c.LogLevel, c.LogFormat = app.Roles{app.RoleProjector}, slog.LevelDebug, app.LogJSON
			},
		},
		{"NATS_URL and DATABASE_URL", with("NATS_URL", "nats://n:4222", "DATABASE_URL", "postgres://db/t"), nil,
			func(c *app.Config) { c.NATSURL, c.DatabaseURL = "nats://n:4222", "postgres://db/t" }},
		{"TALLY_ names win over the plain ones", with("NATS_URL", "nats://plain:4222", "TALLY_NATS_URL", "nats://tally:4222",
			"DATABASE_URL", "postgres://plain/t", "TALLY_DATABASE_URL", "postgres://tally/t"), nil,
			func(c *app.Config) { c.NATSURL, c.DatabaseURL = "nats://tally:4222", "postgres://tally/t" }},
		{"an empty variable counts as unset", with("TALLY_ADDR", "", "DATABASE_URL", ""), nil, func(*app.Config) {}},
		{
			"flags win over the environment",
			with("TALLY_ADDR", "0.0.0.0:9000", "NATS_URL", "nats://env:4222", "TALLY_NO_SYNC_ALWAYS", "true",
				"TALLY_LOG_LEVEL", "error", "TALLY_ROLES", "gateway"),
			[]string{"serve", "--addr", "127.0.0.1:0", "--nats-url=nats://flag:4222", "--no-sync-always=false", "--log-level", "warn", "--roles", "all"},
			func(c *app.Config) { c.Addr, c.NATSURL, c.LogLevel = "127.0.0.1:0", "nats://flag:4222", slog.LevelWarn }},
		{"global flags before the command", home, []string{"--log-format", "json", "serve"},
			func(c *app.Config) { c.LogFormat = app.LogJSON }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.args
			if args == nil {
				args = []string{"serve"}
			}
			got, _, _, err := execute(t, tt.env, args...)
			require.NoError(t, err)
			want := defaults()
			tt.want(&want)
			require.Equal(t, want, got)
		})
	}
}

func TestServeConfigErrorsNameFlagAndVariable(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want []string
	}{
		{"addr flag", nil, []string{"--addr", "nope"},
			[]string{"--addr", "TALLY_ADDR", `"nope" is not host:port`}},
		{"addr variable", map[string]string{"TALLY_ADDR": "127.0.0.1:99999"}, nil,
			[]string{"TALLY_ADDR", "--addr", `port "99999" is not a number from 0 to 65535`}},
		{"log level flag", nil, []string{"--log-level", "verbose"},
			[]string{"--log-level", "TALLY_LOG_LEVEL", `unknown log level "verbose": use debug, info, warn or error`}},
		{"log level variable", map[string]string{"TALLY_LOG_LEVEL": "verbose"}, nil,
			[]string{"TALLY_LOG_LEVEL", "--log-level", "verbose"}},
		{"log format", map[string]string{"TALLY_LOG_FORMAT": "xml"}, nil,
			[]string{"TALLY_LOG_FORMAT", "--log-format", `unknown log format "xml": use text or json`}},
		{"bool variable", map[string]string{"TALLY_NO_SYNC_ALWAYS": "maybe"}, nil,
			[]string{"TALLY_NO_SYNC_ALWAYS", "--no-sync-always", "maybe"}},
		{"roles", nil, []string{"--roles", "janitor"},
			[]string{"--roles", "TALLY_ROLES", `unknown role "janitor"`}},
		{"database url variable, password not echoed", map[string]string{"DATABASE_URL": "postgres://u:hunter2@db:notaport/t"}, nil,
			[]string{"DATABASE_URL", "--database-url"}},
		{"database url flag, password not echoed", nil, []string{"--database-url", "postgres://u:hunter2@db:notaport/t"},
			[]string{"--database-url", "TALLY_DATABASE_URL, DATABASE_URL"}},
		{"nats url, password not echoed", map[string]string{"NATS_URL": "http://u:hunter2@n:4222"}, nil,
			[]string{"NATS_URL", "--nats-url", `scheme "http"`}},
		{"every bad variable at once", map[string]string{"TALLY_ADDR": "x", "TALLY_ROLES": "y"}, nil,
			[]string{"TALLY_ADDR", "TALLY_ROLES"}},
		{"listen with external NATS", map[string]string{"NATS_URL": "nats://n:4222"}, []string{"--nats-listen", "127.0.0.1:4222"},
			[]string{"nats-listen is for the embedded NATS server, but nats-url names an external one"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{"HOME": "/home/ann"}
			for k, v := range tt.env {
				env[k] = v
			}
			_, _, _, err := execute(t, env, append([]string{"serve"}, tt.args...)...)
			require.Error(t, err)
			for _, w := range tt.want {
				require.ErrorContains(t, err, w)
			}
			require.NotContains(t, err.Error(), "hunter2")
		})
	}
}

func TestLoggerFollowsConfig(t *testing.T) {
	_, _, stderr, err := execute(t, map[string]string{"HOME": "/h", "TALLY_LOG_LEVEL": "debug", "TALLY_LOG_FORMAT": "json"}, "serve")
	require.NoError(t, err)
	require.Contains(t, stderr, `"msg":"serve called"`)

	_, _, stderr, err = execute(t, map[string]string{"HOME": "/h"}, "serve")
	require.NoError(t, err)
	require.Empty(t, stderr, "debug is below the default level")
}

func TestServeHelpDocumentsEveryOption(t *testing.T) {
	_, stdout, _, err := execute(t, map[string]string{"HOME": "/home/ann"}, "serve", "--help")
	require.NoError(t, err)
	for _, want := range []string{
		"--data-dir", "[env TALLY_DATA_DIR]", `(default "/home/ann/.local/share/tally")`, "$XDG_DATA_HOME/tally",
		"--addr", "[env TALLY_ADDR]", `(default "127.0.0.1:8080")`,
		"--nats-url", "[env TALLY_NATS_URL, NATS_URL]", "empty starts an embedded server",
		"--nats-listen", "[env TALLY_NATS_LISTEN]", "empty: in-process only",
		"--no-sync-always", "[env TALLY_NO_SYNC_ALWAYS]", "off by default",
		"--database-url", "[env TALLY_DATABASE_URL, DATABASE_URL]", "postgres://postgres@127.0.0.1:5432/postgres",
		"--roles", "[env TALLY_ROLES]", "(default all)",
		"--log-level", "[env TALLY_LOG_LEVEL]", "(default info)",
		"--log-format", "[env TALLY_LOG_FORMAT]", "(default text)",
	} {
		require.Contains(t, stdout, want)
	}
}

func TestVersion(t *testing.T) {
	_, stdout, _, err := execute(t, nil, "version")
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(stdout, "tally "), stdout)
	require.Contains(t, stdout, "go1.")
}
