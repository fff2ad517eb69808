package app_test

import (
	"bytes"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tally-ledger/tally/app"
)

func validConfig() app.Config {
	cfg := app.DefaultConfig()
	cfg.DataDir = "/var/lib/tally"
	return cfg
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		change  func(*app.Config)
		wantErr []string // substrings; none means valid
	}{
		{"defaults", func(*app.Config) {}, nil},
		{"every interface, free port", func(c *app.Config) { c.Addr = ":0" }, nil},
		{"external nats cluster", func(c *app.Config) { c.NATSURL = "nats://a:4222, tls://b:4222,c:4222" }, nil},
		{"keyword/value database", func(c *app.Config) { c.DatabaseURL = "host=db user=tally password=x dbname=tally" }, nil},
		{"no data dir", func(c *app.Config) { c.DataDir = "" }, []string{"data-dir: is required"}},
		{"addr without port", func(c *app.Config) { c.Addr = "localhost" }, []string{`addr: "localhost" is not host:port`, "missing port"}},
		{"addr port out of range", func(c *app.Config) { c.Addr = "127.0.0.1:70000" }, []string{`addr: "127.0.0.1:70000": port "70000" is not a number from 0 to 65535`}},
		{"named port", func(c *app.Config) { c.Addr = "127.0.0.1:http" }, []string{`port "http" is not a number`}},
		{"bad nats listen", func(c *app.Config) { c.NATSListen = "4222" }, []string{`nats-listen: "4222" is not host:port`}},
		{"nats scheme", func(c *app.Config) { c.NATSURL = "http://u:secret@h:4222" }, []string{`nats-url: server http://u:xxxxx@h:4222: scheme "http"`}},
		{"nats empty server", func(c *app.Config) { c.NATSURL = "nats://a:4222,," }, []string{"nats-url: empty server"}},
		{"database url", func(c *app.Config) { c.DatabaseURL = "postgres://u:secret@h:notaport/db" }, []string{"database-url: "}},
		{"no roles", func(c *app.Config) { c.Roles = nil }, []string{"roles: is empty"}},
		{"unknown role", func(c *app.Config) { c.Roles = app.Roles{"janitor"} }, []string{`roles: unknown role "janitor"`}},
		{"log format", func(c *app.Config) { c.LogFormat = "xml" }, []string{`log-format: unknown log format "xml": use text or json`}},
		{"listen with external nats", func(c *app.Config) { c.NATSURL, c.NATSListen = "nats://h:4222", "127.0.0.1:4222" },
			[]string{"nats-listen is for the embedded NATS server, but nats-url names an external one"}},
		{"three replicas on a cluster", func(c *app.Config) { c.NATSURL, c.Replicas = "nats://a:4222,b:4222,c:4222", 3 }, nil},
		{"zero replicas", func(c *app.Config) { c.Replicas = 0 }, []string{"replicas: 0: use 1 to 5"}},
		{"replicas on the embedded server", func(c *app.Config) { c.Replicas = 3 }, []string{"replicas: 3 needs a NATS cluster"}},
		{"every error at once", func(c *app.Config) { c.DataDir, c.Addr = "", "x" }, []string{"data-dir", "addr"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := validConfig()
			tt.change(&cfg)
			err := cfg.Validate()
			if tt.wantErr == nil {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			for _, want := range tt.wantErr {
				require.ErrorContains(t, err, want)
			}
			require.NotContains(t, err.Error(), "secret", "an error must never quote a password")
		})
	}
}

func TestConfigMasksSecrets(t *testing.T) {
	tests := []struct {
		name          string
		nats, db      string
		wantNATS      string
		wantDB        string
		secretsHidden []string
	}{
		{
			name: "none", wantNATS: `""`, wantDB: `""`,
		},
		{
			name:     "user and password",
			nats:     "nats://alice:natspw@n1:4222,nats://bob:natspw2@n2:4222",
			db:       "postgres://tally:dbpw@db:5432/tally?sslmode=require",
			wantNATS: "nats://alice:xxxxx@n1:4222,nats://bob:xxxxx@n2:4222",
			wantDB:   `"postgres://tally:xxxxx@db:5432/tally?sslmode=require"`,
		},
		{
			name:     "nats token, password in query",
			nats:     "nats://s3cr3ttoken@n1:4222",
			db:       "postgresql://tally@db/tally?password=dbpw&sslpassword=keypw",
			wantNATS: "nats://xxxxx@n1:4222",
			wantDB:   `"postgresql://tally@db/tally?password=xxxxx&sslpassword=xxxxx"`,
		},
		{
			name:     "bare host with token, keyword/value",
			nats:     "s3cr3ttoken@n1:4222",
			db:       "host=db user=tally password='it\\'s dbpw' sslpassword=keypw dbname=tally",
			wantNATS: "xxxxx@n1:4222",
			wantDB:   `"host=db user=tally password=xxxxx sslpassword=xxxxx dbname=tally"`,
		},
		{
			name:   "multi-host URL",
			db:     "postgres://tally:dbpw@h1:5432,h2:5432/tally",
			wantDB: "postgres://tally:xxxxx@h1:5432,h2:5432/tally", wantNATS: `""`,
		},
		{
			name:   "URL Go cannot parse",
			db:     "postgres://tally:db%pw@h1/tally",
			wantDB: "postgres://xxxxx@h1/tally", wantNATS: `""`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := validConfig()
			cfg.NATSURL, cfg.DatabaseURL = tt.nats, tt.db
			s := cfg.String()
			require.Contains(t, s, "nats-url="+tt.wantNATS)
			require.Contains(t, s, "database-url="+tt.wantDB)

			var logged bytes.Buffer
			slog.New(slog.NewJSONHandler(&logged, nil)).Info("start", "config", cfg)
			for _, out := range []string{s, logged.String()} {
				for _, secret := range []string{"natspw", "s3cr3ttoken", "dbpw", "db%pw", "keypw"} {
					require.NotContains(t, out, secret)
				}
			}
			require.Contains(t, logged.String(), `"data-dir":"/var/lib/tally"`)
		})
	}
}

func TestRolesText(t *testing.T) {
	var rs app.Roles
	require.NoError(t, rs.UnmarshalText([]byte("all")))
	require.Equal(t, app.AllRoles(), rs)
	require.Equal(t, "all", rs.String())

	require.NoError(t, rs.UnmarshalText([]byte(" Projector ")))
	require.Equal(t, app.Roles{app.RoleProjector}, rs)
	require.True(t, rs.Has(app.RoleProjector))
	require.False(t, rs.Has(app.RoleGateway))
	require.Equal(t, "projector", rs.String())

	require.NoError(t, rs.UnmarshalText([]byte("projector,gateway")))
	require.Equal(t, "all", rs.String())

	require.ErrorContains(t, rs.UnmarshalText([]byte("gateway,ingest")), `unknown role "ingest": use all, or some of gateway, projector`)
}
