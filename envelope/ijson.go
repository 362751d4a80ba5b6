package envelope

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
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

// checkIJSON streams one JSON text with encoding/json's Decoder.Token and
// refuses what RFC 7493 forbids and the other parsers of the signed bytes
// (ours, go-jose's, the JSON Schema validator's, an agency's) might read
// differently: a member name twice in one object (compared after unescaping,
// so "a" and "\u0061" are the same name), invalid UTF-8 and lone surrogate
// escapes in strings, and nesting deeper than MaxDepth. An I-JSON violation
// is an *ijsonError; a syntax error is returned as is.
func checkIJSON(b []byte) error {
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
	v, _ := strconv.ParseUint(string(h), 16, 16)
	return rune(v)
}

var pointerEscaper = strings.NewReplacer("~", "~0", "/", "~1")

// escapePointer escapes a member name as a JSON pointer reference token.
func escapePointer(name string) string { return pointerEscaper.Replace(name) }
