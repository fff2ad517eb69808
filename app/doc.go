// Package app owns assembling a running Tally from its Config: it starts or
// connects to NATS and opens the event store, finds or starts PostgreSQL and
// migrates it, serves health and metrics over HTTP, and shuts all of it down
// in order so that nothing acknowledged is lost.
//
// It is the top of the dependency graph below cmd/tally: eventstore, storage,
// read models, services and the gateway must never import it. They receive
// what they need (a *eventstore.Store, a *pgxpool.Pool, an *http.ServeMux, a
// prometheus.Registerer) from an App instead.
package app
