package broker

// Minimise returns only the allowed fields of an answer. A nil allow-list
// allows every field; an empty non-nil one allows none. The input map is not
// modified.
func Minimise(fields map[string]any, allowed []string) map[string]any {
	if allowed == nil {
		out := make(map[string]any, len(fields))
		for k, v := range fields {
			out[k] = v
		}
		return out
	}
	out := make(map[string]any, len(allowed))
	for _, k := range allowed {
		if v, ok := fields[k]; ok {
			out[k] = v
		}
	}
	return out
}
