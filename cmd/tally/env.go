package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/pflag"
)

// Every flag can also be set from the environment: TALLY_ and the flag's name
// in upper case with '_' for '-' (--nats-listen: TALLY_NATS_LISTEN). A few
// flags also read a well-known name after that (NATS_URL, DATABASE_URL). A
// flag on the command line wins over the environment, which wins over the
// default; an empty variable counts as unset.

const (
	envPrefix = "TALLY_"
	// envAnnotation holds a flag's variables, in order of precedence.
	envAnnotation = "tally_env"
)

// envAliases are the un-prefixed variables a flag also reads.
var envAliases = map[string][]string{
	"nats-url":     {"NATS_URL"},
	"database-url": {"DATABASE_URL"},
}

// declareEnv records each flag's variables and names them in its usage, so
// that --help documents them.
func declareEnv(fs *pflag.FlagSet) {
	fs.VisitAll(func(f *pflag.Flag) {
		if _, done := f.Annotations[envAnnotation]; done {
			return
		}
		names := append([]string{envPrefix + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))}, envAliases[f.Name]...)
		_ = fs.SetAnnotation(f.Name, envAnnotation, names)
		f.Usage += " [env " + strings.Join(names, ", ") + "]"
	})
}

// applyEnv sets each flag not given on the command line from the first of
// its variables that is set, and reports every bad value at once.
func applyEnv(fs *pflag.FlagSet, lookup func(string) (string, bool)) error {
	var errs []error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed {
			return
		}
		for _, name := range f.Annotations[envAnnotation] {
			if v, ok := lookup(name); ok && v != "" {
				// The cause quotes the value where that is safe; a URL's
				// password is never quoted.
				if err := f.Value.Set(v); err != nil {
					errs = append(errs, fmt.Errorf("invalid value in %s (flag --%s): %w", name, f.Name, err))
				}
				return
			}
		}
	})
	return errors.Join(errs...)
}

// flagError rewrites pflag's error for a bad value so that it names the
// variables too, and does not echo the value (a URL may hold a password;
// the cause quotes it where that is safe).
func flagError(err error) error {
	var bad *pflag.InvalidValueError
	if !errors.As(err, &bad) {
		return err
	}
	f := bad.GetFlag()
	env := ""
	if names := f.Annotations[envAnnotation]; len(names) > 0 {
		env = " (env " + strings.Join(names, ", ") + ")"
	}
	return fmt.Errorf("invalid value for --%s%s: %w", f.Name, env, errors.Unwrap(bad))
}

// checkedString is a string flag whose value must pass check.
type checkedString struct {
	p     *string
	check func(string) error
}

func (v checkedString) String() string {
	if v.p == nil {
		return ""
	}
	return *v.p
}

func (v checkedString) Set(s string) error {
	if err := v.check(s); err != nil {
		return err
	}
	*v.p = s
	return nil
}

func (v checkedString) Type() string { return "string" }
