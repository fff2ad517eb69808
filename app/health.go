package app

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// healthTimeout bounds one round of dependency checks: a probe that hangs
// is itself a failure, and a load balancer must get an answer.
const healthTimeout = 2 * time.Second

// dependency is something Tally cannot serve without.
type dependency struct {
	name  string
	check func(context.Context) error
}

// health checks the dependencies, answers /healthz and keeps
// tally_dependency_up current.
type health struct {
	deps    []dependency
	timeout time.Duration
	up      *prometheus.GaugeVec
	log     *slog.Logger

	mu   sync.Mutex
	last map[string]bool // to log changes only, not every probe
}

func newHealth(reg prometheus.Registerer, log *slog.Logger, deps ...dependency) *health {
	h := &health{
		deps:    deps,
		timeout: healthTimeout,
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tally_dependency_up",
			Help: "1 when the dependency answered its last health check, 0 when it did not.",
		}, []string{"dependency"}),
		log:  log,
		last: map[string]bool{},
	}
	reg.MustRegister(h.up)
	for _, d := range deps {
		h.up.WithLabelValues(d.name).Set(0)
		h.last[d.name] = true // so the first failure is logged
	}
	return h
}

// healthReport is the /healthz body.
type healthReport struct {
	// Status is "ok" when every dependency is, else "unavailable".
	Status       string                      `json:"status"`
	Dependencies map[string]dependencyReport `json:"dependencies"`
}

type dependencyReport struct {
	// Status is "ok" or "error".
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
	// Took is how long the check took, e.g. "1.2ms".
	Took string `json:"took"`
}

func (r healthReport) ok() bool { return r.Status == "ok" }

// check probes every dependency at once and records the outcome.
func (h *health) check(ctx context.Context) healthReport {
	cctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	errs := make([]error, len(h.deps))
	took := make([]time.Duration, len(h.deps))
	var wg sync.WaitGroup
	for i, d := range h.deps {
		wg.Go(func() {
			began := time.Now()
			errs[i] = d.check(cctx)
			took[i] = time.Since(began)
		})
	}
	wg.Wait()

	rep := healthReport{Status: "ok", Dependencies: make(map[string]dependencyReport, len(h.deps))}
	for i, d := range h.deps {
		dr := dependencyReport{Status: "ok", Took: took[i].Round(10 * time.Microsecond).String()}
		if errs[i] != nil {
			dr.Status, dr.Error = "error", errs[i].Error()
			rep.Status = "unavailable"
		}
		rep.Dependencies[d.name] = dr
		// A caller that went away says nothing about the dependency.
		if ctx.Err() == nil {
			h.record(ctx, d.name, errs[i])
		}
	}
	return rep
}

func (h *health) record(ctx context.Context, name string, err error) {
	up := err == nil
	v := 0.0
	if up {
		v = 1
	}
	h.up.WithLabelValues(name).Set(v)
	h.mu.Lock()
	changed := h.last[name] != up
	h.last[name] = up
	h.mu.Unlock()
	switch {
	case changed && up:
		h.log.InfoContext(ctx, "dependency is up again", slog.String("dependency", name))
	case changed:
		h.log.WarnContext(ctx, "dependency is down", slog.String("dependency", name), slog.Any("err", err))
	}
}

// ServeHTTP answers GET /healthz: 200 when every dependency is ok, 503
// otherwise, with the report as JSON either way.
func (h *health) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rep := h.check(r.Context())
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if rep.ok() {
		w.WriteHeader(http.StatusOK)
	} else {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(rep)
}
