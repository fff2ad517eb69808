// Package gateway owns Tally's Connect API surface: the services served over
// one HTTP handler as gRPC, gRPC-Web and Connect (JSON and binary), with gRPC
// health and reflection beside them. It authenticates every call of the
// Tally services with a bearer token, validates every request at the edge
// (naming the field that is wrong), turns requests into events or calls into
// the services that do, and maps every error to a Connect code in one place
// (connectError). Every refused request is recorded as a RequestRejected
// event on the system tenant.
//
// # Authentication and roles
//
// Every call of a Tally service carries "Authorization: Bearer tly_...", a
// token made by `tally tokens create` (package tokens; the table keeps only
// its SHA-256). Health and reflection need none. A token has one role and is
// scoped to one tenant, or to every tenant (operators, and the admin token
// tally serve writes to <data-dir>/admin.token on first start). A scoped
// token may only make requests whose tenant_id (an upload's
// header.tenant_id) is its tenant.
//
// Refusals, each recorded once as RequestRejected with the procedure, code,
// reason, claimed tenant and the token's id (never its secret):
//
//   - no Authorization header, not "Bearer", an unknown or malformed token,
//     a revoked token: Unauthenticated;
//   - a valid token whose role may not call the procedure, or that is scoped
//     to another tenant than the request names: PermissionDenied.
//
// The events a call appends name the token as their actor: its name, as a
// user or a service (tally tokens create --kind).
//
// The role matrix (TestRoleMatrixDocumented checks it against the code,
// TestSecurityMatrix against a running gateway):
//
//	procedure                            viewer  ingester  auditor  operator  admin
//	IngestService/UploadFocusFile        -       yes       -        -         yes
//	IngestService/RecordUsage            -       yes       -        -         yes
//	IngestService/RecordRemediation      -       yes       -        -         yes
//	IngestService/TagResource            -       yes       -        -         yes
//	IngestService/SetAllocationRule      -       yes       -        -         yes
//	IngestService/RetireAllocationRule   -       yes       -        -         yes
//	IngestService/RecordInvoice          -       yes       -        -         yes
//	IngestService/RecordFxRate           -       yes       -        -         yes
//	IngestService/SetBudget              -       yes       -        -         yes
//	LedgerService/GetCost                yes     -         yes      -         yes
//	LedgerService/GetTotals              yes     -         yes      -         yes
//	AuditService/ReplayEvents            -       -         yes      -         yes
//	AuditService/VerifyChain             -       -         yes      -         yes
//	AuditService/ListChanges             -       -         yes      -         yes
//	CloseService/GetClosePackage         yes     -         yes      -         yes
//	CloseService/ClosePeriod             -       -         -        -         yes
//	ExportService/ExportFocus            yes     -         yes      -         yes
//	ExportService/ExportClosePackage     yes     -         yes      -         yes
//	ExportService/ExportCompliancePack   -       -         yes      -         yes
//	SavingsService/ListSavings           yes     -         yes      -         yes
//	SavingsService/GetSavings            yes     -         yes      -         yes
//	SavingsService/GetSavingsEvidence    yes     -         yes      -         yes
//	AllocationService/GetAllocation      yes     -         yes      -         yes
//	AllocationService/GetUnallocated     yes     -         yes      -         yes
//	AllocationService/GetCoverage        yes     -         yes      -         yes
//	AllocationService/DryRunRule         yes     -         yes      -         yes
//
// In words: viewers read the ledger; ingesters push events and upload files;
// auditors read the ledger and the log itself (AuditService: replay, verify,
// the change log); operators run projection admin (status, rebuild)
// across tenants and read no tenant's cost or events; admins may do
// everything, including managing tokens and closing a period (a finance act
// with an approver, which no other role holds). The system tenant "_system"
// (rejected requests) can be replayed and verified only with a token for
// every tenant, since no token is scoped to it. Procedures to come take their
// permission from procedurePermissions in auth.go; one missing there is
// refused to everyone.
//
// It depends on eventstore and services/*; it never writes a read model's
// SQL (it calls that package's query functions) and never imports app or
// cmd/tally, which assemble it and mount it on their HTTP server. The tokens
// table's SQL is in package tokens.
package gateway
