package httpsource

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"go.uber.org/zap"

	"github.com/certless/certless/adapters"
)

// HandlerOptions tune Handler. Zero values take the defaults shown.
type HandlerOptions struct {
	// MaxRequestBytes bounds a request body; default 64 KiB.
	MaxRequestBytes int64
	// Logger receives one line per failed answer (query type and error,
	// never the subject); default none.
	Logger *zap.Logger
}

// Handler serves src over the protocol at Path and HealthPath. Callers
// add authentication and TLS around it.
func Handler(src adapters.Source, opt HandlerOptions) http.Handler {
	if opt.MaxRequestBytes <= 0 {
		opt.MaxRequestBytes = 64 << 10
	}
	if opt.Logger == nil {
		opt.Logger = zap.NewNop()
	}
	h := &handler{src: src, opt: opt}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+Path, h.answer)
	mux.HandleFunc("POST "+ChangesPath, h.changes)
	mux.HandleFunc("GET "+HealthPath, func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, healthBody{Source: src.Name()})
	})
	return mux
}

type handler struct {
	src adapters.Source
	opt HandlerOptions
}

func (h *handler) answer(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, h.opt.MaxRequestBytes)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	var q adapters.Query
	if err := dec.Decode(&q); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeJSON(w, http.StatusRequestEntityTooLarge, errorBody{Error: "request too large"})
			return
		}
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "request is not a query: " + jsonProblem(err)})
		return
	}
	if dec.More() {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "request holds more than one query"})
		return
	}
	a, err := h.src.Answer(r.Context(), q)
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, a)
	case errors.Is(err, adapters.ErrInvalidQuery):
		writeJSON(w, http.StatusBadRequest, errorBody{Error: err.Error()})
	case errors.Is(err, context.DeadlineExceeded):
		h.opt.Logger.Warn("record source timed out", zap.String("query_type", string(q.Type)), zap.Error(err))
		writeJSON(w, http.StatusGatewayTimeout, errorBody{Error: "record source timed out"})
	case r.Context().Err() != nil:
		// The client went away; nobody reads the answer.
		writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: "request cancelled"})
	default:
		h.opt.Logger.Warn("record source failed", zap.String("query_type", string(q.Type)), zap.Error(err))
		writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: "record source unavailable"})
	}
}

func (h *handler) changes(w http.ResponseWriter, r *http.Request) {
	feed, ok := h.src.(adapters.ChangeFeed)
	if !ok {
		writeJSON(w, http.StatusNotFound, errorBody{Error: "this source keeps no change feed"})
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, h.opt.MaxRequestBytes)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	var q adapters.ChangeQuery
	if err := dec.Decode(&q); err != nil || dec.More() {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "request is not one change query"})
		return
	}
	page, err := feed.Changes(r.Context(), q)
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, page)
	case errors.Is(err, adapters.ErrInvalidQuery):
		writeJSON(w, http.StatusBadRequest, errorBody{Error: err.Error()})
	case r.Context().Err() != nil:
		writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: "request cancelled"})
	default:
		h.opt.Logger.Warn("change feed failed", zap.String("query_type", string(q.Type)), zap.Error(err))
		writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: "record source unavailable"})
	}
}

// jsonProblem describes a decoding error without echoing request content.
func jsonProblem(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return "malformed JSON"
	case errors.As(err, &te):
		return "field " + te.Field + " has the wrong type"
	case errors.Is(err, context.Canceled):
		return "cancelled"
	default:
		// DisallowUnknownFields and EOF errors name only field names.
		return err.Error()
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"cannot encode answer"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
