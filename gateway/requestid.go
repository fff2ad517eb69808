package gateway

import (
	"context"
	"net/http"

	"github.com/google/uuid"
)

// HeaderRequestID carries the request id both ways: a client may send one
// (so its logs and ours share it); otherwise the gateway makes one. Every
// response carries it.
const HeaderRequestID = "X-Request-Id"

type requestIDKey struct{}

// RequestID is the request id the gateway gave ctx's request, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// withRequestID gives every request an id, in its context and in the
// response headers (gRPC clients see it as response metadata).
func withRequestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get(HeaderRequestID)
		if !validRequestID(id) {
			id = uuid.Must(uuid.NewV7()).String()
		}
		w.Header().Set(HeaderRequestID, id)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), requestIDKey{}, id)))
	})
}

// validRequestID accepts short printable ASCII ids: they go into logs and
// events verbatim.
func validRequestID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x21 || id[i] > 0x7e {
			return false
		}
	}
	return true
}
