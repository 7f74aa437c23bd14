package appmodel

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// A JSON document as a tree that keeps the order of object members, so
// that a rendered app lists its fields in the order of the schema. Values
// are jsonObject, []any, string, json.Number, bool or nil.

type jsonMember struct {
	key string
	val any
}

type jsonObject []jsonMember

// get returns the value of a member and whether it is there.
func (o jsonObject) get(key string) (any, bool) {
	for _, m := range o {
		if m.key == key {
			return m.val, true
		}
	}
	return nil, false
}

// decodeJSON reads one JSON document. A syntax error names its line and
// column; a member given twice in one object is refused with its path.
func decodeJSON(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := decodeValue(dec, "")
	if err == nil {
		if _, terr := dec.Token(); terr != io.EOF {
			err = errors.New("unexpected data after the end of the document")
			if terr != nil {
				err = terr
			}
		}
	}
	if err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			line, col := position(data, se.Offset)
			return nil, fmt.Errorf("line %d:%d: %v", line, col, err)
		}
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			line, col := position(data, int64(len(data)))
			return nil, fmt.Errorf("line %d:%d: unexpected end of the document", line, col)
		}
		return nil, err
	}
	return v, nil
}

func decodeValue(dec *json.Decoder, path string) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return tok, nil
	}
	switch d {
	case '{':
		obj := jsonObject{}
		seen := map[string]bool{}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return nil, err
			}
			key, _ := kt.(string)
			field := joinField(path, key)
			if seen[key] {
				return nil, fmt.Errorf("%s: given twice", field)
			}
			seen[key] = true
			v, err := decodeValue(dec, field)
			if err != nil {
				return nil, err
			}
			obj = append(obj, jsonMember{key, v})
		}
		if _, err := dec.Token(); err != nil {
			return nil, err
		}
		return obj, nil
	case '[':
		arr := []any{}
		for i := 0; dec.More(); i++ {
			v, err := decodeValue(dec, fmt.Sprintf("%s[%d]", path, i))
			if err != nil {
				return nil, err
			}
			arr = append(arr, v)
		}
		if _, err := dec.Token(); err != nil {
			return nil, err
		}
		return arr, nil
	}
	return nil, fmt.Errorf("unexpected %q", d)
}

// position turns the offset of json.SyntaxError (the bytes before the bad
// one) into the 1-based line and column of the bad byte.
func position(data []byte, offset int64) (line, col int) {
	before := data[:min(max(offset, 0), int64(len(data)))]
	line = bytes.Count(before, []byte("\n")) + 1
	col = len(before) - bytes.LastIndexByte(before, '\n')
	return line, col
}

// joinField appends an object member to a field path.
func joinField(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// encodeJSON writes a tree as JSON, indented by two spaces when indent is
// set. Strings are not HTML-escaped.
func encodeJSON(v any, indent bool) []byte {
	var b bytes.Buffer
	writeJSON(&b, v, indent, 0)
	return b.Bytes()
}

func writeJSON(b *bytes.Buffer, v any, indent bool, depth int) {
	newline := func(d int) {
		if indent {
			b.WriteByte('\n')
			b.WriteString(strings.Repeat("  ", d))
		}
	}
	switch x := v.(type) {
	case jsonObject:
		if len(x) == 0 {
			b.WriteString("{}")
			return
		}
		b.WriteByte('{')
		for i, m := range x {
			if i > 0 {
				b.WriteByte(',')
			}
			newline(depth + 1)
			writeString(b, m.key)
			b.WriteByte(':')
			if indent {
				b.WriteByte(' ')
			}
			writeJSON(b, m.val, indent, depth+1)
		}
		newline(depth)
		b.WriteByte('}')
	case []any:
		if len(x) == 0 {
			b.WriteString("[]")
			return
		}
		b.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				b.WriteByte(',')
			}
			newline(depth + 1)
			writeJSON(b, e, indent, depth+1)
		}
		newline(depth)
		b.WriteByte(']')
	case string:
		writeString(b, x)
	case json.Number:
		b.WriteString(x.String())
	case bool:
		b.WriteString(strconv.FormatBool(x))
	case nil:
		b.WriteString("null")
	default:
		panic(fmt.Sprintf("appmodel: unexpected JSON value %T", v))
	}
}

func writeString(b *bytes.Buffer, s string) {
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)       // a string always encodes
	b.Truncate(b.Len() - 1) // Encode's newline
}
