package api

import "net/http"

// readArchive streams the directory at ?path= as a tar archive whose entry
// names are relative to that directory.
func (s *server) readArchive(w http.ResponseWriter, r *http.Request) error {
	path, err := requiredQuery(r, "path")
	if err != nil {
		return err
	}
	files, err := s.sandboxFiles(r)
	if err != nil {
		return err
	}

	rc, err := files.ReadArchive(r.Context(), path)
	if err != nil {
		return err
	}
	defer rc.Close()

	return s.sendStream(w, r, rc, "application/x-tar", -1)
}

// writeArchive extracts the tar archive in the request body into the
// directory at ?path=, creating it when missing. The body is limited to the
// upload limit.
func (s *server) writeArchive(w http.ResponseWriter, r *http.Request) error {
	path, err := requiredQuery(r, "path")
	if err != nil {
		return err
	}
	if err := s.checkUploadSize(r); err != nil {
		return err
	}
	files, err := s.sandboxFiles(r)
	if err != nil {
		return err
	}

	body := &countingReader{r: r.Body}
	if err := files.WriteArchive(r.Context(), path, body); err != nil {
		return body.cause(err)
	}
	writeJSON(w, http.StatusOK, extractedJSON{Status: "extracted", Path: path, Size: body.n})
	return nil
}

// extractedJSON is the body of a successful archive upload.
type extractedJSON struct {
	Status string `json:"status"` // always "extracted"
	Path   string `json:"path"`
	Size   int64  `json:"size"` // bytes of the archive read
}
