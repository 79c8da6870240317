package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// openAPIDoc is the part of an OpenAPI 3 document that the tests read.
type openAPIDoc struct {
	OpenAPI string `json:"openapi"`
	Info    struct {
		Title   string `json:"title"`
		Version string `json:"version"`
	} `json:"info"`
	Paths      map[string]map[string]openAPIOperation `json:"paths"`
	Components struct {
		Schemas         map[string]json.RawMessage  `json:"schemas"`
		Parameters      map[string]openAPIParameter `json:"parameters"`
		Responses       map[string]json.RawMessage  `json:"responses"`
		SecuritySchemes map[string]json.RawMessage  `json:"securitySchemes"`
	} `json:"components"`
	Security []map[string][]string `json:"security"`
}

type openAPIOperation struct {
	OperationID string                     `json:"operationId"`
	Parameters  []openAPIParameter         `json:"parameters"`
	Responses   map[string]json.RawMessage `json:"responses"`
	Security    *[]map[string][]string     `json:"security"`
}

type openAPIParameter struct {
	Ref  string `json:"$ref"`
	Name string `json:"name"`
	In   string `json:"in"`
}

// openAPIMethods are the operation keys of a path item.
var openAPIMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

func parseOpenAPI(t *testing.T) openAPIDoc {
	t.Helper()
	var doc openAPIDoc
	if err := json.Unmarshal(OpenAPI(), &doc); err != nil {
		t.Fatalf("openapi.json is not valid JSON: %v", err)
	}
	return doc
}

// muxToOpenAPI turns a ServeMux pattern into an OpenAPI path template: a
// trailing wildcard {name...} becomes {name}.
func muxToOpenAPI(pattern string) string {
	return strings.ReplaceAll(pattern, "...}", "}")
}

func TestOpenAPIStructure(t *testing.T) {
	doc := parseOpenAPI(t)
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Errorf("openapi = %q, want a 3.x version", doc.OpenAPI)
	}
	if doc.Info.Title == "" || doc.Info.Version == "" {
		t.Errorf("info.title %q and info.version %q must not be empty", doc.Info.Title, doc.Info.Version)
	}
	if len(doc.Paths) == 0 || len(doc.Components.Schemas) == 0 {
		t.Errorf("got %d paths and %d schemas, want both non-empty", len(doc.Paths), len(doc.Components.Schemas))
	}
	for _, scheme := range []string{"apiKey", "bearer"} {
		if _, ok := doc.Components.SecuritySchemes[scheme]; !ok {
			t.Errorf("security scheme %s is missing", scheme)
		}
	}

	ids := make(map[string]string)
	for path, item := range doc.Paths {
		for method, op := range item {
			if !slices.Contains(openAPIMethods, method) {
				t.Errorf("%s has operation key %q, which is not an HTTP method", path, method)
				continue
			}
			where := strings.ToUpper(method) + " " + path
			if op.OperationID == "" {
				t.Errorf("%s has no operationId", where)
			} else if other, dup := ids[op.OperationID]; dup {
				t.Errorf("operationId %s is used by %s and %s", op.OperationID, other, where)
			}
			ids[op.OperationID] = where
			if len(op.Responses) == 0 {
				t.Errorf("%s has no responses", where)
			}
			checkPathParameters(t, doc, where, path, op)
		}
	}
}

var pathParam = regexp.MustCompile(`\{([^}]+)\}`)

// checkPathParameters checks that every {name} of the path is declared as
// a path parameter of the operation.
func checkPathParameters(t *testing.T, doc openAPIDoc, where, path string, op openAPIOperation) {
	t.Helper()
	declared := make(map[string]bool)
	for _, p := range op.Parameters {
		if name, ok := strings.CutPrefix(p.Ref, "#/components/parameters/"); ok {
			p = doc.Components.Parameters[name]
		}
		if p.In == "path" {
			declared[p.Name] = true
		}
	}
	for _, m := range pathParam.FindAllStringSubmatch(path, -1) {
		if !declared[m[1]] {
			t.Errorf("%s does not declare the path parameter %s", where, m[1])
		}
	}
}

func TestOpenAPIReferencesResolve(t *testing.T) {
	var raw any
	if err := json.Unmarshal(OpenAPI(), &raw); err != nil {
		t.Fatalf("openapi.json is not valid JSON: %v", err)
	}
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for key, child := range v {
				if ref, ok := child.(string); ok && key == "$ref" {
					if !resolves(raw, ref) {
						t.Errorf("$ref %s does not resolve", ref)
					}
				}
				walk(child)
			}
		case []any:
			for _, child := range v {
				walk(child)
			}
		}
	}
	walk(raw)
}

// resolves reports whether the local reference ref, such as
// "#/components/schemas/Sandbox", names a value in doc.
func resolves(doc any, ref string) bool {
	rest, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		return false
	}
	node := doc
	for part := range strings.SplitSeq(rest, "/") {
		obj, ok := node.(map[string]any)
		if !ok {
			return false
		}
		if node, ok = obj[part]; !ok {
			return false
		}
	}
	return true
}

// TestOpenAPIMatchesRoutes fails when a registered route is missing from
// the document or the document describes a route that is not registered.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	doc := parseOpenAPI(t)

	documented := make(map[string]bool)
	for path, item := range doc.Paths {
		for method := range item {
			documented[strings.ToUpper(method)+" "+path] = true
		}
	}
	registered := make(map[string]Route)
	for _, rt := range Routes() {
		registered[rt.Method+" "+muxToOpenAPI(rt.Pattern)] = rt
	}

	for key := range registered {
		if !documented[key] {
			t.Errorf("route %s is registered but not in openapi.json", key)
		}
	}
	for key := range documented {
		if _, ok := registered[key]; !ok {
			t.Errorf("openapi.json describes %s, which is not a registered route", key)
		}
	}

	// Public routes declare that they need no key, and only they do.
	for key, rt := range registered {
		method, path, _ := strings.Cut(key, " ")
		op, ok := doc.Paths[path][strings.ToLower(method)]
		if !ok {
			continue
		}
		open := op.Security != nil && len(*op.Security) == 0
		if open != rt.Public {
			t.Errorf("%s: security is empty = %v in openapi.json, want %v", key, open, rt.Public)
		}
	}
}

func TestOpenAPIServed(t *testing.T) {
	s := newStack(t, stackOptions{})
	resp := s.do("GET", "/api/v1/openapi.json", nil)
	resp.wantStatus(t, http.StatusOK)
	if ct := resp.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	if !bytes.Equal(resp.body, OpenAPI()) {
		t.Errorf("served document differs from the embedded one")
	}
}
