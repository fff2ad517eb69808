package storage

import (
	"fmt"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
)

// closedPort returns a port on 127.0.0.1 where nothing listens, so connecting fails at once.
func closedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())
	return port
}

func TestOpenLocal(t *testing.T) {
	pool, err := Open(t.Context(), DefaultLocalURL)
	require.NoError(t, err, "these tests need PostgreSQL at %s", DefaultLocalURL)
	defer pool.Close()

	var app string
	require.NoError(t, pool.QueryRow(t.Context(), "SELECT current_setting('application_name')").Scan(&app))
	require.Equal(t, "tally", app)
	require.Equal(t, int32(max(4, 2*runtime.NumCPU())), pool.Config().MaxConns)
}

func TestOpenErrors(t *testing.T) {
	port := closedPort(t)
	tests := []struct {
		name string
		url  string
		want []string // substrings of the error
	}{
		{
			name: "nothing listens",
			url:  fmt.Sprintf("postgres://tally:s3cret@127.0.0.1:%d/ledger", port),
			want: []string{fmt.Sprintf("connect to PostgreSQL at 127.0.0.1:%d/ledger", port)},
		},
		{
			name: "no such database",
			url:  "postgres://postgres:s3cret@127.0.0.1:5432/tally_no_such_db",
			want: []string{"127.0.0.1:5432/tally_no_such_db", `database "tally_no_such_db" does not exist`},
		},
		{
			name: "bad port",
			url:  "postgres://tally:s3cret@127.0.0.1:notaport/ledger",
			want: []string{"parse database URL", "invalid port"},
		},
		{
			name: "keyword form",
			url:  fmt.Sprintf("host=127.0.0.1 port=%d dbname=ledger user=tally password=s3cret", port),
			want: []string{fmt.Sprintf("127.0.0.1:%d/ledger", port)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pool, err := Open(t.Context(), tt.url)
			require.Error(t, err)
			require.Nil(t, pool)
			for _, w := range tt.want {
				require.ErrorContains(t, err, w)
			}
			require.NotContains(t, err.Error(), "s3cret", "an error must never show the password")
		})
	}
}

func TestTuneKeepsWhatTheURLSets(t *testing.T) {
	tests := []struct {
		name  string
		url   string
		check func(t *testing.T, c *pgxpool.Config)
	}{
		{
			name: "defaults",
			url:  "postgres://u@h/db",
			check: func(t *testing.T, c *pgxpool.Config) {
				require.Equal(t, int32(max(4, 2*runtime.NumCPU())), c.MaxConns)
				require.Equal(t, maxConnIdleTime, c.MaxConnIdleTime)
				require.Equal(t, connectTimeout, c.ConnConfig.ConnectTimeout)
				require.Equal(t, "tally", c.ConnConfig.RuntimeParams["application_name"])
			},
		},
		{
			name: "URL pool settings win",
			url:  "postgres://u@h/db?pool_max_conns=3&pool_max_conn_idle_time=1s&connect_timeout=9&application_name=mine",
			check: func(t *testing.T, c *pgxpool.Config) {
				require.Equal(t, int32(3), c.MaxConns)
				require.Equal(t, time.Second, c.MaxConnIdleTime)
				require.Equal(t, 9*time.Second, c.ConnConfig.ConnectTimeout)
				require.Equal(t, "mine", c.ConnConfig.RuntimeParams["application_name"])
			},
		},
		{
			name: "keyword form",
			url:  "host=h user=u pool_max_conns=2",
			check: func(t *testing.T, c *pgxpool.Config) {
				require.Equal(t, int32(2), c.MaxConns)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := pgxpool.ParseConfig(tt.url)
			require.NoError(t, err)
			tune(c, tt.url)
			tt.check(t, c)
		})
	}
}

func TestWhere(t *testing.T) {
	tests := []struct {
		url  string
		want string
	}{
		{"postgres://u:pw@db.example.com:6432/ledger", "db.example.com:6432/ledger"},
		{"postgres://u@[::1]:5433/x", "[::1]:5433/x"},
		{"host=/var/run/postgresql user=u dbname=d", "/var/run/postgresql/.s.PGSQL.5432/d"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			c, err := pgxpool.ParseConfig(tt.url)
			require.NoError(t, err)
			require.Equal(t, tt.want, where(c.ConnConfig.Config))
		})
	}
}
