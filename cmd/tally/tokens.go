package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tally-ledger/tally/app"
	"github.com/tally-ledger/tally/gateway/tokens"
	"github.com/tally-ledger/tally/migrations"
)

// dbOpts is the part of serve's configuration that says where PostgreSQL is.
type dbOpts struct {
	dataDir     string
	databaseURL string
}

func newTokensCmd(c *cli) *cobra.Command {
	o := &dbOpts{dataDir: defaultDataDir(c.lookupEnv)}
	cmd := &cobra.Command{
		Use:   "tokens",
		Short: "Make, list and revoke the bearer tokens the API accepts",
		Long: `Make, list and revoke the bearer tokens Tally's API accepts. These commands work
on PostgreSQL directly, found as tally serve finds it (--database-url,
DATABASE_URL, else the local server or the private cluster of --data-dir), so
they need the database's credentials, not a token.

Roles: viewer (ledger reads), ingester (pushes and uploads), auditor (reads,
including the audit log), operator (projection admin, every tenant), admin
(everything, including tokens). A token is scoped to one tenant (--tenant) or,
without --tenant, to every tenant.`,
		Args: cobra.NoArgs,
	}
	pf := cmd.PersistentFlags()
	pf.SortFlags = false
	addDatabaseFlags(pf, &o.dataDir, &o.databaseURL)
	declareEnv(pf)
	cmd.AddCommand(newTokensCreateCmd(c, o), newTokensListCmd(c, o), newTokensRevokeCmd(c, o))
	return cmd
}

// open opens the database, migrated (the tokens table may be new).
func (o *dbOpts) open(ctx context.Context, c *cli) (*tokens.Store, func(), error) {
	pool, closeDB, err := openDatabase(ctx, c.logger, o.dataDir, o.databaseURL)
	if err != nil {
		return nil, nil, err
	}
	if err := migrations.Up(ctx, pool); err != nil {
		closeDB()
		return nil, nil, fmt.Errorf("migrate PostgreSQL: %w", err)
	}
	return tokens.NewStore(pool), closeDB, nil
}

func newTokensCreateCmd(c *cli, o *dbOpts) *cobra.Command {
	var spec tokens.Spec
	var role, kind string
	cmd := &cobra.Command{
		Use:   "create --name NAME --role ROLE [--tenant TENANT]",
		Short: "Make a token and print its secret, once",
		Long: `Make a token and print its secret on stdout, alone on its line, once: Tally keeps
only its SHA-256 and cannot show it again. Store it in a secret manager.

Example:
  TOKEN=$(tally tokens create --name billing-pipeline --role ingester --tenant acme)`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			spec.Role, spec.Kind = tokens.Role(role), tokens.Kind(kind)
			if err := spec.Validate(); err != nil {
				return err
			}
			st, closeDB, err := o.open(cmd.Context(), c)
			if err != nil {
				return err
			}
			defer closeDB()
			t, secret, err := st.Create(cmd.Context(), spec)
			if err != nil {
				return err
			}
			fmt.Fprintln(c.stdout, secret)
			fmt.Fprintf(c.stderr, "made token %s (%s, role %s, %s); the secret above is shown only this once\n",
				t.ID, t.Name, t.Role, tenantText(t))
			return nil
		},
	}
	fs := cmd.Flags()
	fs.SortFlags = false
	fs.StringVar(&spec.Name, "name", "", "`name` of the service or person using the token; events it causes name it as their actor (required)")
	fs.StringVar(&role, "role", "", "`role`: viewer, ingester, auditor, operator or admin (required)")
	fs.StringVar(&spec.Tenant, "tenant", "", "`tenant` the token is limited to; empty: every tenant")
	fs.StringVar(&kind, "kind", "", "`kind` of actor: user or service; default service for ingesters, user for the other roles")
	return cmd
}

func tenantText(t tokens.Token) string {
	if t.AllTenants() {
		return "every tenant"
	}
	return "tenant " + t.Tenant
}

// tokenJSON is a token as --output json prints it.
type tokenJSON struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Tenant    *string    `json:"tenant"`
	Role      string     `json:"role"`
	Kind      string     `json:"kind"`
	CreatedAt time.Time  `json:"created_at"`
	RevokedAt *time.Time `json:"revoked_at"`
}

func newTokensListCmd(c *cli, o *dbOpts) *cobra.Command {
	output := "table"
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List every token (never its secret), revoked ones too",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return fmt.Errorf("--output %q: use table or json", output)
			}
			st, closeDB, err := o.open(cmd.Context(), c)
			if err != nil {
				return err
			}
			defer closeDB()
			list, err := st.List(cmd.Context())
			if err != nil {
				return err
			}
			if output == "json" {
				return writeTokensJSON(c.stdout, list)
			}
			return writeTokensTable(c.stdout, list)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", output, "output `format`: table or json")
	return cmd
}

func writeTokensJSON(w io.Writer, list []tokens.Token) error {
	out := make([]tokenJSON, len(list))
	for i, t := range list {
		j := tokenJSON{ID: t.ID, Name: t.Name, Role: string(t.Role), Kind: string(t.Kind), CreatedAt: t.CreatedAt.UTC()}
		if !t.AllTenants() {
			j.Tenant = &t.Tenant
		}
		if t.Revoked() {
			r := t.RevokedAt.UTC()
			j.RevokedAt = &r
		}
		out[i] = j
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

func writeTokensTable(w io.Writer, list []tokens.Token) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tROLE\tTENANT\tKIND\tCREATED\tREVOKED")
	for _, t := range list {
		tenant, revoked := t.Tenant, "-"
		if t.AllTenants() {
			tenant = "*"
		}
		if t.Revoked() {
			revoked = t.RevokedAt.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Name, t.Role, tenant, t.Kind,
			t.CreatedAt.UTC().Format(time.RFC3339), revoked)
	}
	return tw.Flush()
}

func newTokensRevokeCmd(c *cli, o *dbOpts) *cobra.Command {
	return &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke a token: the API refuses it from now on",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, closeDB, err := o.open(cmd.Context(), c)
			if err != nil {
				return err
			}
			defer closeDB()
			t, err := st.Revoke(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(c.stdout, "revoked token %s (%s, role %s, %s) at %s\n", t.ID, t.Name, t.Role, tenantText(t),
				t.RevokedAt.UTC().Format(time.RFC3339))
			return nil
		},
	}
}

// clientAuth is how a client command finds its token: --token (TALLY_TOKEN),
// else the admin token tally serve wrote to --data-dir on this machine.
type clientAuth struct {
	token   string
	dataDir string
}

func (a *clientAuth) flags(c *cli, cmd *cobra.Command) {
	a.dataDir = defaultDataDir(c.lookupEnv)
	fs := cmd.Flags()
	fs.StringVar(&a.token, "token", "", "bearer `token` to call Tally with; default: <data-dir>/admin.token; prefer the variable: flags show in ps")
	fs.StringVar(&a.dataDir, "data-dir", a.dataDir, "tally serve's `directory`, whose admin.token is used when no token is given")
}

// resolve returns the token to send.
func (a *clientAuth) resolve() (string, error) {
	if t := strings.TrimSpace(a.token); t != "" {
		return t, nil
	}
	if a.dataDir == "" {
		return "", errors.New("no token: pass --token or set TALLY_TOKEN (tally tokens create makes one)")
	}
	path := app.AdminTokenPath(a.dataDir)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("no token: pass --token or set TALLY_TOKEN (tally tokens create makes one); there is no %s, which tally serve writes on its machine", path)
	}
	if err != nil {
		return "", fmt.Errorf("no token: pass --token or set TALLY_TOKEN; reading the admin token failed: %w", err)
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", fmt.Errorf("no token: %s is empty; pass --token or set TALLY_TOKEN", path)
	}
	return t, nil
}

// bearerTransport sends "Authorization: Bearer token" with every request.
type bearerTransport struct {
	token string
	next  http.RoundTripper
}

func (b bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(r)
}
