// Package gateway owns Tally's Connect API surface: the services served over
// one HTTP handler as gRPC, gRPC-Web and Connect (JSON and binary), with gRPC
// health and reflection beside them. It validates every request at the edge
// (naming the field that is wrong), turns requests into events or calls into
// the services that do, and maps every error to a Connect code in one place
// (connectError). Every refused request is recorded as a RequestRejected
// event on the system tenant.
//
// It depends on eventstore and services/*; it never writes a read model's
// SQL (it calls that package's query functions) and never imports app or
// cmd/tally, which assemble it and mount it on their HTTP server.
package gateway
