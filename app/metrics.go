package app

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// newRegistry is the process's own registry (never the global one, so that
// no library registers behind our back), with the Go runtime, process and
// build metrics.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	b := Build()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tally_build_info",
			Help: "Always 1; the labels identify the running binary.",
			ConstLabels: prometheus.Labels{
				"version":   b.Version,
				"revision":  b.Revision,
				"goversion": b.GoVersion,
			},
		}, func() float64 { return 1 }),
	)
	return reg
}

// metricsHandler checks the dependencies before each scrape, so that
// tally_dependency_up is as fresh as the scrape even when nothing polls
// /healthz.
func metricsHandler(reg *prometheus.Registry, h *health) http.Handler {
	prom := promhttp.InstrumentMetricHandler(reg, promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.check(r.Context())
		prom.ServeHTTP(w, r)
	})
}
