package storage

import (
	"context"
	"errors"
	"fmt"
	"net/url"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// EnsureDatabase creates database name on the server at url when it does not
// exist yet, and returns url pointed at it. Tally keeps its tables in a
// database of its own rather than in the server's maintenance database.
func EnsureDatabase(ctx context.Context, serverURL, name string) (string, error) {
	cfg, err := pgx.ParseConfig(serverURL)
	if err != nil {
		return "", fmt.Errorf("parse database URL: %w", err)
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return "", fmt.Errorf("connect to PostgreSQL at %s: %w", where(cfg.Config), err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		return "", fmt.Errorf("look for database %q at %s: %w", name, where(cfg.Config), err)
	}
	if !exists {
		_, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
		var pgErr *pgconn.PgError
		// Another process may have created it meanwhile.
		if err != nil && !(errors.As(err, &pgErr) && pgErr.Code == "42P04") {
			return "", fmt.Errorf("create database %q at %s: %w", name, where(cfg.Config), err)
		}
	}
	return withDatabase(serverURL, name)
}

// withDatabase returns rawURL with its database replaced by name. Only URL
// forms (postgres://...) are supported; keyword/value strings are returned
// with dbname appended, which libpq and pgx read as the last one winning.
func withDatabase(rawURL, name string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return rawURL + " dbname=" + name, nil
	}
	u.Path = "/" + name
	return u.String(), nil
}
