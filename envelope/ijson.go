package envelope

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// MaxDepth bounds the nesting of objects and arrays in a protected header or
// payload; deeper input is refused as malformed.
const MaxDepth = 64

// ijsonError is a violation of I-JSON (RFC 7493) or of MaxDepth. Pointer is
// the JSON pointer (RFC 6901) of the offending member or value.
type ijsonError struct {
	Pointer string
	Msg     string
}

func (e *ijsonError) Error() string {
	ptr := e.Pointer
	if ptr == "" {
		ptr = `"" (the root)`
	}
	return e.Msg + " at " + ptr
}

// checkIJSON refuses what RFC 7493 (I-JSON) forbids and the other parsers of
// the signed bytes (ours, go-jose's, the JSON Schema validator's, an
// agency's) might read differently: a member name twice in one object
// (compared after unescaping, so "a" and "\u0061" are the same name), invalid
// UTF-8 and lone surrogate escapes in strings, and nesting deeper than
// MaxDepth. An I-JSON violation is an *ijsonError (the first one in the
// text); a syntax error is returned as is.
//
// It runs on every message the broker receives, so valid JSON, the common
// case, is walked by scanIJSON, which allocates nothing unless a member name
// has an escape, an object has more than maxListedNames members or the text
// nests deeper than inlineDepth, and builds the pointer of a violation only
// when it finds one. Text that is not valid JSON goes to streamIJSON, so its
// errors (a violation before the syntax error included) stay as they were.
func checkIJSON(b []byte) error {
	if !json.Valid(b) {
		if err := streamIJSON(b); err != nil {
			return err
		}
		return errors.New("invalid JSON") // not reached: both use encoding/json's scanner
	}
	return scanIJSON(b)
}

const (
	// maxListedNames is how many member names of one object are compared
	// by a linear scan; past it the object's names go into a map.
	maxListedNames = 16
	// inlineDepth is how deep scanIJSON nests without allocating.
	inlineDepth = 16
)

// ijsonFrame is an object or array scanIJSON is in.
type ijsonFrame struct {
	obj bool // an object, not an array
	// object: a member name comes next (after '{' or ','), not a value
	wantName bool
	key      []byte // object: the (unescaped) name of the current member
	idx      int    // array: the index of the current element
	// object: the names seen are names[start:] of scanIJSON, or, past
	// maxListedNames, the keys of big
	start int
	big   map[string]struct{}
}

// scanIJSON is checkIJSON of a text json.Valid accepted, so it checks no
// syntax. (One function with local slices, so that they stay on the stack.)
func scanIJSON(b []byte) error {
	var framesBuf [inlineDepth]ijsonFrame
	var namesBuf [2 * maxListedNames][]byte
	frames := framesBuf[:0] // the containers it is in, outermost first
	names := namesBuf[:0]   // the member names seen in the open objects
	var scratch []byte      // unescaped member names
	for i := 0; i < len(b); {
		switch c := b[i]; c {
		case ' ', '\t', '\n', '\r', ':':
			i++
		case ',':
			if top := &frames[len(frames)-1]; top.obj {
				top.wantName = true
			} else {
				top.idx++
			}
			i++
		case '{', '[':
			if len(frames) == MaxDepth {
				return &ijsonError{Pointer: pointer(frames), Msg: fmt.Sprintf("nesting deeper than %d", MaxDepth)}
			}
			frames = append(frames, ijsonFrame{obj: c == '{', wantName: c == '{', start: len(names)})
			i++
		case '}', ']':
			names = names[:frames[len(frames)-1].start]
			frames = frames[:len(frames)-1]
			i++
		case '"':
			end, esc := stringEnd(b, i)
			lit := b[i:end]
			i = end
			msg := ""
			if esc {
				msg = checkString(lit)
			} else if !utf8.Valid(lit[1 : len(lit)-1]) {
				msg = "invalid UTF-8"
			}
			n := len(frames)
			if n == 0 || !frames[n-1].wantName { // a value
				if msg != "" {
					return &ijsonError{Pointer: pointer(frames), Msg: msg}
				}
				continue
			}
			if msg != "" {
				return &ijsonError{Pointer: pointer(frames[:n-1]), Msg: msg + " in a member name"}
			}
			name := lit[1 : len(lit)-1]
			if esc {
				start := len(scratch)
				scratch = appendUnescaped(scratch, name)
				name = scratch[start:len(scratch):len(scratch)]
			}
			f := &frames[n-1]
			f.wantName, f.key = false, name
			var dup bool
			if names, dup = addName(f, names, name); dup {
				return &ijsonError{Pointer: pointer(frames), Msg: fmt.Sprintf("duplicate member name %q", name)}
			}
		default: // a number, true, false or null
			i++
			for i < len(b) && !isDelim(b[i]) {
				i++
			}
		}
	}
	return nil
}

// addName adds name to the names of the object f, whose names are
// names[f.start:] or, past maxListedNames, the keys of f.big, and reports
// whether it was there already.
func addName(f *ijsonFrame, names [][]byte, name []byte) (_ [][]byte, dup bool) {
	switch {
	case f.big != nil:
	case len(names)-f.start < maxListedNames:
		for _, seen := range names[f.start:] {
			if bytes.Equal(seen, name) {
				return names, true
			}
		}
		return append(names, name), false
	default:
		f.big = make(map[string]struct{}, 2*maxListedNames)
		for _, seen := range names[f.start:] {
			f.big[string(seen)] = struct{}{}
		}
		names = names[:f.start]
	}
	if _, dup = f.big[string(name)]; !dup {
		f.big[string(name)] = struct{}{}
	}
	return names, dup
}

// pointer is the JSON pointer of the value being read in the innermost of
// frames: the current member or element of each.
func pointer(frames []ijsonFrame) string {
	var p strings.Builder
	for _, f := range frames {
		p.WriteByte('/')
		if f.obj {
			p.WriteString(escapePointer(string(f.key)))
		} else {
			p.WriteString(strconv.Itoa(f.idx))
		}
	}
	return p.String()
}

// stringEnd returns the index just past the string literal that starts at
// b[i] and whether it has an escape; b is valid JSON.
func stringEnd(b []byte, i int) (end int, esc bool) {
	j := i + 1
	q := bytes.IndexByte(b[j:], '"')
	if bytes.IndexByte(b[j:j+q], '\\') < 0 {
		return j + q + 1, false
	}
	for ; b[j] != '"'; j++ {
		if b[j] == '\\' {
			j++ // the escaped byte; a \u's hex digits are neither '"' nor '\\'
		}
	}
	return j + 1, true
}

// isDelim reports whether c ends a number or literal.
func isDelim(c byte) bool {
	switch c {
	case ' ', '\t', '\n', '\r', ',', ':', ']', '}':
		return true
	}
	return false
}

// appendUnescaped appends the unescaped contents s of a string literal that
// encoding/json and checkString accept, as encoding/json decodes it.
func appendUnescaped(dst, s []byte) []byte {
	for i := 0; i < len(s); {
		c := s[i]
		if c != '\\' {
			dst = append(dst, c)
			i++
			continue
		}
		switch s[i+1] {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r := hex4(s[i+2 : i+6])
			if utf16.IsSurrogate(r) { // checkString found its low half next
				r = utf16.DecodeRune(r, hex4(s[i+8:i+12]))
				i += 6
			}
			dst = utf8.AppendRune(dst, r)
			i += 6
			continue
		default: // '"', '\\', '/'
			dst = append(dst, s[i+1])
		}
		i += 2
	}
	return dst
}

// streamIJSON is checkIJSON for text that is not valid JSON: it streams the
// text with encoding/json's Decoder.Token, so it reports the first I-JSON
// violation before the syntax error, if there is one, and otherwise the
// Decoder's syntax error. It is also the reference checkIJSON's scanner is
// tested against (it finds the same violation at the same pointer).
func streamIJSON(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber() // the check is about names and strings, not number range
	type frame struct {
		ptr   string              // pointer of this object or array
		names map[string]struct{} // object: the member names seen
		key   string              // object: the member whose value comes next
		value bool                // object: a value comes next, not a name
		next  int                 // array: index of the next element
	}
	var stack []frame
	// valuePtr returns the pointer of the value about to be read and moves
	// its container on to the next member or element.
	valuePtr := func() string {
		if len(stack) == 0 {
			return ""
		}
		top := &stack[len(stack)-1]
		if top.names != nil {
			top.value = false
			return top.ptr + "/" + escapePointer(top.key)
		}
		top.next++
		return top.ptr + "/" + strconv.Itoa(top.next-1)
	}
	done := false
	for {
		start := dec.InputOffset()
		tok, err := dec.Token()
		if err == io.EOF {
			if !done {
				return io.ErrUnexpectedEOF
			}
			return nil
		}
		if err != nil {
			return err
		}
		if done {
			return errors.New("data after the JSON value")
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{', '[':
				ptr := valuePtr()
				if len(stack) == MaxDepth {
					return &ijsonError{Pointer: ptr, Msg: fmt.Sprintf("nesting deeper than %d", MaxDepth)}
				}
				f := frame{ptr: ptr}
				if t == '{' {
					f.names = map[string]struct{}{}
				}
				stack = append(stack, f)
			default: // '}' or ']'; the Decoder checks they match
				stack = stack[:len(stack)-1]
			}
		case string:
			lit := b[start:dec.InputOffset()]
			lit = lit[bytes.IndexByte(lit, '"'):]
			if top := len(stack) - 1; top >= 0 && stack[top].names != nil && !stack[top].value {
				f := &stack[top]
				if msg := checkString(lit); msg != "" {
					return &ijsonError{Pointer: f.ptr, Msg: msg + " in a member name"}
				}
				ptr := f.ptr + "/" + escapePointer(t)
				if _, dup := f.names[t]; dup {
					return &ijsonError{Pointer: ptr, Msg: fmt.Sprintf("duplicate member name %q", t)}
				}
				f.names[t] = struct{}{}
				f.key, f.value = t, true
				continue
			}
			ptr := valuePtr()
			if msg := checkString(lit); msg != "" {
				return &ijsonError{Pointer: ptr, Msg: msg}
			}
		default:
			valuePtr()
		}
		done = len(stack) == 0
	}
}

// checkString returns what is wrong with a JSON string literal (quotes
// included, already accepted by the Decoder), or "": a byte sequence that
// is not UTF-8, or a \u escape of a surrogate that is not half of a pair.
func checkString(lit []byte) string {
	s := lit[1 : len(lit)-1]
	for i := 0; i < len(s); {
		c := s[i]
		if c == '\\' {
			if s[i+1] != 'u' {
				i += 2
				continue
			}
			u := hex4(s[i+2 : i+6])
			switch {
			case u >= 0xdc00 && u <= 0xdfff:
				return fmt.Sprintf(`lone low surrogate \u%04x`, u)
			case u >= 0xd800 && u <= 0xdbff:
				if i+12 > len(s) || s[i+6] != '\\' || s[i+7] != 'u' {
					return fmt.Sprintf(`lone high surrogate \u%04x`, u)
				}
				if l := hex4(s[i+8 : i+12]); l < 0xdc00 || l > 0xdfff {
					return fmt.Sprintf(`lone high surrogate \u%04x`, u)
				}
				i += 12
			default:
				i += 6
			}
			continue
		}
		if c < utf8.RuneSelf {
			i++
			continue
		}
		r, n := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && n == 1 {
			return "invalid UTF-8"
		}
		i += n
	}
	return ""
}

// hex4 decodes the four hex digits of a \u escape the Decoder accepted.
func hex4(h []byte) rune {
	var r rune
	for _, c := range h[:4] {
		switch {
		case c >= 'a':
			c -= 'a' - 10
		case c >= 'A':
			c -= 'A' - 10
		default:
			c -= '0'
		}
		r = r<<4 | rune(c)
	}
	return r
}

var pointerEscaper = strings.NewReplacer("~", "~0", "/", "~1")

// escapePointer escapes a member name as a JSON pointer reference token.
func escapePointer(name string) string { return pointerEscaper.Replace(name) }
