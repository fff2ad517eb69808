package app

import (
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"strconv"
	"strings"
)

// masked replaces a secret wherever the configuration is printed.
const masked = "xxxxx"

// LogValue prints the configuration with secrets masked, so that it can be
// logged at start (slog.Any("config", cfg)).
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("data-dir", c.DataDir),
		slog.String("addr", c.Addr),
		slog.String("nats-url", maskNATSURL(c.NATSURL)),
		slog.String("nats-listen", c.NATSListen),
		slog.Bool("no-sync-always", c.NoSyncAlways),
		slog.Int("replicas", c.Replicas),
		slog.String("database-url", maskDatabaseURL(c.DatabaseURL)),
		slog.String("roles", c.Roles.String()),
		slog.String("log-level", c.LogLevel.String()),
		slog.String("log-format", string(c.LogFormat)),
	)
}

// String prints the configuration as name=value pairs, secrets masked.
func (c Config) String() string {
	var b strings.Builder
	for i, a := range c.LogValue().Group() {
		if i > 0 {
			b.WriteByte(' ')
		}
		v := a.Value.String()
		if v == "" || strings.ContainsAny(v, " \"=") {
			v = strconv.Quote(v)
		}
		fmt.Fprintf(&b, "%s=%s", a.Key, v)
	}
	return b.String()
}

// maskNATSURL masks the password of each server URL, and a user with no
// password too: in nats://TOKEN@host the user part is a token.
func maskNATSURL(s string) string {
	if s == "" {
		return ""
	}
	parts := strings.Split(s, ",")
	for i, p := range parts {
		parts[i] = maskURL(strings.TrimSpace(p), true)
	}
	return strings.Join(parts, ",")
}

// kvPassword finds password and sslpassword in a keyword/value connection
// string, single-quoted (with backslash escapes) or bare.
var kvPassword = regexp.MustCompile(`((?:^|\s)(?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*'|\S*)`)

// maskDatabaseURL masks the password of a PostgreSQL URL or keyword/value
// connection string. The user name stays: it is not a secret and tells an
// operator which role Tally connects as.
func maskDatabaseURL(s string) string {
	if s == "" {
		return ""
	}
	if strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://") {
		return maskURL(s, false)
	}
	return kvPassword.ReplaceAllString(s, "${1}"+masked)
}

// maskURL masks the password in u's user info and in password or
// sslpassword query parameters. When userIsSecret, a lone user is masked
// too. A bare host:port is read as a nats:// URL.
func maskURL(s string, userIsSecret bool) string {
	withScheme := s
	if !strings.Contains(s, "://") {
		withScheme = "nats://" + s
	}
	out := maskParsed(withScheme, userIsSecret)
	if withScheme != s {
		out = strings.TrimPrefix(out, "nats://")
	}
	return out
}

func maskParsed(s string, userIsSecret bool) string {
	u, err := url.Parse(s)
	if err != nil {
		// Go's URL parser refuses some forms drivers accept, such as
		// postgres://h1:5432,h2:5432/db: mask all the user info.
		scheme, rest, _ := strings.Cut(s, "://")
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			return scheme + "://" + masked + rest[at:]
		}
		return s
	}
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), masked)
		} else if userIsSecret {
			u.User = url.User(masked)
		}
	}
	if q := u.Query(); q.Has("password") || q.Has("sslpassword") {
		for _, k := range []string{"password", "sslpassword"} {
			if q.Has(k) {
				q.Set(k, masked)
			}
		}
		u.RawQuery = q.Encode()
	}
	return u.String()
}
