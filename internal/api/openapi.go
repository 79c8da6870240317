package api

import (
	_ "embed"
	"net/http"
)

// openAPIDocument is the OpenAPI 3 description of every route in the route
// table. TestOpenAPIMatchesRoutes fails when the two disagree.
//
//go:embed openapi.json
var openAPIDocument []byte

// OpenAPI returns the embedded OpenAPI 3 document of the API, as JSON.
func OpenAPI() []byte {
	return append([]byte(nil), openAPIDocument...)
}

// openAPI handles GET /api/v1/openapi.json.
func (s *server) openAPI(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write(openAPIDocument)
	return nil
}
