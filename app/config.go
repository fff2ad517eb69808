package app

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// Config is everything one Tally process is configured with. cmd/tally fills
// it from flags and TALLY_* variables; errors and logs name each setting as
// its flag is named (addr, nats-url, ...). Start from DefaultConfig.
type Config struct {
	// DataDir holds what Tally keeps on local disk: the embedded NATS store
	// (DataDir/nats) and a private PostgreSQL cluster (DataDir/postgres),
	// when those are used. Required.
	DataDir string
	// Addr is the HTTP server's host:port. Port 0 picks a free port; App.Addr
	// says which.
	Addr string
	// NATSURL names an external NATS server or cluster (comma-separated
	// URLs). Empty starts an embedded server with its store in DataDir/nats.
	NATSURL string
	// NATSListen is the embedded server's host:port for other processes
	// (tally ingest, a second tally, the nats CLI). Empty keeps the server
	// in-process only. Port 0 picks a free port.
	NATSListen string
	// NoSyncAlways turns off the embedded server's fsync of every write. The
	// default (false) is durable: an acknowledged append is on disk.
	NoSyncAlways bool
	// Replicas of the event stream when Tally creates it: 1 for the
	// embedded server, 3 on a JetStream cluster.
	Replicas int
	// DatabaseURL is the PostgreSQL to use. Empty uses the local server
	// (storage.DefaultLocalURL) or, where none answers, a private cluster in
	// DataDir/postgres.
	DatabaseURL string
	// Roles this process plays.
	Roles Roles
	// LogLevel and LogFormat shape the process's slog logger.
	LogLevel  slog.Level
	LogFormat LogFormat
}

// DefaultAddr is where Tally serves HTTP unless told otherwise: loopback only,
// so that a fresh install exposes nothing.
const DefaultAddr = "127.0.0.1:8080"

// DefaultConfig is the configuration with every default but DataDir, whose
// default depends on the user's environment (see cmd/tally).
func DefaultConfig() Config {
	return Config{
		Addr:      DefaultAddr,
		Replicas:  1,
		Roles:     AllRoles(),
		LogLevel:  slog.LevelInfo,
		LogFormat: LogText,
	}
}

// Validate reports every invalid setting at once, each named like its flag.
func (c Config) Validate() error {
	var errs []error
	bad := func(setting string, err error) {
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", setting, err))
		}
	}
	if c.DataDir == "" {
		bad("data-dir", errors.New("is required"))
	}
	bad("addr", CheckAddr(c.Addr))
	if c.NATSListen != "" {
		bad("nats-listen", CheckAddr(c.NATSListen))
	}
	bad("nats-url", CheckNATSURL(c.NATSURL))
	bad("database-url", CheckDatabaseURL(c.DatabaseURL))
	if c.Replicas < 1 || c.Replicas > 5 {
		bad("replicas", fmt.Errorf("%d: use 1 to 5 (JetStream's limit), 3 on a cluster", c.Replicas))
	}
	if c.NATSURL == "" && c.Replicas > 1 {
		errs = append(errs, fmt.Errorf("replicas: %d needs a NATS cluster (nats-url); the embedded server keeps 1", c.Replicas))
	}
	if len(c.Roles) == 0 {
		bad("roles", errors.New("is empty: give all, or some of "+roleList()))
	}
	for _, r := range c.Roles {
		if !slices.Contains(knownRoles, r) {
			bad("roles", fmt.Errorf("unknown role %q: use all, or some of %s", r, roleList()))
		}
	}
	var f LogFormat
	bad("log-format", f.UnmarshalText([]byte(c.LogFormat)))
	if c.NATSURL != "" && c.NATSListen != "" {
		errs = append(errs, errors.New("nats-listen is for the embedded NATS server, but nats-url names an external one: set only one of them"))
	}
	return errors.Join(errs...)
}

// CheckAddr reports whether s is a host:port to listen on: a numeric port
// (0 picks a free one) and an optional host (empty listens on every
// interface).
func CheckAddr(s string) error {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%q is not host:port (for example 127.0.0.1:8080): %w", s, unwrapAddrErr(err))
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%q: port %q is not a number from 0 to 65535", s, port)
	}
	return nil
}

// unwrapAddrErr drops net.AddrError's copy of the address, already quoted.
func unwrapAddrErr(err error) error {
	var ae *net.AddrError
	if errors.As(err, &ae) {
		return errors.New(ae.Err)
	}
	return err
}

// CheckNATSURL reports whether s is empty or a comma-separated list of NATS
// server URLs (nats://, tls://, ws:// or wss://; a bare host:port means
// nats://). Errors never quote a password.
func CheckNATSURL(s string) error {
	if s == "" {
		return nil
	}
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			return errors.New("empty server in the comma-separated list")
		}
		if !strings.Contains(part, "://") {
			part = "nats://" + part
		}
		u, err := url.Parse(part)
		if err != nil {
			return fmt.Errorf("server %s is not a URL", maskNATSURL(part))
		}
		switch u.Scheme {
		case "nats", "tls", "ws", "wss":
		default:
			return fmt.Errorf("server %s: scheme %q is not nats, tls, ws or wss", maskNATSURL(part), u.Scheme)
		}
		if u.Hostname() == "" {
			return fmt.Errorf("server %s has no host", maskNATSURL(part))
		}
	}
	return nil
}

// CheckDatabaseURL reports whether s is empty or a PostgreSQL connection
// string pgx accepts (URL or keyword/value). pgx masks the password in its
// errors.
func CheckDatabaseURL(s string) error {
	if s == "" {
		return nil
	}
	if _, err := pgconn.ParseConfig(s); err != nil {
		return err
	}
	return nil
}

// LogFormat is how log records are written: text (logfmt-like, for people)
// or json (for log pipelines).
type LogFormat string

// Log formats.
const (
	LogText LogFormat = "text"
	LogJSON LogFormat = "json"
)

// UnmarshalText accepts text or json, in any case.
func (f *LogFormat) UnmarshalText(b []byte) error {
	switch v := LogFormat(strings.ToLower(string(b))); v {
	case LogText, LogJSON:
		*f = v
		return nil
	}
	return fmt.Errorf("unknown log format %q: use text or json", b)
}

// MarshalText implements encoding.TextMarshaler.
func (f LogFormat) MarshalText() ([]byte, error) { return []byte(f), nil }

// Role is a part of Tally a process runs. One process runs all of them by
// default; scaled out, each process runs some.
type Role string

// Roles a process can play.
const (
	// RoleGateway serves the API (ingest, queries, exports, admin).
	RoleGateway Role = "gateway"
	// RoleProjector folds the event log into the read models.
	RoleProjector Role = "projector"
)

var knownRoles = []Role{RoleGateway, RoleProjector}

func roleList() string {
	s := make([]string, len(knownRoles))
	for i, r := range knownRoles {
		s[i] = string(r)
	}
	return strings.Join(s, ", ")
}

// Roles is a set of roles, written "all" or as a comma-separated list.
type Roles []Role

// AllRoles is every role: the all-in-one process.
func AllRoles() Roles { return slices.Clone(knownRoles) }

// Has reports whether r is among the roles.
func (rs Roles) Has(r Role) bool { return slices.Contains(rs, r) }

// UnmarshalText accepts "all" or a comma-separated list of known roles.
func (rs *Roles) UnmarshalText(b []byte) error {
	var out Roles
	for part := range strings.SplitSeq(string(b), ",") {
		part = strings.ToLower(strings.TrimSpace(part))
		switch {
		case part == "all":
			out = append(out, knownRoles...)
		case slices.Contains(knownRoles, Role(part)):
			out = append(out, Role(part))
		default:
			return fmt.Errorf("unknown role %q: use all, or some of %s", part, roleList())
		}
	}
	slices.Sort(out)
	*rs = slices.Compact(out)
	return nil
}

// MarshalText writes "all" for every role, else the comma-separated list.
func (rs Roles) MarshalText() ([]byte, error) { return []byte(rs.String()), nil }

func (rs Roles) String() string {
	all := true
	for _, r := range knownRoles {
		all = all && rs.Has(r)
	}
	if all {
		return "all"
	}
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = string(r)
	}
	return strings.Join(s, ",")
}
